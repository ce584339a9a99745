"""Read cells x genes integer counts and cell-type labels from each supported source.

Every reader returns an AnnData with sparse CSR integer counts in ``X``, the labels in
``obs[label_key]`` and ``uns["label_key"]``; :func:`check_counts` guards every import.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scembed.checks import DataError, check_counts, check_labels, normalise_labels
from scembed.runtime import atomic_path, remove_stale_temporaries

log = logging.getLogger("scembed.sources")

ZEISEL_FIELDS = (
    "tissue",
    "group #",
    "total mRNA mol",
    "well",
    "sex",
    "age",
    "diameter",
    "cell_id",
    "level1class",
    "level2class",
)


def finish(adata: ad.AnnData, label_key: str, where: str, provenance: dict) -> ad.AnnData:
    """Check counts and labels, store them in the common layout and record provenance.

    Cells without any count are dropped (refused when every cell is empty); genes without
    any count are kept (gene selection ranks them last). Duplicated cell or gene names are
    made unique (:func:`make_names_unique`). Each of these says so in the log.
    """
    check_labels(adata.obs, label_key, where)
    check_counts(adata.X, where)
    X = sp.csr_matrix(adata.X)
    if not np.issubdtype(X.dtype, np.integer):  # integer counts are kept without a copy
        X.data = np.rint(X.data)
    dtype = np.int64 if X.data.size and X.data.max() > 2**31 - 1 else np.int32
    adata.X = X if X.dtype == dtype else X.astype(dtype)
    adata.X.eliminate_zeros()
    n_cells = adata.n_obs
    adata = drop_empty_cells(adata, where)
    if adata.n_obs < n_cells:
        check_labels(adata.obs, label_key, where)  # the empty cells may have held a type
    empty_genes = int((adata.X.getnnz(axis=0) == 0).sum())
    if empty_genes:
        log.info(
            "%s: %d of %d genes have no count in any cell; kept (gene selection ranks them last)",
            where,
            empty_genes,
            adata.n_vars,
        )
    adata.obs[label_key] = normalise_labels(adata.obs[label_key])
    make_names_unique(adata, where)
    adata.uns["label_key"] = label_key
    adata.uns["provenance"] = {
        **provenance,
        "imported": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return adata


def drop_empty_cells(adata: ad.AnnData, where: str) -> ad.AnnData:
    """``adata`` (CSR counts) without its cells of total count 0, with a log line; a
    matrix without any count is refused."""
    empty = adata.X.getnnz(axis=1) == 0
    if empty.all():
        raise DataError(
            f"{where}: every one of the {adata.n_obs} cells ({adata.n_vars} genes) has zero "
            "counts: the matrix is empty. Check that `path` is the file you meant (and, "
            "for an h5ad file, that `counts_layer` names the layer of the counts)."
        )
    if not empty.any():
        return adata
    log.warning(
        "%s: dropped %d of %d cells without any count (e.g. %s)",
        where,
        int(empty.sum()),
        adata.n_obs,
        list(adata.obs_names[empty][:3]),
    )
    return adata[~empty].copy()


def make_names_unique(adata: ad.AnnData, where: str) -> None:
    """Make duplicated cell and gene names unique, in place, saying how many in the log.

    Gene symbols are often duplicated (one symbol, several Ensembl ids); the copies get
    anndata's suffixes ``-1``, ``-2``... in the order they appear, so that every gene
    and cell can be told apart downstream.
    """
    for axis, names, make_unique in (
        ("cell", adata.obs_names, adata.obs_names_make_unique),
        ("gene", adata.var_names, adata.var_names_make_unique),
    ):
        repeated = names[names.duplicated(keep=False)].unique()
        if len(repeated) == 0:
            continue
        extra = int(names.duplicated().sum())
        make_unique()
        log.warning(
            "%s: %d %s names occur more than once (%d extra copies, e.g. %s); the copies "
            "are renamed NAME-1, NAME-2, ... to make every %s name unique",
            where,
            len(repeated),
            axis,
            extra,
            list(map(str, repeated[:3])),
            axis,
        )


def file_provenance(path: str | os.PathLike, sha256: str | None = None) -> dict:
    """SHA-256 and size of a file (or of every file in a folder), checked when pinned."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. Check the dataset's `path`.")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    size = 0
    for f in files:
        with open(f, "rb") as handle:
            size += _stream(handle.read, digest)
    actual = digest.hexdigest()
    if sha256 and actual.lower() != sha256.lower():
        raise DataError(
            f"{path}: SHA-256 {actual} does not match the pinned sha256 {sha256}. "
            "The file changed or is not the one you meant; fix the file or the `sha256`."
        )
    return {"path": str(path), "sha256": actual, "bytes": size}


# --------------------------------------------------------------------------- Zeisel 2015


def _stream(read, digest, out=None) -> int:
    """Feed the 1 MiB blocks of ``read`` to ``digest`` (and write them to ``out``); return
    the number of bytes."""
    size = 0
    for block in iter(lambda: read(1 << 20), b""):
        digest.update(block)
        if out is not None:
            out.write(block)
        size += len(block)
    return size


def read_zeisel(path: str | os.PathLike) -> ad.AnnData:
    """Parse the Zeisel 2015 expression file (genes x cells text) into cells x genes.

    Layout (BOOK.md): rows 0-9 per-cell metadata (column 1 the field name), row 10 a
    separator, then one row per gene: symbol, gene-cluster number (dropped), counts.
    """
    path = str(path)
    with open(path, encoding="utf-8", newline="") as handle:
        head = [handle.readline().rstrip("\r\n").split("\t") for _ in range(11)]
    fields = tuple(row[1] if len(row) > 1 else "" for row in head[:10])
    if fields != ZEISEL_FIELDS:
        raise DataError(
            f"{path}: not the Zeisel 2015 expression file: rows 0-9 should name the fields "
            f"{list(ZEISEL_FIELDS)} in column 1, found {list(fields)}. Download it again "
            "or check the dataset's `path`."
        )
    n_cells = len(head[0]) - 2
    if n_cells < 1 or any(len(row) - 2 != n_cells for row in head[:10]):
        raise DataError(f"{path}: the metadata rows do not all have the same number of cells.")
    if any(value.strip() for value in head[10]):
        raise DataError(f"{path}: row 10 should be an empty separator row.")
    metadata = zip(ZEISEL_FIELDS, head[:10], strict=True)
    obs = pd.DataFrame({field: row[2:] for field, row in metadata})
    try:
        genes = pd.read_csv(
            path,
            sep="\t",
            header=None,
            skiprows=11,
            index_col=0,
            quoting=3,
            dtype={0: str},
            keep_default_na=False,  # "NA", "nan", "null"... are not counts (nor missing)
            na_values=[""],
            engine="c",
        )
    except pd.errors.EmptyDataError as err:
        raise DataError(
            f"{path}: no gene rows after the separator row 10: the file is truncated. "
            "Download it again or check the dataset's `path`."
        ) from err
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: the gene rows do not parse as counts ({err}).") from err
    if genes.shape[0] == 0 or genes.shape[1] != n_cells + 1:
        raise DataError(
            f"{path}: expected gene rows with {n_cells + 2} fields (symbol, cluster, "
            f"{n_cells} counts); found {genes.shape[0]} rows of {genes.shape[1] + 1} fields. "
            "The file is truncated or not the Zeisel file."
        )
    counts = genes.iloc[:, 1:]
    if not all(np.issubdtype(t, np.number) for t in counts.dtypes):
        numeric = counts.apply(pd.to_numeric, errors="coerce")
        gene, cell = np.argwhere((numeric.isna() & counts.notna()).to_numpy())[0]
        raise DataError(
            f"{path}: some gene rows hold values that are not numbers, first "
            f"{counts.iat[gene, cell]!r} in gene row {genes.index[gene]!r} (line "
            f"{12 + gene}) for cell {obs['cell_id'].iat[cell]!r}."
        )
    missing = counts.isna().any(axis=1).to_numpy()
    if missing.any():  # a row cut short (truncated file) or an empty count field
        i = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{path}: gene row {genes.index[i]!r} (line {12 + i}) lacks some of its "
            f"{n_cells} counts: the file is truncated or damaged. Download it again or "
            "check the dataset's `path`."
        )
    obs.index = pd.Index(obs.pop("cell_id").to_numpy(), name="cell_id")
    var = pd.DataFrame(index=pd.Index(genes.index.astype(str), name="gene"))
    values = counts.to_numpy(dtype=np.float64).T
    return ad.AnnData(X=values, obs=obs, var=var)


def zeisel_layout_ok(path: str | os.PathLike) -> None:
    """Raise :class:`DataError` unless ``path`` parses as the Zeisel file with valid counts."""
    adata = read_zeisel(path)
    check_counts(adata.X, str(path))


# --------------------------------------------------------------------------- downloads


class DownloadFault(DataError):
    """One failed attempt at one mirror: what went wrong, whether another attempt may
    succeed, and what the user can do about it."""

    def __init__(self, message: str, fix: str, retry: bool = False):
        super().__init__(message)
        self.fix, self.retry = fix, retry


class _Watchdog:
    """Ends an attempt that stalls or crawls by shutting its socket down.

    A per-read socket timeout never fires on a server that sends a byte now and then, so
    a thread watches the bytes received: nothing for ``stall_timeout`` seconds, or under
    ``min_speed`` bytes/s on average over a window of ``stall_timeout`` seconds, ends it.
    """

    def __init__(self, stall_timeout: float, min_speed: float):
        self.stall_timeout, self.min_speed = stall_timeout, min_speed
        self.sock = None  # set by the connection once it is open
        self.received = 0
        self.last = time.monotonic()  # when the last byte came
        self.reason = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def got(self, n: int) -> None:
        self.received += n
        self.last = time.monotonic()

    def _watch(self) -> None:
        tick = min(0.25, self.stall_timeout / 10)
        window, window_bytes = time.monotonic(), 0
        while not self._done.wait(tick):
            now = time.monotonic()
            if self.reason is None and now - self.last >= self.stall_timeout:
                self.reason = f"stalled: no data for {self.stall_timeout:g} s"
            elif self.reason is None and now - window >= self.stall_timeout:
                speed = (self.received - window_bytes) / (now - window)
                if speed < self.min_speed:
                    self.reason = (
                        f"too slow: {speed:.0f} bytes/s over the last {now - window:.1f} s, "
                        f"under min_speed {self.min_speed:g} bytes/s"
                    )
                window, window_bytes = now, self.received
            if self.reason is not None and self.sock is not None:
                with contextlib.suppress(OSError):  # the plain socket's, under any TLS
                    socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
                return


class _Watched:
    """A connection that hands its socket to the attempt's watchdog once connected."""

    watch: _Watchdog

    def connect(self):
        super().connect()
        self.watch.sock = self.sock


class _WatchedHTTPConnection(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, http.client.HTTPSConnection):
    pass


def _opener(watch: _Watchdog) -> urllib.request.OpenerDirector:
    """urllib's opener (proxies, redirects, file:// URLs) with watched connections."""

    def connection(cls):
        def make(host, **kwargs):
            conn = cls(host, **kwargs)
            conn.watch = watch
            return conn

        return make

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(connection(_WatchedHTTPConnection), req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(connection(_WatchedHTTPSConnection), req, context=self._context)

    return urllib.request.build_opener(HTTPHandler, HTTPSHandler)


# A stalled or crawling server seldom recovers within seconds, and each retry would cost
# another stall_timeout: the next mirror is tried at once.
_SLOW_FIX = (
    "the server stopped sending, or sent too slowly: if your link is just slow, raise "
    "`download.stall_timeout` or lower `download.min_speed`; else try again later or use "
    "another mirror"
)
_DROPPED_FIX = "the connection dropped: try again later or use another mirror"
_NO_ROUTE = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN}


def _fault(err: BaseException, stall_timeout: float) -> tuple[DownloadFault, bool]:
    """``err`` as a :class:`DownloadFault`, and whether it says the host was unreachable
    (no name resolution, connection refused, no route)."""
    if isinstance(err, DownloadFault):
        return err, False
    if isinstance(err, urllib.error.HTTPError):
        retry = err.code >= 500 or err.code in (408, 429)
        fix = (
            "the server failed: try again later or use another mirror"
            if retry
            else "the file is not served at this URL: correct it or remove it from `urls`"
        )
        return DownloadFault(f"HTTP Error {err.code}: {err.reason}", fix, retry), False
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError):
        return DownloadFault(f"stalled: no data for {stall_timeout:g} s", _SLOW_FIX), False
    if isinstance(reason, socket.gaierror):
        fix = "check the host name in the URL, your network connection and DNS"
        return DownloadFault(f"cannot resolve the host name ({reason})", fix, True), True
    if isinstance(reason, FileNotFoundError):
        return DownloadFault(f"no such file ({reason})", "correct the URL", False), False
    if isinstance(reason, OSError) and reason.errno in _NO_ROUTE:
        fix = "the host does not answer: check the URL and your network connection"
        return DownloadFault(f"{type(reason).__name__}: {reason}", fix, True), True
    if isinstance(reason, OSError | http.client.HTTPException):
        return DownloadFault(f"{type(reason).__name__}: {reason}", _DROPPED_FIX, True), False
    if isinstance(err, urllib.error.URLError):  # e.g. an unknown URL scheme
        fix = "write a full http://, https:// or file:// URL"
        return DownloadFault(f"URLError: {reason}", fix, False), False
    if isinstance(err, ValueError) and not isinstance(err, DataError):
        return DownloadFault(f"{type(err).__name__}: {err}", "correct the URL", False), False
    fix = "an unexpected error: try again, or get the file by other means (below)"
    return DownloadFault(f"{type(err).__name__}: {err}", fix, False), False


_LOCAL = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _is_local(err: BaseException) -> bool:
    """Whether ``err`` is about writing here (full disk, read-only or forbidden folder),
    which no mirror can cure (urllib wraps the network's own errors in URLError)."""
    return (
        isinstance(err, OSError)
        and not isinstance(err, urllib.error.URLError)
        and err.errno in _LOCAL
    )


def _attempt(url, dest, sha256, verify, stall_timeout, min_speed) -> dict:
    """Fetch ``url`` into a temporary file next to ``dest``; rename it only once checked."""
    with atomic_path(dest) as tmp, _Watchdog(stall_timeout, min_speed) as watch:
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as out, _opener(watch).open(url, timeout=stall_timeout) as r:
                expected = r.headers.get("Content-Length")
                read = getattr(r, "read1", r.read)  # read1: back after each packet
                while block := read(1 << 16):
                    watch.got(len(block))
                    digest.update(block)
                    out.write(block)
                    size += len(block)
                    if watch.reason is not None:
                        break
        except Exception as err:
            if watch.reason is None:
                raise
            raise DownloadFault(watch.reason, _SLOW_FIX) from err
        watch.stop()
        if watch.reason is not None:
            raise DownloadFault(watch.reason, _SLOW_FIX)
        if expected is not None and int(expected) != size:
            raise DownloadFault(
                f"truncated: got {size} of the {expected} bytes announced", _DROPPED_FIX, True
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
    or a missing URL moves on to the next mirror at once. Each attempt writes a temporary file next
    to ``dest``, checked (complete against Content-Length, ``sha256`` when pinned,
    ``verify(path)`` when given) before it is renamed, and removed on any failure.
    Returns provenance (url, sha256, bytes, date) and logs how to pin the checksum; on
    failure names every URL, its error and the fix, and how to point ``config_key``
    (e.g. ``datasets.cortex``) at a local copy.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)  # left by a download killed with SIGKILL
    errors, unreachable = [], []
    for url in urls:
        for attempt in range(1, retries + 2):
            try:
                provenance = _attempt(url, dest, sha256, verify, stall_timeout, min_speed)
            except Exception as err:  # every mirror gets its chance; all errors are reported
                if _is_local(err):
                    raise DataError(
                        f"cannot write the download next to {dest}: {err}. Free some disk "
                        f"space or make {dest.parent} writable (or set `results_dir`)."
                    ) from err
                fault, no_route = _fault(err, stall_timeout)
                if fault.retry and attempt <= retries:
                    delay = retry_delay * 2 ** (attempt - 1)
                    log.warning(
                        "%s: attempt %d of %d failed (%s); again in %g s",
                        url,
                        attempt,
                        retries + 1,
                        fault,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                errors.append(f"  {url}: {fault} ({tries}). Fix: {fault.fix}.")
                unreachable.append(no_route)
                log.warning("%s", errors[-1].strip())
                break
            else:
                pin = (
                    "it matches the pinned sha256"
                    if sha256
                    else f"to pin this file, add `sha256: {provenance['sha256']}` under "
                    f"{config_key} in your config"
                )
                log.info(
                    "downloaded %d bytes from %s; sha256 %s (%s)",
                    provenance["bytes"],
                    url,
                    provenance["sha256"],
                    pin,
                )
                return provenance
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


# --------------------------------------------------------------------------- other sources


def read_pbmc68k(label_key: str = "bulk_labels") -> ad.AnnData:
    """Integer counts recovered from scanpy's ``pbmc68k_reduced`` (700 PBMCs, 765 genes).

    ``raw.X`` holds log1p(counts / n_counts x 1e4) rounded to 3 decimals, so
    round(expm1(raw.X) x n_counts / 1e4) gives back the counts.
    """
    import scanpy as sc

    pbmc = sc.datasets.pbmc68k_reduced()
    logged = pbmc.raw.X.toarray() if sp.issparse(pbmc.raw.X) else np.asarray(pbmc.raw.X)
    library = pbmc.obs["n_counts"].to_numpy(dtype=np.float64)[:, None]
    counts = np.rint(np.expm1(logged.astype(np.float64)) * library / 1e4)
    obs = pbmc.obs.copy()
    return ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=pbmc.raw.var_names.copy()))


def read_h5ad(path: str, counts_layer: str = "X") -> ad.AnnData:
    """A user's AnnData file; counts from ``X``, from ``layers[counts_layer]`` or, with
    ``counts_layer: raw`` (and no layer of that name), from ``.raw.X`` with ``.raw``'s
    genes. When the chosen matrix holds no counts, the error says where counts are."""
    try:
        adata = ad.read_h5ad(path)
    except Exception as err:  # h5py, anndata and OS errors alike: a file we cannot use
        raise DataError(
            f"{path}: cannot be read as an AnnData file ({type(err).__name__}: {err}). It "
            "is truncated, damaged or not an .h5ad file: copy or write it again "
            "(adata.write_h5ad), or check the dataset's `path`."
        ) from err
    matrices = count_matrices(adata)
    if counts_layer not in matrices:
        raw = " (`raw` reads .raw.X; this file has no .raw)" if counts_layer == "raw" else ""
        raise DataError(
            f"{path}: there is no layer {counts_layer!r}{raw}; the layers are "
            f"{list(adata.layers.keys())}. Set `counts_layer` to one of them, or `X`"
            + (", or `raw` for .raw.X." if "raw" in matrices else ".")
        )
    name, X, var_names = matrices[counts_layer]
    where = path if counts_layer == "X" else f"{path} ({name})"
    try:
        check_counts(X, where)
    except DataError:
        found = [k for k, (_, M, _) in matrices.items() if k != counts_layer and holds_counts(M)]
        if not found:
            raise
        check_counts(
            X,
            where,
            fix=f"{name} looks normalised or transformed; the integer counts are in "
            f"{matrices[found[0]][0]}: set `counts_layer: {found[0]}` for this dataset.",
        )
    return ad.AnnData(X=X, obs=adata.obs.copy(), var=pd.DataFrame(index=var_names))


def count_matrices(adata: ad.AnnData) -> dict:
    """``counts_layer`` value -> (description, matrix, gene names) of every matrix of an
    h5ad file that can hold the counts: ``X``, each layer, and ``raw`` for ``.raw.X``
    (unless a layer is called "raw")."""
    matrices = {"X": ("X", adata.X, adata.var_names)}
    for key in adata.layers:
        matrices[key] = (f"layers[{key!r}]", adata.layers[key], adata.var_names)
    if adata.raw is not None and "raw" not in matrices:
        matrices["raw"] = (".raw.X", adata.raw.X, adata.raw.var_names)
    return matrices


def holds_counts(X) -> bool:
    """True when ``X`` is a matrix of non-negative integers that are not all zero."""
    if X is None or not hasattr(X, "shape") or len(X.shape) != 2:
        return False
    try:
        check_counts(X, "")
    except DataError:
        return False
    return bool((X != 0).sum() > 0)


def read_10x(path: str, labels: str, label_key: str) -> ad.AnnData:
    """A 10x ``.h5`` file or matrix folder, with labels from a barcode TSV (with header)."""
    adata = read_10x_counts(path)
    table = pd.read_csv(labels, sep="\t", index_col=0, dtype=str)
    check_labels(table, label_key, labels)
    table = table[table[label_key].notna()]  # cells without a label are dropped
    shared = adata.obs_names.intersection(table.index)
    if len(shared) == 0:
        raise DataError(
            f"{labels}: none of its barcodes (e.g. {list(table.index[:3])}) are cells of "
            f"{path} (e.g. {list(adata.obs_names[:3])}). The first column must hold the "
            "barcodes exactly as in the 10x file."
        )
    adata = adata[shared].copy()
    adata.obs[label_key] = table.loc[shared, label_key].to_numpy()
    return adata


TENX_FILES = {  # Cell Ranger v3+ and v2 matrix folders, as scanpy reads them
    "v3": ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"),
    "v2": ("matrix.mtx", "genes.tsv", "barcodes.tsv"),
}


def read_10x_counts(path: str) -> ad.AnnData:
    """The counts of a 10x ``.h5`` file or matrix folder; a missing, truncated or damaged
    file is a :class:`DataError` naming it. Gene names are left as they are (duplicates
    are made unique, with a log line, on import)."""
    import scanpy as sc

    folder = Path(path)
    if str(path).endswith(".h5"):
        what, read = "a 10x .h5 file", sc.read_10x_h5
    elif folder.is_dir():
        layout = "v2" if (folder / "genes.tsv").is_file() else "v3"
        missing = [name for name in TENX_FILES[layout] if not (folder / name).is_file()]
        if missing:
            raise DataError(
                f"{path}: the 10x matrix folder lacks {', '.join(missing)} (a Cell Ranger "
                f"{layout} folder holds {', '.join(TENX_FILES[layout])}). Copy the whole "
                "filtered_feature_bc_matrix folder from Cell Ranger's outs/ again, or set "
                "`path` to its filtered_feature_bc_matrix.h5."
            )
        what = f"a 10x matrix folder ({', '.join(TENX_FILES[layout])})"

        def read(p):
            return sc.read_10x_mtx(p, make_unique=False)
    else:
        raise DataError(
            f"{path}: a 10x source needs a .h5 file or a matrix folder, and this is neither. "
            "Set `path` to Cell Ranger's filtered_feature_bc_matrix.h5 or to its "
            "filtered_feature_bc_matrix folder."
        )
    try:
        return read(path)
    except Exception as err:  # h5py, gzip, scipy.io, pandas: any of them means damaged
        raise DataError(
            f"{path}: cannot be read as {what} ({type(err).__name__}: {err}). A file is "
            "truncated, damaged or not Cell Ranger output: copy it again from Cell "
            "Ranger's outs/ folder (or check the dataset's `path`)."
        ) from err


# --------------------------------------------------------------------------- registry


def load_dataset(spec: dict, files: dict, download_provenance: dict | None = None) -> ad.AnnData:
    """Read the dataset described by a validated config entry ``spec``.

    ``files`` maps "download", "path" and "labels" to the files the rule was given;
    ``download_provenance`` is the JSON the download rule wrote next to its file.
    """
    source, label_key = spec["source"], spec["label_key"]
    if source == "zeisel2015":
        path = files.get("download") or files["path"]
        provenance = file_provenance(path, spec.get("sha256"))
        provenance.update(download_provenance or {"url": None})
        adata = read_zeisel(path)
    elif source == "pbmc68k":
        import scanpy as sc

        adata = read_pbmc68k(label_key)
        path = "scanpy.datasets.pbmc68k_reduced()"
        provenance = {"path": path, "scanpy": sc.__version__}
    elif source == "h5ad":
        path = files["path"]
        provenance = file_provenance(path, spec.get("sha256"))
        adata = read_h5ad(path, spec["counts_layer"])
    elif source == "10x":
        path = files["path"]
        provenance = file_provenance(path, spec.get("sha256"))
        provenance["labels"] = file_provenance(files["labels"])
        adata = read_10x(path, files["labels"], label_key)
    elif source == "synthetic":
        from scembed.synthetic import simulate_counts, simulate_droplet_counts

        keys = ("n_cells", "n_genes", "n_types", "seed", "type_sizes")
        params = {k: spec[k] for k in keys if k in spec}
        if spec.get("profile", "markers") == "droplet":
            params.update(profile="droplet", library_size=spec["library_size"])
            adata = simulate_droplet_counts(**{k: v for k, v in params.items() if k != "profile"})
        else:
            adata = simulate_counts(**params)
        path = f"synthetic({params})"
        provenance = {"path": path, **params}
    else:
        raise DataError(f"unknown source {source!r}")
    return finish(adata, label_key, str(path), {"source": source, **provenance})
