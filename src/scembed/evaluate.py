"""Every score of one embedding against the labels, beyond the book's single ARI."""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad

from scembed.cluster import cluster_embedding
from scembed.embedding import EMBEDDING_KEY
from scembed.leiden import leiden_matched
from scembed.metrics import (
    cluster_scores,
    kmeans_clusters,
    knn_transfer_accuracy,
    label_silhouette,
)
from scembed.runtime import timed
from scembed.threads import blas_threads


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` found and ran."""

    scores: dict
    """The scores (a run's metrics.json holds them): see :func:`evaluate_embedding`."""
    leiden_settings: dict
    """The Leiden ``flavor``, ``n_iterations`` and ``directed`` the job ran."""
    umap_note: str | None = None
    """Why the UMAP left cells out; None when it drew them all."""
    bisection_note: str | None = None
    """Why the matched-k bisection stopped early (its time bound); None otherwise."""


def evaluate(
    adata: ad.AnnData,
    seed: int,
    *,
    knn_k: int,
    bisection_max_steps: int,
    bisection_max_seconds: float,
    kmeans_n_init: int,
    threads: int = 1,
    compute_threads: int = 1,
    **cluster_params,
) -> Evaluation:
    """Cluster ``obsm["X_emb"]`` three ways and score the embedding.

    Every cell is embedded and clustered; only the cells with a label (``n_scored`` of
    them) are scored, so an unlabelled cell never counts as a cell type. ``n_labels``
    is the number of distinct labels among them.

    ``threads``: how many threads the exact kNN-transfer search uses (the job's; its
    result is the same on any number). ``compute_threads``: the OpenMP/BLAS threads of
    k-means and the silhouette, whose sums depend on the count (``compute_threads.cluster``).
    ``cluster_params`` go to :func:`cluster_embedding` (graph, Leiden, UMAP). Adds
    ``obs["leiden"]`` (the configured resolution), ``obs["leiden_matched"]`` (resolution
    bisected to as many clusters as labels), ``obs["kmeans"]`` (k = number of labels)
    and ``obsm["X_umap"]`` (NaN for cells outside the UMAP's sample).
    Returns the scores with the Leiden settings it ran and why the UMAP or the bisection
    stopped short.
    """
    label_key = adata.uns["label_key"]
    scored = adata.obs[label_key].notna().to_numpy()
    labels = adata.obs[label_key].astype(str).to_numpy()[scored]
    if not scored.any():
        raise ValueError(f"no cell has a label in obs[{label_key!r}]: nothing to score")
    n_labels = len(set(labels))
    embedding = adata.obsm[EMBEDDING_KEY]
    clustering = cluster_embedding(adata, seed, **cluster_params)
    settings, umap_note = clustering.leiden_settings, clustering.umap_note
    leiden_scores = cluster_scores(labels, adata.obs["leiden"].to_numpy()[scored])

    with timed("matched-k bisection"):
        matched = leiden_matched(
            adata,
            n_labels,
            seed,
            bisection_max_steps,
            bisection_max_seconds,
            # the Leiden run above, on the same graph: the bisection starts at 1.0
            known={float(cluster_params["resolution"]): adata.obs["leiden"]},
            graph=clustering.graph,
        )
    del clustering  # the Leiden runs are done: free the graph before k-means
    bisection_note = None
    if matched["timed_out"]:
        bisection_note = (
            f"matched-k bisection stopped after {matched['steps']} Leiden runs "
            f"(bisection_max_seconds: {bisection_max_seconds:g})"
        )
    matched_scores = cluster_scores(labels, matched["clusters"].to_numpy()[scored])
    with timed("k-means"), blas_threads(compute_threads):
        kmeans = kmeans_clusters(embedding, n_labels, seed, kmeans_n_init)
    adata.obs["kmeans"] = kmeans.astype(str)
    kmeans_scores = cluster_scores(labels, kmeans[scored])
    split = adata.obs["split"].astype(str).to_numpy()[scored]
    with timed("silhouette and kNN transfer"):
        with blas_threads(compute_threads):
            silhouette = label_silhouette(embedding[scored], labels, seed)
        knn_accuracy = knn_transfer_accuracy(
            embedding[scored], labels, split, knn_k, n_jobs=threads
        )
    scores = {
        "n_labels": n_labels,
        "n_scored": int(scored.sum()),
        "leiden_flavor": settings["flavor"],
        **leiden_scores,
        "matched_resolution": float(matched["resolution"]),
        "matched_n_clusters": matched["n_clusters"],
        "matched_exact": bool(matched["exact"]),
        "matched_ari": matched_scores["ari"],
        "matched_nmi": matched_scores["nmi"],
        "kmeans_ari": kmeans_scores["ari"],
        "kmeans_nmi": kmeans_scores["nmi"],
        "silhouette": silhouette,
        "knn_accuracy": knn_accuracy,
    }
    return Evaluation(scores, settings, umap_note, bisection_note)


def evaluate_embedding(adata: ad.AnnData, seed: int, **settings) -> dict:
    """The scores of :func:`evaluate` alone: what a run's metrics.json holds."""
    return evaluate(adata, seed, **settings).scores
