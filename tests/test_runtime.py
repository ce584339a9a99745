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
