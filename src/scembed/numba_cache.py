"""Compile numba kernels once per machine, not once per job.

pynndescent (the kNN graph) and umap-learn (the graph's weights and the UMAP layout)
compile their numba kernels in every new process: a clustering job on 700 cells spent
about 6 of its 9 s compiling. numba keeps compiled code on disk only for functions
declared with ``cache=True``, which most of these are not. :func:`enable` makes
``cache=True`` the default of ``numba.njit`` / ``numba.jit`` for every function declared
after it, and points numba's cache at :func:`cache_dir`.

Nothing happens on import: the scripts that build kNN graphs or UMAPs (the workflow's
``cluster`` and ``integration`` jobs, the clustering tools in tools/) call :func:`enable`
before anything imports numba's users (pynndescent, umap, scanpy).

The folder: ``$SCEMBED_NUMBA_CACHE`` when set (a folder, or ``off`` for numba's default
of compiling in every process), else ``scembed/numba`` in the user's cache folder
(``platformdirs.user_cache_dir("scembed")``: ``$XDG_CACHE_HOME/scembed/numba``, by
default ``~/.cache/scembed/numba``, on Linux), outside the repository.

The compiled code is the same machine code, so results are unchanged (tested). numba
keys each entry by the function's source file (its modification time and size), its
bytecode and closure values, its argument types and the CPU, so an upgrade of a library
or another kind of node compiles anew instead of reusing stale code; numba writes each
file to a temporary name and renames it into place, so jobs that compile at the same
time do not corrupt the cache (tested).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

ENV = "SCEMBED_NUMBA_CACHE"  # another folder, or "off"


def default_dir() -> Path:
    """``numba`` in scembed's user cache folder (platformdirs' ``user_cache_dir``; without
    platformdirs, ``$XDG_CACHE_HOME/scembed``, by default ``~/.cache/scembed``)."""
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # not in the workflow's conda envs: the XDG folder, as on Linux
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scembed"
    else:
        base = Path(user_cache_dir("scembed"))
    return base / "numba"


def cache_dir() -> Path | None:
    """The folder of the compiled kernels: $SCEMBED_NUMBA_CACHE, else :func:`default_dir`;
    None when it is "off" or cannot be written (numba then compiles in every process, as
    it does by default)."""
    setting = os.environ.get(ENV, "")
    if setting.lower() == "off":
        return None
    folder = Path(setting) if setting else default_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


def _cached(decorator):
    @functools.wraps(decorator)
    def wrapper(*args, **kwargs):
        kwargs.setdefault("cache", True)
        return decorator(*args, **kwargs)

    wrapper.scembed_cached = True
    return wrapper


def enable() -> Path | None:
    """Cache numba's compiled kernels in :func:`cache_dir`; returns it (None: off).

    Sets ``NUMBA_CACHE_DIR`` and wraps ``numba.njit`` / ``numba.jit`` for the rest of the
    process. Call it before pynndescent, umap or scanpy are imported: functions declared
    before it keep numba's default. Calling it again changes nothing."""
    folder = cache_dir()
    if folder is None:
        return None
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    import numba

    numba.config.CACHE_DIR = str(folder)  # numba read the variable when it was imported
    if not getattr(numba.njit, "scembed_cached", False):
        numba.njit = _cached(numba.njit)
        numba.jit = _cached(numba.jit)
    return folder
