"""What went wrong in one download attempt, whether to try again, and what the user can do.

requests wraps urllib3's errors, which wrap the socket's: :func:`describe` looks down that
chain for the cause a person can act on (a refused connection, an unknown host, a body
cut short) and says it in the download's words.
"""

from __future__ import annotations

import errno
import http.client
import socket

import requests
from urllib3.exceptions import IncompleteRead, ProtocolError, ReadTimeoutError

from scembed.checks import DataError


class DownloadFault(DataError):
    """One failed attempt at one mirror: what went wrong, whether another attempt may
    succeed, and what the user can do about it."""

    def __init__(self, message: str, fix: str, retry: bool = False):
        super().__init__(message)
        self.fix, self.retry = fix, retry


# A stalled or crawling server seldom recovers within seconds, and each retry would cost
# another stall_timeout: the next mirror is tried at once.
SLOW_FIX = (
    "the server stopped sending, or sent too slowly: if your link is just slow, raise "
    "`download.stall_timeout` or lower `download.min_speed`; else try again later or use "
    "another mirror"
)
DROPPED_FIX = "the connection dropped: try again later or use another mirror"
RETRY_STATUSES = frozenset({408, 429, *range(500, 600)})  # the server may do better soon
_NO_ROUTE = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN}
_LOCAL = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def http_fault(code: int, reason: str) -> DownloadFault:
    """The fault of an HTTP status other than success: a server error may pass, a missing
    file will not."""
    retry = code in RETRY_STATUSES
    fix = (
        "the server failed: try again later or use another mirror"
        if retry
        else "the file is not served at this URL: correct it or remove it from `urls`"
    )
    return DownloadFault(f"HTTP Error {code}: {reason}", fix, retry)


def describe(err: BaseException, stall_timeout: float) -> tuple[DownloadFault, bool]:
    """``err`` as a :class:`DownloadFault`, and whether it says the host was unreachable
    (no name resolution, connection refused, no route)."""
    if isinstance(err, DownloadFault):
        return err, False
    if isinstance(err, requests.Timeout | ReadTimeoutError):
        return DownloadFault(f"stalled: no data for {stall_timeout:g} s", SLOW_FIX), False
    if (unresolved := _find(err, socket.gaierror)) is not None:
        fix = "check the host name in the URL, your network connection and DNS"
        return DownloadFault(f"cannot resolve the host name ({unresolved})", fix, True), True
    if isinstance(err, requests.exceptions.InvalidSchema | requests.exceptions.MissingSchema):
        fix = "write a full http://, https:// or file:// URL"
        return DownloadFault(f"{type(err).__name__}: {err}", fix), False
    if isinstance(err, ValueError) and not isinstance(err, DataError):
        return DownloadFault(f"{type(err).__name__}: {err}", "correct the URL"), False
    if (cut := _find(err, IncompleteRead)) is not None:
        got = f"got {cut.partial} of the {cut.partial + cut.expected} bytes announced"
        return DownloadFault(f"truncated: {got}", DROPPED_FIX, True), False
    cause = _system_error(err)
    if cause is not None and cause.errno in _NO_ROUTE:
        fix = "the host does not answer: check the URL and your network connection"
        return DownloadFault(f"{type(cause).__name__}: {cause}", fix, True), True
    if cause is not None or isinstance(
        err, requests.ConnectionError | ProtocolError | http.client.HTTPException
    ):
        what = cause or err
        return DownloadFault(f"{type(what).__name__}: {what}", DROPPED_FIX, True), False
    fix = "an unexpected error: try again, or get the file by other means (below)"
    return DownloadFault(f"{type(err).__name__}: {err}", fix), False


def is_local(err: BaseException) -> bool:
    """Whether ``err`` is about writing here (full disk, read-only or forbidden folder),
    which no mirror can cure. The network's own errors come wrapped by requests or
    urllib3, a file:// mirror's as a :class:`DownloadFault`: a bare OSError is ours."""
    return (
        isinstance(err, OSError)
        and not isinstance(err, requests.RequestException)
        and err.errno in _LOCAL
    )


def _chain(err: BaseException):
    """``err`` and the errors it wraps, nearest first: the cause, urllib3's ``reason``
    and the errors among the arguments (requests and urllib3 wrap them there)."""
    todo, seen = [err], set()
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        wrapped = (e.__cause__, getattr(e, "reason", None), *e.args)
        todo += [w for w in wrapped if isinstance(w, BaseException)]


def _find(err: BaseException, kind: type) -> BaseException | None:
    """The nearest error of type ``kind`` in ``err``'s chain, or None."""
    return next((e for e in _chain(err) if isinstance(e, kind)), None)


def _system_error(err: BaseException) -> OSError | None:
    """The operating system's error under ``err`` (requests' own errors are OSErrors
    too, without an errno)."""
    return next(
        (
            e
            for e in _chain(err)
            if isinstance(e, OSError) and not isinstance(e, requests.RequestException)
        ),
        None,
    )
