"""scembed.numba_cache: numba kernels compiled once per machine, safely, with the same
results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import pytest
from conftest import REPO

from scembed import numba_cache

KERNELS = textwrap.dedent(
    """
    import numba
    import numpy as np


    @numba.njit
    def sum_of_squares(x):
        total = 0.0
        for value in x:
            total += value * value
        return total


    @numba.njit(parallel=True)
    def row_norms(x):
        out = np.empty(x.shape[0])
        for i in numba.prange(x.shape[0]):
            out[i] = np.sqrt((x[i] ** 2).sum())
        return out
    """
)

JOB = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.path[:0] = [sys.argv[1]]
    from scembed import numba_cache
    folder = numba_cache.enable()  # before the kernels are declared, as the jobs do
    import kernels
    x = np.random.default_rng(0).normal(size=(500, 7))
    values = [kernels.sum_of_squares(x.ravel()), kernels.row_norms(x).tolist()]
    stats = [kernels.sum_of_squares.stats, kernels.row_norms.stats]
    print(json.dumps({
        "folder": str(folder),
        "values": values,
        "hits": sum(sum(s.cache_hits.values()) for s in stats),
        "misses": sum(sum(s.cache_misses.values()) for s in stats),
    }))
    """
)


def start_job(tmp_path, cache: str) -> subprocess.Popen:
    (tmp_path / "kernels.py").write_text(KERNELS)
    env = {**os.environ, numba_cache.ENV: cache}
    command = [sys.executable, "-c", JOB, str(tmp_path)]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(job: subprocess.Popen) -> dict:
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_two_jobs_fill_an_empty_cache_at_once_and_a_third_compiles_nothing(tmp_path):
    """Kernels declared without cache=True are cached once enable() has run. Two jobs
    compiling into the same empty folder at the same time both succeed, leave no
    temporary file and agree; a later job loads every kernel from the folder."""
    cache = tmp_path / "cache"
    jobs = [start_job(tmp_path, str(cache)) for _ in range(2)]  # started together
    first, second = [finish(job) for job in jobs]
    assert first["folder"] == second["folder"] == str(cache)
    assert first["values"] == second["values"]
    assert first["misses"] + second["misses"] > 0  # compiled: the folder was empty
    files = [path for path in cache.rglob("*") if path.is_file()]
    assert any(path.suffix == ".nbi" for path in files) and any(
        path.suffix == ".nbc" for path in files
    )
    assert not [path for path in files if ".tmp." in path.name]
    third = finish(start_job(tmp_path, str(cache)))
    assert third["values"] == first["values"]
    assert third["misses"] == 0 and third["hits"] >= 2


def test_off_or_an_unwritable_folder_leaves_numba_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv(numba_cache.ENV, "off")
    assert numba_cache.cache_dir() is None
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(numba_cache.ENV, str(blocked / "numba"))
    assert numba_cache.cache_dir() is None
    off = finish(start_job(tmp_path, "off"))
    assert off["folder"] == "None" and off["hits"] == 0


def test_the_default_folder_is_the_users_cache_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.delenv(numba_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = numba_cache.cache_dir()
    assert default == numba_cache.default_dir() and default.is_dir()
    assert not default.resolve().is_relative_to(REPO)
    if sys.platform.startswith("linux"):
        assert default == tmp_path / "xdg" / "scembed" / "numba"
    monkeypatch.setenv(numba_cache.ENV, str(tmp_path / "mine"))  # the variable wins
    assert numba_cache.cache_dir() == tmp_path / "mine"


IMPORTS = textwrap.dedent(
    """
    import os, sys
    import numba
    import sklearn  # sets KMP_* variables of its own on import: not scembed's doing
    njit, jit, folder, env = numba.njit, numba.jit, numba.config.CACHE_DIR, dict(os.environ)
    import scembed.cluster, scembed.evaluate, scembed.integration, scembed.leiden, scembed.lisi
    assert "pynndescent" in sys.modules  # its numba kernels were declared
    changed = sorted(k for k in {*env, *os.environ} if env.get(k) != os.environ.get(k))
    assert numba.njit is njit and numba.jit is jit, "numba's decorators were replaced"
    assert numba.config.CACHE_DIR == folder, "numba's cache folder was changed"
    assert not changed, f"os.environ changed: {changed}"
    """
)


def test_importing_scembed_changes_neither_numba_nor_the_environment():
    """Only numba_cache.enable(), which the jobs call, caches numba's kernels: importing
    the clustering, scores or Leiden modules leaves numba and os.environ as they were."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    done = subprocess.run([sys.executable, "-c", IMPORTS], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("decorator", ["njit", "jit"])
def test_enable_makes_cache_the_default_once(decorator, tmp_path, monkeypatch):
    monkeypatch.setenv(numba_cache.ENV, str(tmp_path))
    for name in ("njit", "jit"):  # put numba back as it was after the test
        monkeypatch.setattr(numba, name, getattr(numba, name))
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert numba_cache.enable() == tmp_path
    assert os.environ["NUMBA_CACHE_DIR"] == numba.config.CACHE_DIR == str(tmp_path)
    wrapped = getattr(numba, decorator)
    assert wrapped.scembed_cached
    numba_cache.enable()  # a second call is a no-op
    assert getattr(numba, decorator) is wrapped
