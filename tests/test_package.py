"""The distribution `scembed` as pip installs it from the clone (a wheel, not the editable
install of make venv): its files, its schema, and the API working from it."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO

USE_THE_WHEEL = """
import sys, scembed
from scembed.schema import SCHEMA_PATH
assert scembed.__file__.startswith(sys.argv[1]), scembed.__file__
assert SCHEMA_PATH.is_file() and str(SCHEMA_PATH).startswith(sys.argv[1]), SCHEMA_PATH
assert "torch" not in sys.modules
pre = scembed.pp.book(scembed.datasets.pbmc68k(), n_top_genes=765, min_genes=50)
scembed.tl.pca(pre, seed=0)
scores = scembed.tl.evaluate(pre, "X_pca", seed=0)
assert "torch" not in sys.modules
print(scembed.__version__, scores["ari"], scores["n_clusters"])
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "-w", str(folder), str(REPO)], check=True, capture_output=True)
    (path,) = folder.glob("scembed-*.whl")
    return path


def test_the_wheel_holds_the_library_and_its_schema(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("__init__", "pp", "datasets", "tl/__init__", "vae/train", "sources/zeisel"):
        assert f"scembed/{module}.py" in names
    assert "scembed/schemas/config.schema.yaml" in names
    assert not any(name.startswith(("workflow/", "tests/", "tools/")) for name in names)
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Name: scembed" in text
    for requirement in ("scanpy", "torch", "anndata", "leidenalg", "platformdirs"):
        assert f"Requires-Dist: {requirement}" in text


@pytest.mark.installed
def test_the_api_works_from_the_installed_wheel(wheel, tmp_path):
    """Installed apart from the clone, the package finds its schema in itself and runs the
    preprocessing, PCA and the scores on the offline data without importing torch."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", USE_THE_WHEEL, str(site)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    version, ari, n_clusters = result.stdout.split()[-3:]
    assert version == importlib.metadata.version("scembed")
    assert 0 < float(ari) <= 1 and int(n_clusters) > 1
