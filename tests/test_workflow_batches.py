"""The workflow with batches (issue 26), end to end on simulated batches: the same
counts with and without a `batch_key`, methods with and without the batch, the
integration scores, their figure and the batch-coloured UMAPs."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import snakemake, write_config

pytestmark = pytest.mark.workflow

COUNTS = {  # three batches with their own gene scaling and library shift, every type in each
    "source": "synthetic",
    "n_cells": 600,
    "n_genes": 200,
    "n_types": 4,
    "n_batches": 3,
    "preprocess": {"n_top_genes": 150, "min_genes": 5},
}
VAE = {"kind": "vae", "preset": "improved", "max_epochs": 60, "device": "cpu"}
CONFIG = {
    "datasets": {
        "batched": {**COUNTS, "batch_key": "batch"},
        "plain": COUNTS,  # the same counts, the batch not named
    },
    "methods": {
        "pca": {"kind": "pca"},
        "pca_harmony": {"kind": "pca", "use_batch": True},
        "vae_blind": {**VAE, "use_batch": False},
        "vae": VAE,  # preset improved: use_batch true by default
    },
    "seeds": [0],
    "baseline": "vae_blind",
}
INTEGRATION = ["ilisi", "batch_asw", "clisi", "isolated_label_asw"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("batches")
    configfile = write_config(workdir / "run.yaml", CONFIG)
    result = snakemake(workdir, "--configfile", str(configfile), "--cores", "2", timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    metrics = pd.read_csv(workdir / "results/summary/metrics.tsv", sep="\t")
    return workdir / "results", metrics.set_index(["dataset", "method"])


def test_conditioning_on_the_batch_mixes_the_batches_at_equal_cell_types(finished):
    _, metrics = finished
    batched = metrics.loc["batched"]
    assert (batched["n_batches"] == 3).all() and batched[INTEGRATION].notna().all().all()
    # the VAE given the batch mixes the batches far better than the same VAE blind to it
    assert batched.loc["vae", "ilisi"] > batched.loc["vae_blind", "ilisi"] + 0.2
    assert batched.loc["vae", "batch_asw"] > batched.loc["vae_blind", "batch_asw"]
    # ... and keeps the cell types (simulated markers: both find them)
    for score in ("kmeans_ari", "matched_ari"):
        assert batched.loc["vae", score] > batched.loc["vae_blind", score] - 0.1, score
    # Harmony on the PCA scores mixes the batches better than PCA alone
    assert batched.loc["pca_harmony", "ilisi"] > batched.loc["pca", "ilisi"]


def test_without_the_batch_every_method_computes_what_it_did(finished):
    """use_batch false, or no batch_key at all: the same label scores on the same counts
    (and no integration scores where no batch is named)."""
    _, metrics = finished
    label_scores = ["ari", "matched_ari", "kmeans_ari", "nmi", "silhouette", "knn_accuracy"]
    for method in ("pca", "vae_blind"):
        pd.testing.assert_series_equal(
            metrics.loc[("batched", method), label_scores],
            metrics.loc[("plain", method), label_scores],
            check_names=False,
        )
    assert metrics.loc["plain", INTEGRATION].isna().all().all()
    # the batch-blind embedding is the same whichever way the batch is left out; the
    # methods that use the batch change only where one is named
    assert (
        metrics.loc[("plain", "vae"), label_scores]
        == metrics.loc[("plain", "vae_blind"), label_scores]
    ).all()
    assert (
        metrics.loc[("plain", "pca_harmony"), label_scores]
        == metrics.loc[("plain", "pca"), label_scores]
    ).all()


def test_integration_tables_figures_and_comparison(finished):
    results, _ = finished
    table = pd.read_csv(results / "batched/vae/seed0/integration.tsv", sep="\t")
    assert list(table[INTEGRATION].columns) == INTEGRATION and table["n_batches"].item() == 3
    assert not (results / "plain/vae/seed0/integration.tsv").exists()
    clusters = pd.read_csv(results / "batched/vae/seed0/clusters.tsv", sep="\t")
    assert clusters["batch"].nunique() == 3
    assert "batch" not in pd.read_csv(results / "plain/vae/seed0/clusters.tsv", sep="\t")
    png = b"\x89PNG\r\n\x1a\n"
    assert (results / "summary/batched/integration.png").read_bytes()[:8] == png
    comparison = pd.read_csv(results / "summary/comparison.tsv", sep="\t")
    paired = comparison[(comparison["metric"] == "ilisi") & (comparison["method"] == "vae")]
    assert len(paired) == 1 and paired["diff_mean"].item() > 0.2
    assert "Integration" in (results / "summary/summary.md").read_text()
