"""One failed download attempt (scembed.sources.faults): the errors requests raises,
found under their wrappers and told in the download's words, with whether to retry and
whether the host was unreachable. The download around them: test_faults_download.py."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from pathlib import Path

import pytest
import requests
from conftest import closed_port_url, serve

from scembed.checks import DataError
from scembed.sources.faults import (
    DROPPED_FIX,
    RETRY_STATUSES,
    SLOW_FIX,
    DownloadFault,
    describe,
    http_fault,
    is_local,
)


def raised(get) -> BaseException:
    """The error ``get()`` raises."""
    with pytest.raises(Exception) as err:
        get()
    return err.value


@contextlib.contextmanager
def raw_server(answer: bytes | None):
    """A server on 127.0.0.1 that reads one request and writes ``answer`` then closes;
    ``None``: it never accepts (the connection waits in the backlog). Yields its URL."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def reply():
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

        thread = threading.Thread(target=reply, daemon=True) if answer is not None else None
        if thread:
            thread.start()
        yield f"http://127.0.0.1:{server.getsockname()[1]}/expression.txt"
        if thread:
            thread.join(5)


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 599])
def test_a_server_error_may_pass(code):
    fault = http_fault(code, "Service Unavailable")
    assert isinstance(fault, DataError) and fault.retry
    assert str(fault) == f"HTTP Error {code}: Service Unavailable"
    assert fault.fix == "the server failed: try again later or use another mirror"


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410])
def test_a_missing_file_will_not(code):
    fault = http_fault(code, "Not Found")
    assert not fault.retry and code not in RETRY_STATUSES
    assert fault.fix == "the file is not served at this URL: correct it or remove it from `urls`"


def test_a_download_fault_is_kept_as_it_is():
    fault = DownloadFault("wrong bytes", "use another mirror", retry=False)
    assert describe(fault, 5.0) == (fault, False)


def test_a_refused_connection_says_the_host_does_not_answer():
    fault, unreachable = describe(raised(lambda: requests.get(closed_port_url(), timeout=5)), 5)
    assert unreachable and fault.retry
    assert str(fault) == f"ConnectionRefusedError: [Errno {errno.ECONNREFUSED}] Connection refused"
    assert fault.fix == "the host does not answer: check the URL and your network connection"


def test_an_unknown_host_says_so(monkeypatch):
    """The resolver's error, wrapped by urllib3 and requests, is found under them."""

    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    err = raised(lambda: requests.get("http://no-such-host.invalid/x", timeout=5))
    assert isinstance(err, requests.ConnectionError)
    fault, unreachable = describe(err, 5)
    assert unreachable and fault.retry
    assert str(fault) == (
        f"cannot resolve the host name ([Errno {socket.EAI_NONAME}] Name or service not known)"
    )
    assert fault.fix == "check the host name in the URL, your network connection and DNS"


def test_a_silent_server_is_a_stall_not_retried():
    with raw_server(None) as url:
        err = raised(lambda: requests.get(url, timeout=(5, 0.2)))
    assert isinstance(err, requests.ReadTimeout)
    fault, unreachable = describe(err, stall_timeout=30)
    assert str(fault) == "stalled: no data for 30 s"  # the download's limit, not the read's
    assert fault.fix == SLOW_FIX and not fault.retry and not unreachable


def test_a_body_cut_short_says_how_much_came():
    with serve({"/x": (b"abc", 10)}) as base:  # announces 10 bytes, sends 3
        err = raised(lambda: requests.get(f"{base}/x", timeout=5))
    fault, unreachable = describe(err, 5)
    assert str(fault) == "truncated: got 3 of the 10 bytes announced"
    assert fault.fix == DROPPED_FIX and fault.retry and not unreachable


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"", "RemoteDisconnected: Remote end closed connection without response"),
        # no error of the system's under it: requests' own is told
        (b"HELLO\r\n\r\n", "ConnectionError: ('Connection aborted.', BadStatusLine("),
    ],
)
def test_a_dropped_or_garbled_connection_is_retried(answer, message):
    with raw_server(answer) as url:
        err = raised(lambda: requests.get(url, timeout=5))
    assert isinstance(err, requests.ConnectionError)
    fault, unreachable = describe(err, 5)
    assert str(fault).startswith(message)
    assert fault.fix == DROPPED_FIX and fault.retry and not unreachable


@pytest.mark.parametrize(
    ("url", "kind"),
    [("ftp://example.org/x", "InvalidSchema"), ("example.org/x", "MissingSchema")],
)
def test_a_url_without_a_usable_scheme_asks_for_a_full_url(url, kind):
    fault, unreachable = describe(raised(lambda: requests.get(url)), 5)
    assert str(fault).startswith(f"{kind}: ") and url in str(fault)
    assert fault.fix == "write a full http://, https:// or file:// URL"
    assert not fault.retry and not unreachable


def test_a_malformed_url_asks_to_correct_it():
    err = raised(lambda: requests.get("http://"))
    assert isinstance(err, ValueError)
    fault, _ = describe(err, 5)
    assert str(fault).startswith("InvalidURL: ") and fault.fix == "correct the URL"
    assert not fault.retry


@pytest.mark.parametrize("err", [RuntimeError("boom"), DataError("not a Zeisel file")])
def test_anything_else_is_unexpected_and_not_retried(err):
    fault, unreachable = describe(err, 5)
    assert str(fault) == f"{type(err).__name__}: {err}"
    assert fault.fix.startswith("an unexpected error") and not fault.retry and not unreachable


def test_a_cycle_of_causes_ends():
    first, second = RuntimeError("first"), RuntimeError("second")
    first.__cause__, second.__cause__ = second, first
    assert str(describe(first, 5)[0]) == "RuntimeError: first"


def test_the_nearest_cause_is_told():
    """Of two causes of a kind, the one fewer wrappers down is told, though it comes after
    the other's wrapper among the arguments."""
    far = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    near = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    outer = requests.ConnectionError(requests.ConnectionError(far), near)
    assert "Name or service not known" in str(describe(outer, 5)[0])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_a_full_disk_is_local():
    with open("/dev/full", "wb", buffering=0) as full:
        err = raised(lambda: full.write(b"x"))
    assert err.errno == errno.ENOSPC and is_local(err)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES])
def test_a_write_error_here_is_local(code):
    assert is_local(OSError(code, "here"))


def test_the_networks_errors_are_not_local():
    refused = raised(lambda: requests.get(closed_port_url(), timeout=5))
    assert not is_local(refused)
    assert not is_local(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    # requests' errors are OSErrors: one with a local errno is still the network's
    assert not is_local(requests.ConnectionError(errno.EACCES, "Permission denied"))
    assert not is_local(http_fault(503, "Service Unavailable"))
