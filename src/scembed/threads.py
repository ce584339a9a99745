"""The threads a job computes with: fixed by the config, not by the machine.

A thread count changes floating-point sums: torch's reductions in training, the blocks
in which pynndescent's NN-descent updates its graph (``numba.get_num_threads()``), the
order in which k-means adds up its centres. Snakemake gives a job ``min(threads,
--cores)`` threads and numba starts one per core it sees, so the same config and seed
gave other numbers on a laptop, a 2-core VM and a 16-core node. The config key
``compute_threads`` fixes the count instead (:func:`compute_threads`); scheduling keeps
using Snakemake's ``threads``, which only decide how many jobs run at once.
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
    size can be set, and a larger one raises RuntimeError naming the fix."""
    if n < 1:
        raise ValueError(f"numba threads must be at least 1, not {n}")
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
        return
    import numba

    if n > numba.config.NUMBA_NUM_THREADS:
        raise RuntimeError(
            f"numba was imported with {numba.config.NUMBA_NUM_THREADS} threads before "
            f"{n} could be set; call pin_numba_threads({n}) before importing scanpy, "
            "pynndescent or umap"
        )
    numba.set_num_threads(n)


@contextlib.contextmanager
def blas_threads(n: int):
    """OpenMP and BLAS run on ``n`` threads inside the block (threadpoolctl), and on what
    they had before after it."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        yield


def pin_torch_threads(n: int) -> None:
    """torch's intra-op threads, the count its CPU sums depend on."""
    import torch

    torch.set_num_threads(n)
