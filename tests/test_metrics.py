"""The label scores (scembed.metrics): ARI and NMI by hand and against scikit-learn,
k-means, silhouette, kNN transfer, and the METRICS registry that reaches every table."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from test_compare import metrics_rows
from test_evaluate import CLUSTER, partly_labelled

from scembed.compare import compare_methods
from scembed.evaluate import evaluate_embedding
from scembed.metrics import (
    cluster_scores,
    kmeans_clusters,
    knn_transfer_accuracy,
    label_silhouette,
)
from scembed.tables import headline_markdown

# --------------------------------------------------------------------------- cluster scores


def test_cluster_scores_match_sklearn_and_hand_computed():
    labels = np.array(["a", "a", "a", "b", "b", "b"])
    clusters = np.array([0, 0, 1, 1, 2, 2])
    scores = cluster_scores(labels, clusters)
    assert scores["ari"] == pytest.approx(skm.adjusted_rand_score(labels, clusters))
    assert scores["nmi"] == pytest.approx(skm.normalized_mutual_info_score(labels, clusters))
    assert scores["ami"] == pytest.approx(skm.adjusted_mutual_info_score(labels, clusters))
    assert scores["n_clusters"] == 3
    # by hand: pairs within a cluster: 1+1+1 = 3, within a label: 3+3 = 6, both: 1+0+1 = 2;
    # 15 pairs, expected index 3*6/15 = 1.2, max index (3+6)/2 = 4.5
    assert scores["ari"] == pytest.approx((2 - 1.2) / (4.5 - 1.2))
    perfect = cluster_scores(labels, ["x", "x", "x", "y", "y", "y"])
    assert perfect["ari"] == perfect["nmi"] == perfect["ami"] == pytest.approx(1.0)


def test_scores_perfect_and_relabelled():
    labels = np.array(["a", "a", "b", "b", "b", "c", "c"])
    same = cluster_scores(labels, labels)
    relabelled = cluster_scores(labels, np.array([2, 2, 0, 0, 0, 1, 1]))
    for scores in (same, relabelled):
        assert scores["ari"] == pytest.approx(1.0)
        assert scores["nmi"] == pytest.approx(1.0)
        assert scores["n_clusters"] == 3


def test_ari_hand_computed():
    # contingency [[2, 1, 0], [0, 1, 2]]: sum C(n_ij, 2) = 2, rows 6, columns 3, C(6, 2) = 15
    # expected 6 * 3 / 15 = 1.2, maximum (6 + 3) / 2 = 4.5 -> ARI = 0.8 / 3.3 = 8 / 33
    scores = cluster_scores([0, 0, 0, 1, 1, 1], ["x", "x", "y", "y", "z", "z"])
    assert scores["ari"] == pytest.approx(8 / 33)
    assert scores["n_clusters"] == 3
    assert 0 < scores["nmi"] < 1


def test_independent_clustering():
    # every cell of each label in both clusters: no mutual information, ARI (0 - 2/3) / (2 - 2/3)
    scores = cluster_scores([0, 0, 1, 1], [0, 1, 0, 1])
    assert scores["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert scores["ari"] == pytest.approx(-0.5)
    assert scores["n_clusters"] == 2


def test_nmi_hand_computed():
    # labels split 4/2, clusters 3/3; contingency [[3, 1], [0, 2]]
    labels = [0, 0, 0, 0, 1, 1]
    clusters = [0, 0, 0, 1, 1, 1]
    p = np.array([[3, 1], [0, 2]]) / 6
    pl, pc = p.sum(1), p.sum(0)
    nz = p > 0
    mi = (p[nz] * np.log(p[nz] / np.outer(pl, pc)[nz])).sum()
    entropy_l, entropy_c = -(pl * np.log(pl)).sum(), -(pc * np.log(pc)).sum()
    scores = cluster_scores(labels, clusters)
    assert scores["nmi"] == pytest.approx(mi / ((entropy_l + entropy_c) / 2))


# --------------------------------------------------------------------------- beyond the book


def blobs(seed=0, n=300):
    rng = np.random.default_rng(seed)
    labels = np.repeat(["a", "b", "c"], n // 3)
    centres = {"a": (0, 0), "b": (6, 0), "c": (0, 6)}
    points = np.array([centres[label] for label in labels]) + rng.normal(size=(n, 2))
    return points, labels


def test_kmeans_is_deterministic_and_recovers_blobs():
    points, labels = blobs()
    first = kmeans_clusters(points, 3, seed=1)
    assert np.array_equal(first, kmeans_clusters(points, 3, seed=1))
    assert skm.adjusted_rand_score(labels, first) > 0.9


def test_silhouette_and_knn_transfer():
    points, labels = blobs()
    silhouette = label_silhouette(points, labels, seed=0)
    assert silhouette == pytest.approx(skm.silhouette_score(points, labels))
    shuffled = np.random.default_rng(0).permutation(labels)
    assert label_silhouette(points, shuffled, seed=0) < 0.05 < silhouette

    split = np.where(np.arange(len(labels)) % 5 == 0, "test", "train")
    assert knn_transfer_accuracy(points, labels, split, k=5) > 0.95
    # hand case: the one test cell sits on the "b" training cells
    tiny = np.array([[0.0], [0.1], [5.0], [5.1], [5.05]])
    tiny_labels = np.array(["a", "a", "b", "b", "a"])
    tiny_split = np.array(["train", "train", "train", "train", "test"])
    assert knn_transfer_accuracy(tiny, tiny_labels, tiny_split, k=2) == 0.0


@pytest.mark.parametrize("dims", [10, 20])  # a KD-tree search, and brute force (> 15)
def test_knn_transfer_is_the_same_on_more_threads(dims):
    """The clustering job of 10^5 cells or more searches with its threads: the same
    neighbours, hence the same score, as on one (overlapping blobs: not all right)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(5, size=3000)
    points = rng.normal(scale=0.6, size=(5, dims))[labels] + rng.normal(size=(3000, dims))
    split = np.where(rng.random(3000) < 0.8, "train", "test")
    one = knn_transfer_accuracy(points, labels, split, k=15)
    assert 0.3 < one < 0.99
    assert knn_transfer_accuracy(points, labels, split, k=15, n_jobs=2) == one


# --------------------------------------------------------------------------- the registry


def test_every_metric_reaches_every_table():
    """METRICS is the one list: evaluation computes each, comparison and headline read it."""
    from scembed.metrics import METRIC_NAMES, METRICS

    adata = partly_labelled(n_missing=0)
    scores = evaluate_embedding(adata, seed=0, **CLUSTER)
    assert set(METRIC_NAMES) <= set(scores)
    table = metrics_rows({"pca": "pca", "vae": "vae"}, [0, 1])
    for name in METRIC_NAMES:
        table[name] = table.get(name, 0.5)
    comparison = compare_methods(table)
    assert set(comparison["metric"]) == set(METRIC_NAMES)
    headline = headline_markdown(table, comparison)
    for metric in METRICS:
        if metric.headline:
            assert metric.headline.format(resolution=0.8) in headline
