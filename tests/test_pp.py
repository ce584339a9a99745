"""scembed's API: the package's lazy import, and scembed.pp.book against the workflow's
preprocess job on the same counts."""

from __future__ import annotations

import logging
import subprocess
import sys
from importlib.metadata import version
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import rule_script, schema_defaults

import scembed
from scembed.runtime import write_h5ad

SMALL = {"n_top_genes": 300, "min_genes": 50}


@pytest.fixture(scope="module")
def pbmc():
    return scembed.datasets.pbmc68k()


def test_import_is_lazy_and_torch_free():
    code = (
        "import sys, scembed\n"
        "assert not {'scembed.pp', 'scembed.tl', 'scembed.datasets', 'scanpy'} & set(sys.modules)\n"
        "scembed.pp; scembed.datasets; scembed.tl\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert {'datasets', 'pp', 'tl', '__version__'} <= set(dir(scembed))\n"
        "print(scembed.__version__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == version("scembed")
    with pytest.raises(AttributeError, match="no attribute 'plot'"):
        scembed.plot  # noqa: B018


def test_book_is_the_workflow_preprocess_job(pbmc, tmp_path, monkeypatch):
    """pp.book on the imported counts == the preprocess job on raw.h5ad of the same."""
    before = pbmc.copy()
    pre = scembed.pp.book(pbmc, **SMALL)

    raw = tmp_path / "raw.h5ad"
    write_h5ad(pbmc, raw)
    script = rule_script("preprocess")
    monkeypatch.setattr(script, "setup_logging", lambda path: logging.getLogger("test_api"))
    out = tmp_path / "preprocessed.h5ad"
    script.main(
        SimpleNamespace(
            input=[str(raw)],
            output=[str(out)],
            log=[str(tmp_path / "preprocess.log")],
            params=SimpleNamespace(preprocess={**schema_defaults("preprocess"), **SMALL}),
        )
    )
    job = ad.read_h5ad(out)
    assert pre.shape == job.shape and pre.n_vars == 300
    assert list(pre.var_names) == list(job.var_names)
    np.testing.assert_array_equal(pre.X.toarray(), job.X.toarray())
    np.testing.assert_array_equal(pre.layers["counts"].toarray(), job.layers["counts"].toarray())
    pd.testing.assert_frame_equal(pre.obs, job.obs)
    assert pre.uns["preprocess"] == job.uns["preprocess"]
    assert pre.uns["label_key"] == "bulk_labels"
    assert pre.obs["split"].value_counts().to_dict() == {"train": 595, "validation": 70, "test": 35}
    # the user's AnnData is untouched
    np.testing.assert_array_equal(pbmc.X.toarray(), before.X.toarray())
    pd.testing.assert_frame_equal(pbmc.obs, before.obs)
    assert pbmc.n_vars == 765 and "split" not in pbmc.obs


def test_book_reads_a_layer_and_keeps_the_batch(pbmc):
    mine = ad.AnnData(
        X=sp.csr_matrix(np.log1p(pbmc.X.toarray()), dtype=np.float32),
        obs=pbmc.obs[["bulk_labels", "phase"]].copy(),
        var=pd.DataFrame(index=pbmc.var_names),
    )
    mine.layers["umi"] = pbmc.X.copy()
    with pytest.raises(ValueError, match=r"is not an integer\. .*are in layers\['umi'\]: pass"):
        scembed.pp.book(mine, "bulk_labels", **SMALL)
    pre = scembed.pp.book(mine, "bulk_labels", layer="umi", batch_key="phase", **SMALL)
    reference = scembed.pp.book(pbmc, **SMALL)
    counts = reference.layers["counts"].toarray()
    np.testing.assert_array_equal(pre.layers["counts"].toarray(), counts)
    assert pre.uns["batch_key"] == "phase"
    assert sorted(pre.obs["phase"].cat.categories) == ["G1", "G2M", "S"]


def test_book_refuses_a_missing_label_column(pbmc):
    with pytest.raises(ValueError, match=r"there is no label column 'cell_type'; the columns are"):
        scembed.pp.book(pbmc, "cell_type", **SMALL)
    bare = ad.AnnData(X=pbmc.X.copy(), obs=pbmc.obs.copy())
    with pytest.raises(ValueError, match=r"pass label_key=.*'bulk_labels' \(10 values\)"):
        scembed.pp.book(bare, **SMALL)


def test_book_refuses_non_integer_counts(pbmc):
    X = pbmc.X.toarray().astype(np.float64)
    X[2, 5] = 0.5
    bad = ad.AnnData(X=X, obs=pbmc.obs.copy())
    message = r"non-negative integers, but the value 0.5 at cell 2, gene 5 is not an integer"
    with pytest.raises(ValueError, match=message):
        scembed.pp.book(bad, "bulk_labels", **SMALL)


def test_book_checks_its_parameters_as_the_config(pbmc):
    with pytest.raises(ValueError, match=r"unknown preprocess parameter\(s\) \['n_genes'\]"):
        scembed.pp.book(pbmc, n_genes=300)
    with pytest.raises(ValueError, match=r"n_top_genes: 'many' is not of type 'integer'"):
        scembed.pp.book(pbmc, n_top_genes="many")
    with pytest.raises(ValueError, match="only 765 genes"):
        scembed.pp.book(pbmc, n_top_genes=1000)  # the schema's default, too many here


def test_book_says_the_fix_as_its_keywords(pbmc):
    """The preprocessing's errors name config keys for the workflow; from a notebook the
    fix is a keyword of pp.book, and following it works."""
    with pytest.raises(ValueError, match=r"only 765 genes\. Pass n_top_genes=765\.$"):
        scembed.pp.book(pbmc)  # the schema's 1000 genes
    with pytest.raises(ValueError, match=r"Lower `min_genes` .*\(keywords of scembed\.pp\.book\)"):
        scembed.pp.book(pbmc, n_top_genes=765, min_genes=700)
    assert scembed.pp.book(pbmc, n_top_genes=765, min_genes=50).n_vars == 765


def test_book_reads_raw_counts_from_adata_raw(pbmc):
    """layer="raw" reads adata.raw.X with adata.raw's genes, as the config's
    ``counts_layer: raw``; logged X with the counts in .raw says so."""
    logged = ad.AnnData(
        X=sp.csr_matrix(np.log1p(pbmc.X.toarray()), dtype=np.float32),
        obs=pbmc.obs.copy(),
        var=pd.DataFrame(index=pbmc.var_names),
        uns={"label_key": "bulk_labels"},
    )
    logged.raw = pbmc
    with pytest.raises(ValueError, match=r"are in \.raw\.X: pass layer='raw'\.$"):
        scembed.pp.book(logged, **SMALL)
    pre = scembed.pp.book(logged, layer="raw", **SMALL)
    reference = scembed.pp.book(pbmc, **SMALL)
    counts = reference.layers["counts"].toarray()
    np.testing.assert_array_equal(pre.layers["counts"].toarray(), counts)
    assert list(pre.var_names) == list(reference.var_names)


def test_book_frees_its_copy_of_the_counts_once_the_genes_are_chosen(pbmc, monkeypatch):
    """pp.book keeps no reference to the counts it hands to preprocess(), which frees them
    after choosing the genes: on atlas data the full matrix is not held twice."""
    import weakref

    import scembed.preprocess as preprocess

    choose, batch_key_of = preprocess.select_genes, preprocess.batch_key_of
    handed, alive = [], []

    def select_genes(adata, *args):
        handed.append(weakref.ref(adata))
        return choose(adata, *args)

    def after_the_genes(adata):  # runs after preprocess() has dropped its reference
        alive.append(handed[0]() is not None)
        return batch_key_of(adata)

    monkeypatch.setattr(preprocess, "select_genes", select_genes)
    monkeypatch.setattr(preprocess, "batch_key_of", after_the_genes)
    scembed.pp.book(pbmc, **SMALL)
    assert alive == [False]
