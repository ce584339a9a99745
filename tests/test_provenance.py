"""What a result was made from (scembed.provenance): package versions, the workflow's
commit, and the record of a whole run that provenance.json holds."""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime, timedelta
from importlib import metadata

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scembed import provenance
from scembed.provenance import PACKAGES, collect, git_commit, package_versions


def test_package_versions_name_python_and_every_package():
    versions = package_versions()
    assert list(versions) == ["python", *PACKAGES]
    assert versions["python"] == platform.python_version()
    assert versions["numpy"] == metadata.version("numpy") == np.__version__
    assert versions["pandas"] == pd.__version__


def test_a_missing_package_has_no_version(monkeypatch):
    monkeypatch.setattr(provenance, "PACKAGES", ("anndata", "no-such-package-scembed"))
    assert package_versions() == {
        "python": platform.python_version(),
        "anndata": ad.__version__,
        "no-such-package-scembed": None,
    }


def git(repo, *args) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.org"]
    return subprocess.run(
        ["git", "-C", str(repo), *identity, *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A git repository of one commit, with a tracked file ``config.yaml``."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    (path / "config.yaml").write_text("seeds: [0]\n")
    git(path, "add", "config.yaml")
    git(path, "commit", "-q", "-m", "first")
    return path


def test_git_commit_is_head_and_clean(repo):
    assert git_commit(str(repo)) == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": False}


def test_an_untracked_file_leaves_the_commit_clean(repo):
    (repo / "results.tsv").write_text("a\tb\n")  # outputs are not the workflow's code
    assert git_commit(str(repo))["dirty"] is False


def test_a_modified_tracked_file_makes_the_commit_dirty(repo):
    head = git(repo, "rev-parse", "HEAD")
    (repo / "config.yaml").write_text("seeds: [0, 1]\n")
    assert git_commit(str(repo)) == {"commit": head, "dirty": True}


def test_outside_a_repository_the_commit_is_unknown(tmp_path):
    assert git_commit(str(tmp_path)) == {"commit": None, "dirty": None}
    assert git_commit(str(tmp_path / "missing")) == {"commit": None, "dirty": None}


def write_raw(path, n_cells: int, n_genes: int, **record) -> None:
    adata = ad.AnnData(np.ones((n_cells, n_genes), np.float32), uns={"provenance": record})
    adata.write_h5ad(path)


def test_collect_records_the_data_devices_and_config(tmp_path):
    write_raw(tmp_path / "a.h5ad", 5, 3, source="synthetic", seed=2)
    write_raw(tmp_path / "b.h5ad", 4, 6, source="zeisel", sha256="ab12", url="http://x/y")
    metrics = pd.DataFrame(
        {
            "dataset": ["a", "a", "a", "b", "b"],
            "method": ["vae", "vae", "pca", "vae", "vae"],
            "seed": [0, 1, 0, 0, 1],
            "device": ["cuda:0", "cpu", "cpu", "cuda:0", "cuda:0"],
        }
    )
    config = {"seeds": [0, 1], "methods": {"vae": {"kind": "vae"}, "pca": {"kind": "pca"}}}
    before = datetime.now(UTC).replace(microsecond=0)
    record = collect(
        config, {"a": tmp_path / "a.h5ad", "b": tmp_path / "b.h5ad"}, metrics, str(tmp_path)
    )
    assert set(record) == {
        "created",
        "workflow",
        "data",
        "packages",
        "platform",
        "devices",
        "config",
    }
    created = datetime.fromisoformat(record["created"])
    assert before <= created <= datetime.now(UTC) + timedelta(seconds=1)
    assert record["data"] == {
        "a": {"n_cells": 5, "n_genes": 3, "source": "synthetic", "seed": 2},
        "b": {
            "n_cells": 4,
            "n_genes": 6,
            "source": "zeisel",
            "sha256": "ab12",
            "url": "http://x/y",
        },
    }
    assert record["devices"] == {"a/pca": ["cpu"], "a/vae": ["cpu", "cuda:0"], "b/vae": ["cuda:0"]}
    assert record["config"] is config
    assert record["workflow"] == {"commit": None, "dirty": None}  # tmp_path is no repository
    assert record["packages"] == package_versions()
    assert record["platform"] == platform.platform()


def test_collect_closes_the_raw_files(tmp_path):
    """The raw files are read backed; a file left open could not be written again."""
    path = tmp_path / "raw.h5ad"
    write_raw(path, 3, 2, source="synthetic")
    metrics = pd.DataFrame({"dataset": ["d"], "method": ["pca"], "device": ["cpu"]})
    collect({}, {"d": path}, metrics, str(tmp_path))
    write_raw(path, 3, 2, source="synthetic", seed=1)
    assert ad.read_h5ad(path).uns["provenance"]["seed"] == 1
