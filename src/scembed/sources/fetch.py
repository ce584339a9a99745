"""Download a file from the first of its mirrors that serves it whole and valid.

Over ``requests``: a connect and a per-read timeout of ``stall_timeout`` end a silent
server; a server that sends a byte now and then never trips a per-read timeout, so the
body is read as it comes (``read1``) and its pace checked between reads (:class:`_Pace`).
urllib3's :class:`~urllib3.util.Retry` counts each mirror's attempts and spaces them.
A dropped body is retried like a refused connection, so the retries are ours, not the
transport's: one count and one log line for each failed attempt, whatever failed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests
from urllib3.exceptions import MaxRetryError
from urllib3.util import Retry

from scembed.checks import DataError
from scembed.runtime import atomic_path, remove_stale_temporaries
from scembed.sources.faults import (
    DROPPED_FIX,
    SLOW_FIX,
    DownloadFault,
    describe,
    http_fault,
    is_local,
)

log = logging.getLogger("scembed.sources")

BLOCK = 1 << 16  # bytes asked of each read; read1 returns what has come, up to this
PROGRESS_EVERY = 10.0  # seconds between progress lines in the log


class _Pace:
    """Whether a transfer stalls or crawls, checked after the headers and each read.

    No byte of the file for ``stall_timeout`` seconds, or under ``min_speed`` bytes/s over
    a window of ``stall_timeout`` seconds, ends the attempt; both count from the start of
    the attempt. A silent server is ended sooner by the per-read timeout; one that dribbles
    its headers only once they are in (requests reads them in one call). Logs a progress
    line every ``PROGRESS_EVERY`` seconds.
    """

    def __init__(self, url: str, stall_timeout: float, min_speed: float):
        self.url, self.stall_timeout, self.min_speed = url, stall_timeout, min_speed
        self.start = self.last = self.window = self.shown = time.monotonic()
        self.received = self.window_bytes = 0
        self.expected = None  # the Content-Length, once the headers have come

    def problem(self, n: int = 0) -> str | None:
        """Count ``n`` more bytes; why the attempt should end, or None."""
        now = time.monotonic()
        if n:
            self.received += n
            self.last = now
        if now - self.last >= self.stall_timeout:
            return f"stalled: no data for {self.stall_timeout:g} s"
        if now - self.window >= self.stall_timeout:
            speed = (self.received - self.window_bytes) / (now - self.window)
            if speed < self.min_speed:
                return (
                    f"too slow: {speed:.0f} bytes/s over the last {now - self.window:.1f} s, "
                    f"under min_speed {self.min_speed:g} bytes/s"
                )
            self.window, self.window_bytes = now, self.received
        if now - self.shown >= PROGRESS_EVERY:
            self.shown = now
            self._progress(now)
        return None

    def _progress(self, now: float) -> None:
        of = f" of {self.expected / 2**20:.1f} MiB" if self.expected else ""
        rate = self.received / 2**20 / (now - self.start)
        log.info("%s: %.1f MiB%s so far, %.2f MiB/s", self.url, self.received / 2**20, of, rate)


class _Backoff(Retry):
    """urllib3's Retry, waiting before the first retry too: ``backoff_factor`` x 1, 2,
    4... seconds (Retry's own schedule makes the first retry at once, to no avail on a
    server that has just failed)."""

    def get_backoff_time(self) -> float:
        return self.backoff_factor * 2 ** (len(self.history) - 1) if self.history else 0.0


def _open_file(url: str):
    """A file:// mirror, opened for reading (requests serves http and https only)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise DownloadFault(
            f"file:// URL on host {parts.netloc!r}", "write file:///absolute/path/to/the/file"
        )
    try:
        return open(url2pathname(parts.path), "rb")
    except FileNotFoundError as err:
        raise DownloadFault(f"no such file ({err})", "correct the URL") from err
    except OSError as err:
        fix = "correct the URL, or make the file readable"
        raise DownloadFault(f"{type(err).__name__}: {err}", fix) from err


def _get(session: requests.Session, url: str, stall_timeout: float) -> requests.Response:
    """The response to a GET of ``url``, its body not read yet; a refusal is a fault."""
    response = session.get(url, stream=True, timeout=(stall_timeout, stall_timeout))
    if not 200 <= response.status_code < 300:
        response.close()
        raise http_fault(response.status_code, response.reason)
    return response


def _copy(read, out, pace: _Pace, digest) -> int:
    """Copy the blocks of ``read`` to ``out`` and ``digest`` until the end, checking the
    pace after each; return the number of bytes."""
    if (problem := pace.problem()) is not None:  # the headers took all the patience
        raise DownloadFault(problem, SLOW_FIX)
    size = 0
    while block := read(BLOCK):
        digest.update(block)
        out.write(block)
        size += len(block)
        if (problem := pace.problem(len(block))) is not None:
            raise DownloadFault(problem, SLOW_FIX)
    return size


def _attempt(session, url, dest, sha256, verify, stall_timeout, min_speed) -> dict:
    """Fetch ``url`` into a temporary file next to ``dest``; rename it only once checked."""
    with atomic_path(dest) as tmp, open(tmp, "wb") as out:
        pace = _Pace(url, stall_timeout, min_speed)
        digest = hashlib.sha256()
        if urlsplit(url).scheme == "file":
            expected = None
            with _open_file(url) as source:
                size = _copy(source.read1, out, pace, digest)
        else:
            with _get(session, url, stall_timeout) as response:
                length = response.headers.get("Content-Length", "")
                expected = pace.expected = int(length) if length.isdigit() else None
                size = _copy(response.raw.read1, out, pace, digest)
        out.close()  # flushed for verify
        if expected is not None and expected != size:
            raise DownloadFault(
                f"truncated: got {size} of the {expected} bytes announced", DROPPED_FIX, True
            )
        actual = digest.hexdigest()
        if sha256 and actual.lower() != sha256.lower():
            raise DownloadFault(
                f"SHA-256 {actual} does not match the pinned {sha256}",
                "this mirror serves another file: remove it from `urls`, or correct `sha256`",
            )
        if verify is not None:
            try:
                verify(tmp)
            except DataError as err:  # name the mirror, not the temporary file
                raise DownloadFault(
                    str(err).replace(f"{tmp}: ", ""),
                    "this mirror serves something else than the expected file: remove it "
                    "from `urls`",
                ) from err
    return {
        "url": url,
        "sha256": actual,
        "bytes": size,
        "downloaded": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _next_try(policy: Retry, url: str, fault: DownloadFault) -> Retry | None:
    """``policy`` after one more failed attempt; None when the fault is not worth a retry
    or no retry is left."""
    if not fault.retry:
        return None
    try:
        return policy.increment("GET", url, error=fault)
    except MaxRetryError:
        return None


def _mirror(session, url, dest, retries, retry_delay, **checks):
    """``(provenance, None)`` once ``url`` served the file, in up to ``1 + retries``
    attempts ``retry_delay`` x 1, 2, 4... seconds apart; else ``(None, (fault, attempts,
    unreachable))`` for its last attempt. A local write error ends the whole download."""
    policy = _Backoff(total=retries, backoff_factor=retry_delay)
    while True:
        try:
            return _attempt(session, url, dest, **checks), None
        except Exception as err:  # every mirror gets its chance; all errors are reported
            if is_local(err):
                raise DataError(
                    f"cannot write the download next to {dest}: {err}. Free some disk "
                    f"space or make {dest.parent} writable (or set `results_dir`)."
                ) from err
            fault, unreachable = describe(err, checks["stall_timeout"])
            again = _next_try(policy, url, fault)
            if again is None:
                return None, (fault, len(policy.history) + 1, unreachable)
            policy = again
            attempt, delay = len(policy.history), policy.get_backoff_time()
            log.warning(
                "%s: attempt %d of %d failed (%s); again in %g s",
                url,
                attempt,
                retries + 1,
                fault,
                delay,
            )
            policy.sleep()


def download(
    urls: list[str],
    dest: str | os.PathLike,
    *,
    stall_timeout: float,
    min_speed: float,
    retries: int,
    retry_delay: float,
    sha256: str | None = None,
    verify=None,
    config_key: str = "this dataset",
) -> dict:
    """Fetch the first mirror that serves a complete, valid file; write ``dest`` atomically.

    Each mirror gets ``1 + retries`` attempts, ``retry_delay`` x 1, 2, 4... seconds apart,
    for quick faults that may pass (dropped connection, HTTP 5xx, unreachable host). An
    attempt ends when no byte comes for ``stall_timeout`` seconds or fewer than
    ``min_speed`` bytes/s come over ``stall_timeout`` seconds; such a mirror, a wrong file
    or a missing URL moves on to the next mirror at once. Each attempt writes a temporary
    file next to ``dest``, checked (complete against Content-Length, ``sha256`` when
    pinned, ``verify(path)`` when given) before it is renamed, and removed on any failure.
    Returns provenance (url, sha256, bytes, date) and logs how to pin the checksum; on
    failure names every URL, its error and the fix, and how to point ``config_key``
    (e.g. ``datasets.cortex``) at a local copy.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)  # left by a download killed with SIGKILL
    checks = dict(stall_timeout=stall_timeout, min_speed=min_speed, sha256=sha256, verify=verify)
    errors, unreachable = [], []
    with requests.Session() as session:
        # The file's own bytes, not a compressed copy: Content-Length and sha256 are theirs.
        session.headers["Accept-Encoding"] = "identity"
        for url in urls:
            provenance, failure = _mirror(session, url, dest, retries, retry_delay, **checks)
            if provenance is not None:
                _log_success(provenance, sha256, config_key)
                return provenance
            fault, attempts, no_route = failure
            tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
            errors.append(f"  {url}: {fault} ({tries}). Fix: {fault.fix}.")
            unreachable.append(no_route)
            log.warning("%s", errors[-1].strip())
    offline = ""
    if unreachable and all(unreachable):
        offline = (
            "\nThe network seems unreachable: no mirror could be connected to (host name "
            "not resolved, connection refused or no route). Check your connection, or work "
            "offline from a local copy:"
        )
    raise DataError(
        f"could not download {dest.name} from any mirror:\n"
        + "\n".join(errors)
        + offline
        + f"\nDownload the file by other means and set `path: /where/you/saved/it` under "
        f"{config_key} in your config (or list a reachable mirror under `urls`)."
    )


def _log_success(provenance: dict, sha256: str | None, config_key: str) -> None:
    pin = (
        "it matches the pinned sha256"
        if sha256
        else f"to pin this file, add `sha256: {provenance['sha256']}` under "
        f"{config_key} in your config"
    )
    log.info(
        "downloaded %d bytes from %s; sha256 %s (%s)",
        provenance["bytes"],
        provenance["url"],
        provenance["sha256"],
        pin,
    )
