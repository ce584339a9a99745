"""Evaluation of an embedding (scembed.evaluate): every cell is clustered, and only the
labelled cells are scored, each score that of the labelled cells alone."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import schema_defaults
from sklearn import metrics as skm

from scembed.checks import normalise_labels
from scembed.embedding import EMBEDDING_KEY
from scembed.evaluate import evaluate, evaluate_embedding
from scembed.leiden import LeidenGraph


def partly_labelled(n: int = 300, n_missing: int = 30, seed: int = 0) -> ad.AnnData:
    """An embedding of three blobs; ``n_missing`` cells have no label (NaN)."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(["a", "b", "c"], n // 3)
    centres = {"a": (0, 0, 0), "b": (5, 0, 0), "c": (0, 5, 0)}
    X = np.array([centres[t] for t in truth]) + rng.normal(scale=1.2, size=(n, 3))
    labels = pd.Series(truth, dtype=object)
    labels[rng.choice(n, n_missing, replace=False)] = np.nan
    split = np.where(rng.random(n) < 0.2, "test", "train")
    obs = pd.DataFrame(
        {"cell_type": normalise_labels(labels), "split": split},
        index=[f"c{i}" for i in range(n)],
    )
    adata = ad.AnnData(obs=obs, obsm={EMBEDDING_KEY: X.astype(np.float32)})
    adata.uns["label_key"] = "cell_type"
    return adata


CLUSTER = {
    **schema_defaults("cluster"),
    **{"n_neighbors": 10, "knn_k": 5, "kmeans_n_init": 4, "bisection_max_steps": 20},
}


def test_unlabelled_cells_are_clustered_but_not_scored():
    adata = partly_labelled()
    scores = evaluate_embedding(adata, seed=0, **CLUSTER)
    scored = adata.obs["cell_type"].notna().to_numpy()
    assert scores["n_scored"] == 270 and scores["n_labels"] == 3
    # every cell got a cluster ...
    for key in ("leiden", "leiden_matched", "kmeans"):
        assert adata.obs[key].notna().all(), key
    # ... and each score is the one computed on the labelled cells alone
    labels = adata.obs["cell_type"].astype(str).to_numpy()[scored]
    X = adata.obsm[EMBEDDING_KEY][scored]
    for prefix, key in (("", "leiden"), ("matched_", "leiden_matched"), ("kmeans_", "kmeans")):
        clusters = adata.obs[key].astype(str).to_numpy()[scored]
        assert scores[f"{prefix}ari"] == pytest.approx(skm.adjusted_rand_score(labels, clusters))
        assert scores[f"{prefix}nmi"] == pytest.approx(
            skm.normalized_mutual_info_score(labels, clusters)
        )
    assert scores["silhouette"] == pytest.approx(skm.silhouette_score(X, labels))
    split = adata.obs["split"].to_numpy()[scored]
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=5).fit(X[split == "train"], labels[split == "train"])
    expected = (knn.predict(X[split == "test"]) == labels[split == "test"]).mean()
    assert scores["knn_accuracy"] == pytest.approx(expected)
    assert scores["matched_n_clusters"] == 3


def test_the_same_scores_as_the_labelled_cells_alone_when_clustered_alike():
    """k-means on the same embedding: with and without the unlabelled cells, the score of
    the labelled cells is that of their own clustering (unlabelled never a class)."""
    adata = partly_labelled(n_missing=0)
    full = evaluate_embedding(adata.copy(), seed=0, **CLUSTER)
    assert full["n_scored"] == 300 and full["n_labels"] == 3
    half = partly_labelled(n_missing=150)
    scores = evaluate_embedding(half, seed=0, **CLUSTER)
    assert scores["n_labels"] == 3 and scores["n_scored"] == 150
    assert scores["kmeans_ari"] > 0.8  # blobs: the labelled half is still well recovered


def test_the_job_converts_its_graph_once_and_returns_its_notes(monkeypatch):
    """The Leiden run and the bisection share one igraph graph; the settings it ran and
    why the UMAP or the bisection stopped short come back to the caller (for the log),
    not through the AnnData, and the scores are evaluate_embedding's."""
    built = []
    original = LeidenGraph.__init__
    monkeypatch.setattr(
        LeidenGraph, "__init__", lambda self, *a, **k: built.append(1) or original(self, *a, **k)
    )
    short = {**CLUSTER, "umap_max_cells": 100, "bisection_max_seconds": 1e-9}
    evaluation = evaluate(partly_labelled(), seed=0, **short)
    assert len(built) == 1
    assert evaluation.leiden_settings == {  # leiden_flavor auto on few cells: leidenalg
        "flavor": "leidenalg",
        "n_iterations": CLUSTER["leiden_n_iterations"],
        "directed": CLUSTER["leiden_directed"],
    }
    assert "seeded sample of 100 of 300 cells" in evaluation.umap_note
    assert evaluation.scores["n_clusters"] != 3  # Leiden at 1.0 does not match: time out
    assert evaluation.bisection_note == (
        "matched-k bisection stopped after 1 Leiden runs (bisection_max_seconds: 1e-09)"
    )
    adata = partly_labelled()
    assert evaluate_embedding(adata, seed=0, **short) == evaluation.scores
    assert not {"leiden_settings", "umap_note", "bisection_note"} & set(adata.uns)
    whole = evaluate(partly_labelled(), seed=0, **CLUSTER)
    assert whole.umap_note is None and whole.bisection_note is None
