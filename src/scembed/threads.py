"""The threads a job computes with: fixed by the config, not by the machine.

A thread count changes floating-point sums: torch's reductions in training, the blocks
in which pynndescent's NN-descent updates its graph (``numba.get_num_threads()``), the
order in which k-means adds up its centres. Snakemake gives a job ``min(threads,
--cores)`` threads and numba starts one per core it sees, so the same config and seed
gave other numbers on a laptop, a 2-core VM and a 16-core node. The config key
``compute_threads`` fixes the count instead (:func:`compute_threads`); scheduling keeps
using Snakemake's ``threads``, which only decide how many jobs run at once.

A job pins its counts for the whole process (``pin_*``); a notebook keeps its process,
so the API's ``threads=`` sets them for one call and restores them after
(:func:`blas_threads`, :func:`numba_threads`, :func:`torch_threads`).
"""

from __future__ import annotations

import contextlib
import os
import sys


def compute_threads(configured: int, scheduled: int) -> int:
    """The threads a job computes with: ``configured`` (``compute_threads.*``, the same on
    every machine), or the ``scheduled`` threads Snakemake gave the job when it is 0."""
    if configured < 0:
        raise ValueError(f"compute_threads must be 0 or more, not {configured}")
    return configured if configured > 0 else max(1, int(scheduled))


def pin_numba_threads(n: int) -> None:
    """Make numba run its parallel kernels (pynndescent's NN-descent) on exactly ``n``
    threads, on any machine: also more than its cores (numba otherwise starts one thread
    per core and cannot be given more later).

    Call it before numba is imported; once it is, only counts up to its thread pool's
    size can be set, and a larger one raises ValueError naming the fix."""
    if n < 1:
        raise ValueError(f"numba threads must be at least 1, not {n}")
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
        return
    import numba

    pool = numba.config.NUMBA_NUM_THREADS
    if n > pool:
        raise ValueError(
            f"{n} numba threads asked for, but numba's thread pool has {pool} in this "
            f"process: use at most {pool}, or set the environment variable "
            f"NUMBA_NUM_THREADS={n} (or call scembed.threads.pin_numba_threads({n})) before "
            "importing scanpy, pynndescent or umap"
        )
    numba.set_num_threads(n)


def pin_torch_threads(n: int) -> None:
    """torch's intra-op threads, the count its CPU sums depend on."""
    import torch

    torch.set_num_threads(n)


@contextlib.contextmanager
def blas_threads(n: int):
    """OpenMP and BLAS run on ``n`` threads inside the block (threadpoolctl), and on what
    they had before after it."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        yield


@contextlib.contextmanager
def numba_threads(n: int):
    """numba's parallel kernels run on ``n`` threads inside the block
    (:func:`pin_numba_threads`, whose ValueError names the fix for a count larger than
    numba's pool), and on what they had before after it."""
    import numba

    before = numba.get_num_threads()
    pin_numba_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before)


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads are ``n`` inside the block (:func:`pin_torch_threads`),
    what they were after it."""
    import torch

    before = torch.get_num_threads()
    pin_torch_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
