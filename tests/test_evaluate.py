"""Scores beyond the book: matched-k Leiden, k-means, silhouette, kNN transfer."""

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import metrics as skm

from scembed.cluster import leiden_matched
from scembed.metrics import (
    cluster_scores,
    kmeans_clusters,
    knn_transfer_accuracy,
    label_silhouette,
)


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


def ring_of_cliques(n_cliques: int, size: int) -> ad.AnnData:
    """Cliques joined in a ring by single edges: Leiden can find any count up to n_cliques."""
    n = n_cliques * size
    adjacency = np.zeros((n, n))
    for c in range(n_cliques):
        block = slice(c * size, (c + 1) * size)
        adjacency[block, block] = 1
        a, b = c * size, ((c + 1) % n_cliques) * size + 1
        adjacency[a, b] = adjacency[b, a] = 1
    np.fill_diagonal(adjacency, 0)
    adata = ad.AnnData(X=np.zeros((n, 1)))
    adata.obsp["connectivities"] = sp.csr_matrix(adjacency)
    adata.obsp["distances"] = sp.csr_matrix(adjacency)
    adata.uns["neighbors"] = {
        "connectivities_key": "connectivities",
        "distances_key": "distances",
        "params": {"method": "umap"},
    }
    return adata


@pytest.mark.parametrize("target", [3, 4, 12])
def test_bisection_reaches_the_number_of_clusters(target):
    adata = ring_of_cliques(n_cliques=12, size=8)
    result = leiden_matched(adata, target, seed=0, flavor="leidenalg", directed=False)
    assert result["exact"]
    assert result["n_clusters"] == target
    assert adata.obs["leiden_matched"].nunique() == target
    assert result["steps"] <= 30


def test_bisection_reports_when_it_cannot_match():
    adata = ring_of_cliques(n_cliques=4, size=5)
    result = leiden_matched(adata, 50, seed=0, max_steps=6, flavor="leidenalg", directed=False)
    assert not result["exact"]
    assert result["n_clusters"] < 50
    assert result["steps"] == 6


def test_bisection_stops_at_its_time_bound():
    adata = ring_of_cliques(n_cliques=12, size=8)
    unbounded = leiden_matched(adata, 4, seed=0, flavor="leidenalg", directed=False)
    assert unbounded["exact"] and unbounded["steps"] > 1 and not unbounded["timed_out"]
    bounded = leiden_matched(adata, 4, seed=0, max_seconds=1e-9, flavor="leidenalg", directed=False)
    assert bounded["steps"] == 1  # the first run always happens, no other starts
    assert bounded["timed_out"] and not bounded["exact"]
    assert bounded["n_clusters"] == adata.obs["leiden_matched"].nunique()


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
