"""Atomic writes: nothing half-written, and the permissions of any other new file."""

import os

import pytest

from scembed.runtime import atomic_path, write_json


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_umasks_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json({"a": 1}, tmp_path / "out.json")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    expected = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert expected == 0o666 & ~umask
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == expected


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "table.tsv"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        with open(tmp, "w") as handle:
            handle.write("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_json_takes_the_numpy_values_anndata_reads_back(tmp_path):
    """A list in ``uns`` (e.g. the synthetic source's type_sizes) comes back as an array."""
    import json

    import numpy as np

    write_json({"sizes": np.array([3, 2]), "n": np.int64(5)}, tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text()) == {"n": 5, "sizes": [3, 2]}
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        write_json({"bad": {1}}, tmp_path / "q.json")
    assert not (tmp_path / "q.json").exists()


def test_a_write_removes_what_a_killed_write_left(tmp_path):
    """SIGKILL cannot be caught: its hidden temporary stays until the next write of the
    same file removes it; another file's temporaries are left alone."""
    target = tmp_path / "metrics.json"
    left = tmp_path / ".metrics.json.abc123.json"
    other = tmp_path / ".clusters.tsv.def456.tsv"
    left.write_text("half")
    other.write_text("another job's")
    write_json({"ari": 0.5}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, target.name]


def test_a_job_stopped_by_sigterm_removes_its_half_written_file(tmp_path):
    """A real process that set up its log like every rule script, killed with SIGTERM in
    the middle of an atomic write: the temporary is gone and the log says what to do."""
    import signal
    import subprocess
    import sys
    import time

    script = f"""
import sys, time
from scembed.runtime import atomic_path, setup_logging
setup_logging({str(tmp_path / "job.log")!r})
with atomic_path({str(tmp_path / "out.h5ad")!r}) as tmp:
    open(tmp, "w").write("half")
    open({str(tmp_path / "started")!r}, "w").close()
    time.sleep(60)
"""
    process = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.log", "started"]
    assert "stopped by SIGTERM; nothing partial is kept" in (tmp_path / "job.log").read_text()
