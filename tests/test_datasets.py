"""scembed.datasets: the Zeisel download (served from 127.0.0.1, cached) and pbmc68k, each
as the workflow's import reads it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import N_CELLS, N_GENES, closed_port_url, serve, write_zeisel

from scembed import datasets
from scembed.sources import load_dataset

FAST = {"stall_timeout": 2.0, "min_speed": 0, "retries": 0, "retry_delay": 0.01}


@pytest.fixture
def zeisel_file(tmp_path):
    """A small file in the Zeisel layout, its bytes, and the workflow's import of it."""
    data = write_zeisel(tmp_path / "served.txt")
    imported_path = {"download": str(data["path"])}
    imported = load_dataset({"source": "zeisel2015", "label_key": "level1class"}, imported_path)
    return data["path"].read_bytes(), imported


def same_import(adata, imported):
    assert adata.shape == imported.shape == (N_CELLS, N_GENES)
    assert adata.X.dtype == imported.X.dtype
    np.testing.assert_array_equal(adata.X.toarray(), imported.X.toarray())
    pd.testing.assert_frame_equal(adata.obs, imported.obs)
    assert list(adata.var_names) == list(imported.var_names)
    assert adata.uns["label_key"] == "level1class"


def test_zeisel_downloads_once_then_reads_the_cache(tmp_path, zeisel_file, caplog):
    body, imported = zeisel_file
    cache = tmp_path / "cache"
    with serve({"/expression.txt": (body, None)}) as base:
        url = f"{base}/expression.txt"
        # the first mirror refuses the connection: the second serves the file
        adata = datasets.zeisel2015(cache, urls=[closed_port_url(), url], **FAST)
    same_import(adata, imported)
    provenance = adata.uns["provenance"]
    assert provenance["source"] == "zeisel2015" and provenance["url"] == url
    cached = cache / "zeisel2015" / datasets.ZEISEL_FILE
    assert cached.read_bytes() == body
    record = json.loads((cache / "zeisel2015" / "download.json").read_text())
    assert record["sha256"] == provenance["sha256"] and record["bytes"] == len(body)

    # the server is gone: the cached copy is read, and it is the same import
    again = datasets.zeisel2015(cache, urls=[closed_port_url()], **FAST)
    same_import(again, imported)

    # a damaged cached copy is noticed and downloaded again
    cached.write_bytes(body[:-10])
    with serve({"/expression.txt": (body, None)}) as base:
        repaired = datasets.zeisel2015(cache, urls=[f"{base}/expression.txt"], **FAST)
    same_import(repaired, imported)
    assert cached.read_bytes() == body
    assert any("downloading it again" in r.getMessage() for r in caplog.records)


def test_zeisel_cache_dir_from_the_environment(tmp_path, zeisel_file, monkeypatch):
    body, imported = zeisel_file
    monkeypatch.setenv("SCEMBED_CACHE_DIR", str(tmp_path / "env"))
    assert datasets.cache_folder() == tmp_path / "env"
    assert datasets.cache_folder(tmp_path / "arg") == tmp_path / "arg"
    with serve({"/expression.txt": (body, None)}) as base:
        adata = datasets.zeisel2015(urls=[f"{base}/expression.txt"], label_key="level2class")
    assert (tmp_path / "env" / "zeisel2015" / datasets.ZEISEL_FILE).is_file()
    assert adata.uns["label_key"] == "level2class" and adata.obs["level2class"].nunique() == 6


def test_zeisel_checks_what_it_downloads(tmp_path, zeisel_file):
    body, _ = zeisel_file
    routes = {"/expression.txt": (body, None), "/other.txt": (b"not zeisel\n" * 20, None)}
    with serve(routes) as base:
        with pytest.raises(ValueError, match="SHA-256 .* does not match the pinned 0{64}"):
            datasets.zeisel2015(tmp_path, urls=[f"{base}/expression.txt"], sha256="0" * 64, **FAST)
        with pytest.raises(ValueError, match="not the Zeisel 2015 expression file") as err:
            datasets.zeisel2015(tmp_path, urls=[f"{base}/other.txt"], **FAST)
    assert "could not download" in str(err.value)
    assert "From the API: pass urls=['file:///where/you/saved/it']" in str(err.value)
    assert not list((tmp_path / "zeisel2015").iterdir())  # nothing partial is kept
    with pytest.raises(ValueError, match=r"unknown download setting\(s\) \['timeout'\]"):
        datasets.zeisel2015(tmp_path, timeout=3)


def test_zeisel_urls_default_to_the_books_mirrors():
    urls = datasets.source_defaults("zeisel2015")["urls"]
    assert [u.split("/")[2] for u in urls] == [
        "storage.googleapis.com",
        "exampledata.scverse.org",
    ]
    assert all(u.endswith(datasets.ZEISEL_FILE) for u in urls)


def test_pbmc68k_is_the_workflows_import():
    adata = datasets.pbmc68k()
    imported = load_dataset({"source": "pbmc68k", "label_key": "bulk_labels"}, {})
    assert adata.shape == (700, 765)
    np.testing.assert_array_equal(adata.X.toarray(), imported.X.toarray())
    assert np.issubdtype(adata.X.dtype, np.integer) and adata.X.sum() > 0
    pd.testing.assert_frame_equal(adata.obs, imported.obs)
    assert adata.obs["bulk_labels"].nunique() == 10
    phased = datasets.pbmc68k(batch_key="phase")
    assert phased.uns["batch_key"] == "phase" and "batch_key" not in adata.uns
