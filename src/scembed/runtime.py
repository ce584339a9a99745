"""Plumbing shared by the rule scripts: logging to the rule's log file, atomic writes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path


def setup_logging(log_path: str) -> logging.Logger:
    """Send logging, warnings, stdout and stderr of a rule script to its ``log:`` file."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    sys.stdout = sys.stderr = stream
    logging.basicConfig(
        stream=stream,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    log = logging.getLogger("scembed")
    from scembed.versions import version_mismatches

    for message in version_mismatches():
        log.warning(message)
    # a job stopped by Snakemake, scancel or a time limit removes its half-written file
    stop_on_signals(log, "the job", "nothing partial is kept; run the workflow again")
    return log


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it into place only on success.

    The file gets the permissions the user's umask gives any new file (mkstemp's 0600
    would hide results from the rest of a group on a shared cluster). Temporaries of
    ``path`` that a killed write left behind are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)  # what a SIGKILL left of an earlier write
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def timed(what: str, log: logging.Logger | None = None):
    """Log how long the block took (``what: 12.3 s``): at atlas scale the job logs say
    where the time goes."""
    import time

    start = time.perf_counter()
    yield
    (log or logging.getLogger("scembed")).info("%s: %.1f s", what, time.perf_counter() - start)


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Remove the half-written temporaries that a killed job (SIGKILL: no clean-up can
    run) left next to ``path``; :func:`atomic_path` names them ``.{name}.*``, and only
    the job that writes ``path`` writes them."""
    path = Path(path)
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.*"):
            tmp.unlink(missing_ok=True)


def stop_on_signals(log: logging.Logger, what: str, how_to_go_on: str) -> None:
    """End the job on SIGTERM (Snakemake stopping, scancel, a Slurm time limit) and SIGINT
    through SystemExit, so that :func:`atomic_path` removes a half-written file, and say
    in the log how to go on."""
    import signal

    def stop(signum, frame):
        log.error("%s stopped by %s; %s", what, signal.Signals(signum).name, how_to_go_on)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _json_value(value):
    """numpy arrays and scalars (as AnnData reads ``uns`` back) as plain lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def write_json(data: dict, path: str | os.PathLike) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=_json_value)
        handle.write("\n")


def write_h5ad(adata, path: str | os.PathLike) -> None:
    """Write an AnnData file atomically (compressed)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")


def read_h5ad_parts(path: str | os.PathLike, x: bool = True, layers: tuple = ()):
    """The AnnData file at ``path`` with obs, var, uns, obsm, ``X`` only when ``x`` and
    only the named ``layers``: the matrices a job does not use are never read (at atlas
    scale each is gigabytes)."""
    import anndata as ad
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        parts = {
            name: read_elem(handle[name])
            for name in ("obs", "var", "uns", "obsm")
            if name in handle
        }
        if x and "X" in handle:
            parts["X"] = read_elem(handle["X"])
        parts["layers"] = {name: read_elem(handle["layers"][name]) for name in layers}
    return ad.AnnData(**parts)
