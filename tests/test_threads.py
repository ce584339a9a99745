"""scembed.threads: a job's compute threads come from the config, not from the machine."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from scembed.threads import (
    blas_threads,
    compute_threads,
    numba_threads,
    pin_numba_threads,
    torch_threads,
)


def test_the_configured_count_wins_over_what_the_scheduler_gives():
    assert compute_threads(1, 8) == 1
    assert compute_threads(3, 1) == 3  # more than the job's cores: still the same numbers
    assert compute_threads(0, 6) == 6  # 0: follow the scheduler (opt-in, machine-dependent)
    assert compute_threads(0, 0) == 1
    with pytest.raises(ValueError, match="0 or more"):
        compute_threads(-1, 2)


def numba_threads_after_pinning(n: int, env_threads: str) -> str:
    code = (
        "from scembed.threads import pin_numba_threads;"
        f"pin_numba_threads({n});"
        "import numba; print(numba.config.NUMBA_NUM_THREADS, numba.get_num_threads())"
    )
    env = {"NUMBA_NUM_THREADS": env_threads, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split()


def test_numba_gets_the_pinned_threads_even_beyond_the_cores_it_sees():
    """On a 1-core machine numba starts 1 thread and could not be given 3 later: pinned
    before the import, it runs 3, whatever NUMBA_NUM_THREADS the environment had."""
    assert numba_threads_after_pinning(3, "1") == ["3", "3"]
    assert numba_threads_after_pinning(1, "2") == ["1", "1"]


def test_pinning_after_numba_is_imported_sets_what_it_can_and_names_the_fix():
    import numba

    before = numba.get_num_threads()
    try:
        pin_numba_threads(1)
        assert numba.get_num_threads() == 1
        with pytest.raises(ValueError, match="NUMBA_NUM_THREADS=.* before importing scanpy"):
            pin_numba_threads(numba.config.NUMBA_NUM_THREADS + 1)
    finally:
        numba.set_num_threads(before)
    with pytest.raises(ValueError, match="at least 1"):
        pin_numba_threads(0)


def test_blas_threads_limit_inside_the_block_only():
    from threadpoolctl import threadpool_info

    def counts():
        return [pool["num_threads"] for pool in threadpool_info()]

    outside = counts()
    with blas_threads(1):
        assert all(n == 1 for n in counts())
        np.ones((50, 50)) @ np.ones((50, 50))
    assert counts() == outside


def test_numba_threads_are_restored_after_the_block_whatever_it_raised():
    import numba

    before = numba.get_num_threads()
    with numba_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with pytest.raises(KeyError), numba_threads(1):
        raise KeyError("the call failed")
    assert numba.get_num_threads() == before
    too_many = numba.config.NUMBA_NUM_THREADS + 1
    fix = f"set the environment variable NUMBA_NUM_THREADS={too_many}"
    with pytest.raises(ValueError, match=fix), numba_threads(too_many):
        pass
    assert numba.get_num_threads() == before


def test_torch_threads_are_restored_after_the_block_whatever_it_raised():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(KeyError), torch_threads(1):
            assert torch.get_num_threads() == 1
            raise KeyError("the call failed")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
