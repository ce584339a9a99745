"""The embedding file (scembed.embedding): labels, split and, when the dataset has one,
the batch column and its key, from the import through preprocessing to the file every
method writes."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from conftest import schema_defaults

from scembed.batches import batch_key_of
from scembed.embedding import EMBEDDING_KEY, embedding_anndata
from scembed.preprocess import preprocess
from scembed.runtime import read_h5ad_parts, write_h5ad
from scembed.sources import load_dataset

PREPROCESS = {**schema_defaults("preprocess"), "n_top_genes": 60, "min_genes": 5}
SYNTHETIC = {"source": "synthetic", "label_key": "cell_type", "n_cells": 300, "n_genes": 80}


def through_the_workflow(tmp_path, spec: dict) -> tuple[ad.AnnData, ad.AnnData]:
    """(preprocessed, embedding) of ``spec``, each written and read back as the rules do."""
    write_h5ad(load_dataset(spec, {}), tmp_path / "raw.h5ad")
    write_h5ad(preprocess(ad.read_h5ad(tmp_path / "raw.h5ad"), **PREPROCESS), tmp_path / "pre.h5ad")
    pre = read_h5ad_parts(tmp_path / "pre.h5ad")
    latent = np.random.default_rng(0).normal(size=(pre.n_obs, 4))
    write_h5ad(embedding_anndata(pre, latent, {"method": "pca"}), tmp_path / "embedding.h5ad")
    return pre, ad.read_h5ad(tmp_path / "embedding.h5ad")


def test_the_batch_goes_from_the_import_into_the_embedding_file(tmp_path):
    pre, embedding = through_the_workflow(
        tmp_path, {**SYNTHETIC, "n_types": 3, "n_batches": 2, "batch_key": "batch"}
    )
    assert batch_key_of(pre) == "batch" and batch_key_of(embedding) == "batch"
    assert list(embedding.obs.columns) == ["cell_type", "split", "batch"]
    assert list(embedding.obs_names) == list(pre.obs_names)
    assert list(embedding.obs["batch"]) == list(pre.obs["batch"])
    assert list(embedding.obs["batch"].cat.categories) == ["batch0", "batch1"]
    assert embedding.obsm[EMBEDDING_KEY].shape == (pre.n_obs, 4)


@pytest.mark.parametrize("n_batches", [1, 3])
def test_without_a_batch_key_the_embedding_file_is_as_before(tmp_path, n_batches):
    """No batch_key: no batch column nor key in the embedding, even where the data has
    simulated batches (they stay in raw.h5ad and preprocessed.h5ad)."""
    pre, embedding = through_the_workflow(
        tmp_path, {**SYNTHETIC, "n_types": 3, "n_batches": n_batches}
    )
    assert ("batch" in pre.obs) == (n_batches > 1)
    assert batch_key_of(pre) is None and "batch_key" not in embedding.uns
    assert list(embedding.obs.columns) == ["cell_type", "split"]
    assert set(embedding.uns) == {"label_key", "n_genes", "embedding"}


def test_a_single_batch_leaves_the_embedding_file_as_before(tmp_path):
    pre, embedding = through_the_workflow(
        tmp_path, {**SYNTHETIC, "n_types": 3, "n_batches": 1, "batch_key": "batch"}
    )
    assert "batch_key" not in pre.uns and "batch_key" not in embedding.uns
    assert list(embedding.obs.columns) == ["cell_type", "split"]
