"""Network faults during the Zeisel download, against a real HTTP server on 127.0.0.1.

The server stalls, dribbles, truncates, resets, fails once, or serves the wrong bytes;
every case checks the message (each URL, its error and the fix) and that nothing but the
finished file is ever left next to the destination.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import json
import logging
import socket
import socketserver
import struct
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    closed_port_url,
    snakemake,
    write_config,
    write_zeisel,
    zeisel_example,
    zeisel_text,
)

from scembed.checks import DataError
from scembed.sources import download, zeisel_layout_ok

SERVER_LIFETIME = 20  # seconds; the server stops by itself after this, whatever the test does
FAST = {"stall_timeout": 0.5, "min_speed": 1000, "retries": 0, "retry_delay": 0.01}
BODY = zeisel_text(*zeisel_example()).encode()


# --------------------------------------------------------------------------- the server


def headers(length: int, status: str = "200 OK") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def ok(body: bytes = BODY):
    def behave(conn, stop):
        conn.sendall(headers(len(body)) + body)

    return behave


def status(code: int, reason: str):
    def behave(conn, stop):
        conn.sendall(headers(0, f"{code} {reason}"))

    return behave


def stall(conn, stop):
    """Accept the request, then send nothing."""
    stop.wait(SERVER_LIFETIME)


def stall_mid_body(conn, stop):
    conn.sendall(headers(len(BODY)) + BODY[:100])
    stop.wait(SERVER_LIFETIME)


def dribble(conn, stop):
    """A byte every 20 ms: each read gets something, so no read ever times out."""
    conn.sendall(headers(len(BODY)))
    for byte in BODY:
        if stop.wait(0.02):
            return
        conn.sendall(bytes([byte]))


def dribble_headers(conn, stop):
    """The status line and headers a byte every 20 ms: no read ever times out, and no
    byte of the file ever comes."""
    for byte in headers(len(BODY)) + BODY:
        if stop.wait(0.02):
            return
        conn.sendall(bytes([byte]))


def slow_but_steady(stream: bytes):
    """About 20 kB/s in 1 kB pieces: slow, but above FAST's min_speed."""

    def behave(conn, stop):
        conn.sendall(headers(len(stream)))
        for start in range(0, len(stream), 1000):
            if stop.wait(0.05):
                return
            conn.sendall(stream[start : start + 1000])

    return behave


def truncate(conn, stop):
    """Announce the whole file, send half of it, close."""
    conn.sendall(headers(len(BODY)) + BODY[: len(BODY) // 2])


def reset(conn, stop):
    """Drop the connection with a TCP reset (no FIN) before answering."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def reset_mid_body(conn, stop):
    conn.sendall(headers(len(BODY)) + BODY[:200])
    time.sleep(0.05)
    reset(conn, stop)


def fail_first(times: int, fault, then):
    """``fault`` on the first ``times`` requests to the route, ``then`` afterwards."""

    def behave(conn, stop, n):
        (fault if n <= times else then)(conn, stop)

    behave.counts_requests = True
    return behave


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        conn, server = self.request, self.server
        conn.settimeout(5)
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                return
            request += chunk
        path = request.split(b" ")[1].decode()
        with server.lock:
            server.requests[path] += 1
            n = server.requests[path]
        behave = server.routes.get(path, status(404, "Not Found"))
        with contextlib.suppress(OSError):  # the client may hang up first: that is the test
            if getattr(behave, "counts_requests", False):
                behave(conn, server.stop, n)
            else:
                behave(conn, server.stop)


class FaultServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, routes: dict):
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes = routes
        self.requests = collections.Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()


@contextlib.contextmanager
def fault_server(routes: dict):
    """Serve ``routes`` ({path: behaviour}) on 127.0.0.1 in threads; yields the server
    (``server.url(path)``, ``server.requests``). Stops after SERVER_LIFETIME seconds even
    if the test hangs, and at once when the test ends."""
    server = FaultServer(routes)
    server.url = lambda path: f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    deadline = threading.Timer(SERVER_LIFETIME, server.stop.set)
    deadline.daemon = True
    deadline.start()
    try:
        yield server
    finally:
        deadline.cancel()
        server.stop.set()  # releases stalled and dribbling handlers
        server.shutdown()
        server.server_close()
        thread.join(5)


def temp_files(folder: Path) -> list[str]:
    """Everything in ``folder`` but the finished file: partial downloads, temp files."""
    return sorted(p.name for p in folder.iterdir() if p.name != "expression.txt")


def fails(urls, dest, **settings) -> str:
    """Run a download that must fail; check nothing is left; return the message."""
    with pytest.raises(DataError) as err:
        download(urls, dest, verify=zeisel_layout_ok, **{**FAST, **settings})
    assert not dest.exists()
    assert temp_files(dest.parent) == []
    return str(err.value)


def line_of(message: str, url: str) -> str:
    """The message's line about ``url``."""
    lines = [line for line in message.splitlines() if url in line]
    assert len(lines) == 1, message
    return lines[0]


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "download" / "expression.txt"


# --------------------------------------------------------------------------- slow servers


@pytest.mark.parametrize("behave", [stall, stall_mid_body], ids=["headers", "body"])
def test_a_stalled_mirror_is_abandoned_after_stall_timeout(dest, behave):
    with fault_server({"/x": behave}) as server:
        start = time.monotonic()
        message = fails([server.url("/x")], dest, min_speed=0, retries=2)
        elapsed = time.monotonic() - start
    assert server.requests["/x"] == 1  # a stall costs stall_timeout; no retry doubles it
    line = line_of(message, server.url("/x"))
    assert "stalled: no data for 0.5 s (1 attempt)" in line
    assert "raise `download.stall_timeout`" in line
    assert "set `path: /where/you/saved/it` under this dataset" in message
    assert "network seems unreachable" not in message
    assert 0.4 < elapsed < 3


@pytest.mark.parametrize(
    ("behave", "error"),
    [
        (dribble, "too slow: "),
        (dribble_headers, "stalled: no data for 0.5 s"),  # no byte of the file
    ],
    ids=["body", "headers"],
)
def test_a_dribbling_mirror_is_abandoned_under_min_speed(dest, behave, error):
    with fault_server({"/x": behave}) as server:
        start = time.monotonic()
        message = fails([server.url("/x")], dest)
        elapsed = time.monotonic() - start
    line = line_of(message, server.url("/x"))
    assert error in line
    assert "lower `download.min_speed`" in line
    if behave is dribble:
        assert "bytes/s over the last 0.5 s, under min_speed 1000 bytes/s" in line
    assert elapsed < 3  # a per-read timeout alone would wait out the whole file (about 60 s)


def test_a_slow_but_steady_mirror_is_not_abandoned(dest):
    body = bytes(range(250)) * 120  # 30 kB: about 1.5 s, three windows of stall_timeout
    with fault_server({"/x": slow_but_steady(body)}) as server:
        provenance = download([server.url("/x")], dest, **FAST)
    assert dest.read_bytes() == body
    assert provenance["bytes"] == len(body)
    assert temp_files(dest.parent) == []


# --------------------------------------------------------------------------- broken answers


@pytest.mark.parametrize(
    ("behave", "error"),
    [
        (truncate, f"truncated: got {len(BODY) // 2} of the {len(BODY)} bytes announced"),
        (reset, "ConnectionResetError"),
        (reset_mid_body, "ConnectionResetError"),
    ],
    ids=["truncated", "reset", "reset-mid-body"],
)
def test_a_dropped_connection_is_retried_then_reported(dest, behave, error):
    with fault_server({"/x": behave}) as server:
        message = fails([server.url("/x")], dest, retries=2)
    assert server.requests["/x"] == 3  # the first attempt and two retries
    line = line_of(message, server.url("/x"))
    assert error in line and "(3 attempts)" in line
    assert "the connection dropped: try again later or use another mirror" in line


def test_a_server_error_is_retried_a_missing_file_is_not(dest):
    with fault_server({"/busy": status(503, "Service Unavailable")}) as server:
        urls = [server.url("/busy"), server.url("/gone")]
        message = fails(urls, dest, retries=2)
    assert server.requests == {"/busy": 3, "/gone": 1}
    assert "HTTP Error 503: Service Unavailable (3 attempts)" in line_of(message, urls[0])
    gone = line_of(message, urls[1])
    assert "HTTP Error 404: Not Found (1 attempt)" in gone
    assert "correct it or remove it from `urls`" in gone


@pytest.mark.parametrize("wrong", ["checksum", "layout"])
def test_wrong_bytes_are_not_retried_nor_kept(dest, wrong):
    body = BODY if wrong == "checksum" else b"gene\tcell1\nActb\t3\n"
    sha256 = "ab" * 32 if wrong == "checksum" else None
    with fault_server({"/x": ok(body)}) as server:
        message = fails([server.url("/x")], dest, sha256=sha256, retries=2)
    assert server.requests["/x"] == 1  # the same server would send the same bytes again
    line = line_of(message, server.url("/x"))
    if wrong == "checksum":
        assert f"SHA-256 {hashlib.sha256(body).hexdigest()} does not match the pinned" in line
        assert "correct `sha256`" in line
    else:
        assert "not the Zeisel 2015 expression file" in line
        assert "remove it from `urls`" in line


# --------------------------------------------------------------------------- recovery


@pytest.mark.parametrize(
    "fault", [reset, truncate, status(500, "Internal Server Error")], ids=["reset", "cut", "500"]
)
def test_a_fault_that_passes_is_retried_with_backoff(dest, fault, caplog):
    flaky = fail_first(1, fault, ok())
    with fault_server({"/x": flaky}) as server, caplog.at_level(logging.INFO, logger="scembed"):
        provenance = download([server.url("/x")], dest, **{**FAST, "retries": 1})
    assert server.requests["/x"] == 2
    assert dest.read_bytes() == BODY
    assert provenance["url"] == server.url("/x")
    assert temp_files(dest.parent) == []
    assert "attempt 1 of 2 failed" in caplog.text and "again in 0.01 s" in caplog.text


def test_backoff_doubles_the_delay(dest, caplog):
    flaky = fail_first(2, reset, ok())
    with fault_server({"/x": flaky}) as server, caplog.at_level(logging.INFO, logger="scembed"):
        start = time.monotonic()
        download([server.url("/x")], dest, **{**FAST, "retries": 2, "retry_delay": 0.2})
        elapsed = time.monotonic() - start
    assert server.requests["/x"] == 3
    assert "again in 0.2 s" in caplog.text and "again in 0.4 s" in caplog.text
    assert elapsed >= 0.6


def test_falls_back_to_the_next_mirror_and_logs_how_to_pin(dest, caplog):
    routes = {"/stalls": stall, "/resets": reset, "/good": ok()}
    with fault_server(routes) as server:
        urls = [server.url("/stalls"), server.url("/resets"), server.url("/good")]
        with caplog.at_level(logging.INFO, logger="scembed"):
            provenance = download(
                urls, dest, verify=zeisel_layout_ok, config_key="datasets.cortex", **FAST
            )
    assert server.requests == {"/stalls": 1, "/resets": 1, "/good": 1}
    assert provenance["url"] == urls[2]
    sha256 = hashlib.sha256(BODY).hexdigest()
    assert provenance["sha256"] == sha256
    assert dest.read_bytes() == BODY and temp_files(dest.parent) == []
    assert f"add `sha256: {sha256}` under datasets.cortex" in caplog.text


def test_a_pinned_download_says_it_matches(dest, caplog):
    sha256 = hashlib.sha256(BODY).hexdigest()
    with fault_server({"/x": ok()}) as server, caplog.at_level(logging.INFO, logger="scembed"):
        download([server.url("/x")], dest, sha256=sha256, **FAST)
    assert f"sha256 {sha256} (it matches the pinned sha256)" in caplog.text


# --------------------------------------------------------------------------- no network


def test_no_network_says_so_and_how_to_work_offline(dest):
    urls = [closed_port_url(), "http://zeisel-mirror.invalid/expression.txt"]
    message = fails(urls, dest, retries=1, config_key="datasets.cortex")
    assert "refused" in line_of(message, urls[0]).lower()
    assert "(2 attempts)" in line_of(message, urls[0])
    assert "cannot resolve the host name" in line_of(message, urls[1])
    assert "The network seems unreachable" in message
    assert "set `path: /where/you/saved/it` under datasets.cortex" in message


def test_one_reachable_mirror_means_the_network_works(dest):
    with fault_server({}) as server:
        message = fails([closed_port_url(), server.url("/gone")], dest)
    assert "network seems unreachable" not in message


# --------------------------------------------------------------------------- the workflow


@pytest.mark.workflow
def test_the_workflow_skips_a_stalled_mirror_within_stall_timeout(tmp_path):
    """Through Snakemake: the dataset's `download` keys reach the rule."""
    data = write_zeisel(tmp_path / "served.txt")
    body = data["path"].read_bytes()
    with fault_server({"/stalls": stall, "/good": ok(body)}) as server:
        urls = [server.url("/stalls"), server.url("/good")]
        dataset = {
            "source": "zeisel2015",
            "urls": urls,
            "download": {"stall_timeout": 1, "retries": 0},
        }
        config = {"datasets": {"tiny": dataset}, "methods": {"pca": {"kind": "pca"}}}
        configfile = write_config(tmp_path / "run.yaml", config)
        target = "results/tiny/download/expression.txt"
        result = snakemake(
            tmp_path, "--configfile", str(configfile), "--cores", "1", target, timeout=120
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert server.requests == {"/stalls": 1, "/good": 1}
    folder = tmp_path / "results" / "tiny" / "download"
    assert sorted(p.name for p in folder.iterdir()) == ["download.json", "expression.txt"]
    assert json.loads((folder / "download.json").read_text())["url"] == urls[1]
    log = (tmp_path / "results" / "logs" / "download_zeisel" / "tiny.log").read_text()
    assert "stalled: no data for 1 s" in log
    assert f"add `sha256: {hashlib.sha256(body).hexdigest()}` under datasets.tiny" in log
    dataset["download"] = {"stall_timeout": 5, "retries": 3}  # patience is not a rerun cause
    write_config(configfile, config)
    again = snakemake(tmp_path, "--configfile", str(configfile), "-n", target, timeout=120)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_a_full_disk_stops_at_once_without_blaming_the_mirrors(dest, monkeypatch):
    import scembed.runtime

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(scembed.runtime.tempfile, "mkstemp", no_space)
    with fault_server({"/x": ok()}) as server:
        urls = [server.url("/x"), server.url("/y")]
        with pytest.raises(DataError, match="No space left on device. Free some disk space"):
            download(urls, dest, **{**FAST, "retries": 2})
    assert server.requests == {}
    assert not dest.exists() and temp_files(dest.parent) == []


KILLED_DOWNLOAD = """
import logging
from scembed.runtime import stop_on_signals
from scembed.sources import download
stop_on_signals(logging.getLogger("test"), "the download", "run it again")
download([{url!r}], {dest!r}, stall_timeout=30, min_speed=0, retries=0, retry_delay=0)
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_download_killed_mid_file_leaves_nothing_behind(tmp_path, signal_name):
    """A real download process killed while the file streams in: SIGTERM (Snakemake
    stopping, scancel, a time limit) removes the partial file at once; SIGKILL cannot be
    caught, and the next download removes what it left."""
    import signal
    import subprocess
    import sys

    dest = tmp_path / "download" / "expression.txt"
    with fault_server({"/slow": dribble}) as server:
        script = KILLED_DOWNLOAD.format(url=server.url("/slow"), dest=str(dest))
        process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while not list(dest.parent.glob(".*")):  # the temporary file of the transfer
            assert time.monotonic() < deadline, "the download never started"
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.05)
        time.sleep(0.5)  # bytes are coming in (a dribble: the file is far from complete)
        process.send_signal(getattr(signal, signal_name))
        process.wait(10)
    assert not dest.exists()
    if signal_name == "SIGTERM":
        assert process.returncode == 128 + signal.SIGTERM
        assert temp_files(dest.parent) == []
    else:
        assert temp_files(dest.parent) != []  # the partial file a SIGKILL leaves
        with fault_server({"/ok": ok()}) as server:
            download([server.url("/ok")], dest, verify=zeisel_layout_ok, **FAST)
        assert dest.read_bytes() == BODY
        assert temp_files(dest.parent) == []
