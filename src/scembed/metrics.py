"""How well an embedding and its clusterings recover the known labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn import metrics
from sklearn.cluster import KMeans
from sklearn.neighbors import KNeighborsClassifier

SILHOUETTE_MAX_CELLS = 10_000  # silhouette is O(n^2): score a seeded sample beyond this


@dataclass(frozen=True)
class Metric:
    """A score of one run: its column in metrics.tsv, whether comparison.tsv and the
    figures carry it (all do), and its column in the headline table (``headline``: the
    header, None for no column; ``{resolution}`` is filled in)."""

    name: str
    headline: str | None = None
    count: bool = False  # shown as a mean without its spread


METRICS = (
    Metric("ari", "ARI (Leiden, res. {resolution})"),
    Metric("n_clusters", "clusters", count=True),
    Metric("matched_ari", "matched-k ARI"),
    Metric("kmeans_ari", "k-means ARI"),
    Metric("nmi", "NMI"),
    Metric("knn_accuracy", "kNN accuracy"),
    Metric("ami"),
    Metric("matched_nmi"),
    Metric("kmeans_nmi"),
    Metric("silhouette"),
)
"""Every score, in the order of metrics.tsv, comparison.tsv, the figures and the headline:
the one place to add a metric (and compute it in ``scembed.evaluate``)."""
METRIC_NAMES = tuple(metric.name for metric in METRICS)
RUN_COLUMNS = ("dataset", "method", "seed", "n_cells", "n_genes", "n_labels", "n_scored")
"""The columns of metrics.tsv before the metrics: what ran, on how many cells."""


def cluster_scores(labels, clusters) -> dict:
    """ARI, NMI and AMI of ``clusters`` against ``labels``, and the number of clusters."""
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    return {
        "ari": float(metrics.adjusted_rand_score(labels, clusters)),
        "nmi": float(metrics.normalized_mutual_info_score(labels, clusters)),
        "ami": float(metrics.adjusted_mutual_info_score(labels, clusters)),
        "n_clusters": int(len(np.unique(clusters))),
    }


def kmeans_clusters(embedding: np.ndarray, k: int, seed: int, n_init: int = 10) -> np.ndarray:
    """k-means labels with k clusters (as published benchmarks on Zeisel do), seeded."""
    model = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    return model.fit_predict(np.asarray(embedding, dtype=np.float64))


def label_silhouette(embedding: np.ndarray, labels, seed: int) -> float:
    """Mean silhouette of the labels in the embedding (-1..1; higher: types separate)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    n = len(labels)
    sample = SILHOUETTE_MAX_CELLS if n > SILHOUETTE_MAX_CELLS else None
    return float(metrics.silhouette_score(embedding, labels, sample_size=sample, random_state=seed))


def knn_transfer_accuracy(
    embedding: np.ndarray, labels, split, k: int = 15, n_jobs: int | None = None
) -> float:
    """Accuracy of labels transferred from training cells to test cells by kNN vote.

    The search is exact; ``n_jobs`` threads share the test cells (the same neighbours
    and the same score at any number)."""
    labels, split = np.asarray(labels), np.asarray(split)
    train, test = split == "train", split == "test"
    if not test.any() or not train.any():
        return float("nan")
    model = KNeighborsClassifier(n_neighbors=min(k, int(train.sum())), n_jobs=n_jobs)
    model.fit(embedding[train], labels[train])
    return float((model.predict(embedding[test]) == labels[test]).mean())
