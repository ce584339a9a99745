"""Integration scores (scembed.integration): batch ASW, isolated labels, and one embedding
file's scores (the LISI itself: test_lisi.py)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import silhouette_samples, silhouette_score

from scembed.integration import (
    INTEGRATION_COLUMNS,
    TABLE_COLUMNS,
    batch_asw,
    integration_row,
    integration_scores,
    isolated_label_asw,
    isolated_labels,
    one_vs_rest_silhouettes,
    silhouette_sample,
    with_aggregates,
)

# --------------------------------------------------------------------------- data


def blobs(n_per_group: int, groups: int, spread: float, seed: int = 0, dims: int = 5):
    """Cells in ``groups`` Gaussian blobs ``spread`` apart, and each cell's group."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(groups), n_per_group)
    centres = np.eye(groups, dims) * spread
    return centres[codes] + rng.normal(size=(len(codes), dims)), codes


def embedding_file(x, labels, batches=None, batch_key="batch") -> ad.AnnData:
    """An embedding.h5ad in memory: obsm["X_emb"], labels, and the batch when given."""
    obs = pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(len(x))])
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_emb"] = np.asarray(x, dtype=np.float32)
    adata.uns["label_key"] = "cell_type"
    if batches is not None:
        adata.obs[batch_key] = np.asarray(batches).astype(str)
        adata.uns["batch_key"] = batch_key
    return adata


def mixed_case(seed: int = 0):
    """3 cell types in well-separated blobs; 2 batches drawn at random within each."""
    x, types = blobs(200, 3, spread=30.0, seed=seed)
    batches = np.random.default_rng(seed + 1).integers(0, 2, len(x))
    return x, types, batches


# --------------------------------------------------------------------------- silhouettes


def test_batch_asw_is_sciBs_mean_over_labels():
    x, types, batches = mixed_case()
    expected = np.mean(
        [
            np.mean(1 - np.abs(silhouette_samples(x[types == t], batches[types == t])))
            for t in range(3)
        ]
    )
    assert batch_asw(x, types, batches) == pytest.approx(expected)
    assert batch_asw(x, types, batches) > 0.9  # the batches overlap within each type


def test_batch_asw_skips_labels_in_one_batch():
    x, types, batches = mixed_case()
    batches = np.where(types == 2, 0, batches)  # type 2 in batch 0 only: skipped
    kept = [t for t in (0, 1)]
    expected = np.mean(
        [np.mean(1 - np.abs(silhouette_samples(x[types == t], batches[types == t]))) for t in kept]
    )
    assert batch_asw(x, types, batches) == pytest.approx(expected)
    assert np.isnan(batch_asw(x, types, np.zeros(len(x))))  # one batch: nothing to score


def test_isolated_labels_are_those_in_the_fewest_batches():
    labels = ["A", "A", "B", "C", "C", "D"]
    batches = ["1", "2", "1", "2", "2", "3"]
    assert isolated_labels(labels, batches) == ["B", "C", "D"]  # A is in two batches
    assert isolated_labels(["A", "B", "A", "B"], ["1", "1", "2", "2"]) == ["A", "B"]


def test_one_vs_rest_silhouettes_equal_scikit_learn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    labels = rng.choice(["a", "b", "c"], size=120).astype(object)
    labels[0] = "alone"  # a label of one cell: its silhouette is 0, as scikit-learn says
    x[labels == "b"] += 2.0
    scores = one_vs_rest_silhouettes(x, labels, ["a", "b", "c", "alone"])
    for label, score in scores.items():
        assert score == pytest.approx(silhouette_score(x, labels == label), abs=1e-12)
    assert np.isnan(one_vs_rest_silhouettes(x, labels, ["absent"])["absent"])


def test_isolated_label_asw_scales_and_averages():
    x, types, _ = mixed_case()
    labels = np.array(["t0", "t1", "t2"])[types]
    expected = np.mean([(silhouette_score(x, labels == t) + 1) / 2 for t in ("t0", "t2")])
    assert isolated_label_asw(x, labels, ["t0", "t2"]) == pytest.approx(expected)
    # blobs far apart, but "the rest" spans two of them: well above 0.5, short of 1
    assert isolated_label_asw(x, labels, ["t0", "t2"]) > 0.75


def test_silhouette_sample_is_the_label_silhouettes_sample():
    n = 10_050
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(n, 2)), rng.integers(0, 2, n)
    sample = silhouette_sample(n, seed=4)
    assert len(sample) == 10_000 and len(set(sample)) == 10_000
    full = silhouette_score(x, labels, sample_size=10_000, random_state=4)
    assert silhouette_score(x[sample], labels[sample]) == pytest.approx(full)
    np.testing.assert_array_equal(silhouette_sample(50, seed=4), np.arange(50))


# --------------------------------------------------------------------------- one run


def test_mixed_batches_score_high_on_mixing_and_conservation():
    x, types, batches = mixed_case()
    scores = integration_scores(embedding_file(x, types.astype(str), batches), seed=0)
    assert set(INTEGRATION_COLUMNS) <= set(scores)
    assert scores["n_batches"] == 2
    assert scores["ilisi"] > 0.8  # near 1: each neighbourhood holds both batches
    assert scores["batch_asw"] > 0.9
    assert scores["clisi"] == pytest.approx(1.0, abs=1e-6)  # types far apart
    assert scores["isolated_label_asw"] > 0.75  # see test_isolated_label_asw_scales...
    assert scores["n_isolated_labels"] == 3  # every type in both batches


def test_separate_batches_score_zero_on_mixing():
    x, types = blobs(150, 2, spread=30.0)  # two types
    batches = np.tile(np.repeat([0, 1], 75), 2)  # half of each type in each batch
    x = x + np.where(batches == 1, 100.0, 0.0)[:, None]  # batch 1 far from batch 0
    scores = integration_scores(embedding_file(x, types.astype(str), batches), seed=0)
    assert scores["ilisi"] == pytest.approx(0.0, abs=1e-6)
    assert scores["batch_asw"] < 0.1
    assert scores["clisi"] == pytest.approx(1.0, abs=1e-6)


def test_mixed_labels_score_zero_on_conservation():
    x = np.random.default_rng(0).normal(size=(600, 5))  # one blob
    types = np.random.default_rng(1).integers(0, 3, 600).astype(str)
    batches = np.random.default_rng(2).integers(0, 2, 600)
    scores = integration_scores(embedding_file(x, types, batches), seed=0)
    assert scores["clisi"] < 0.15  # each neighbourhood holds all three types
    assert scores["ilisi"] > 0.8


def test_unlabelled_cells_count_for_the_batch_only():
    x, types, batches = mixed_case()
    labels = types.astype(str).astype(object)
    labels[::10] = None  # a tenth of the cells without a label
    adata = embedding_file(x, labels, batches)
    scores = integration_scores(adata, seed=0)
    labelled = pd.notna(labels)
    alone = integration_scores(
        embedding_file(x[labelled], labels[labelled], batches[labelled]), seed=0
    )
    assert scores["clisi"] == alone["clisi"]  # the labelled cells' own neighbours
    assert scores["batch_asw"] == alone["batch_asw"]
    assert scores["ilisi"] != alone["ilisi"]  # every cell's neighbours


def test_no_batch_gives_empty_scores():
    x, types, _ = mixed_case()
    scores = integration_scores(embedding_file(x, types.astype(str)), seed=0)
    assert scores["n_batches"] == 1
    assert all(np.isnan(scores[name]) for name in INTEGRATION_COLUMNS[1:])


def test_missing_batch_values_are_refused():
    x, types, batches = mixed_case()
    adata = embedding_file(x, types.astype(str), batches)
    adata.obs["batch"] = adata.obs["batch"].astype(object)
    adata.obs.iloc[3, adata.obs.columns.get_loc("batch")] = None
    with pytest.raises(ValueError, match="1 cells have no batch"):
        integration_scores(adata, seed=0)


def test_integration_row_and_aggregates():
    scores = {"n_batches": 2, "ilisi": 0.6, "batch_asw": 0.8, "clisi": 0.9}
    scores |= {"isolated_label_asw": 0.7, "n_isolated_labels": 3}
    row = integration_row("d", "pca", 1, "batch", scores)
    assert list(row.columns) == list(TABLE_COLUMNS) and len(row) == 1
    runs = row.assign(matched_ari=0.5, matched_nmi=0.6, silhouette=0.2)
    runs = with_aggregates(runs)
    assert runs["batch_mixing"].iloc[0] == pytest.approx(0.7)
    assert runs["label_asw"].iloc[0] == pytest.approx(0.6)
    assert runs["bio_conservation"].iloc[0] == pytest.approx((0.5 + 0.6 + 0.6 + 0.9 + 0.7) / 5)
