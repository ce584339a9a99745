"""kNN graph, UMAP and Leiden on an embedding, with every random step seeded (the
Leiden runs and the matched-k bisection: :mod:`scembed.leiden`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp
from pynndescent import PyNNDescentTransformer

from scembed.embedding import EMBEDDING_KEY, check_embedding
from scembed.leiden import LeidenGraph
from scembed.resources import LARGE_DATA_CELLS
from scembed.runtime import timed

log = logging.getLogger("scembed")

# knn_search "auto": exact below this many cells. Brute force grows as n^2 but has no
# compile cost; NN-descent compiles numba code (nn_descent, not cacheable) for about 30 s
# in every job, so exact is faster up to about 10^5 cells (tools/bench_knn.py).
EXACT_MAX_CELLS = LARGE_DATA_CELLS
KNN_SEARCHES = ("auto", "exact", "approximate")

LEIDEN_FLAVORS = ("auto", "leidenalg", "igraph")
# leiden_flavor "auto": igraph from this many cells, where the graph is approximate
# (knn_search auto) and one leidenalg run to convergence takes over 20 minutes at 10^6
# cells (docs/scaling.md); leidenalg, the book's setting, below it
IGRAPH_FROM_CELLS = EXACT_MAX_CELLS
SCANPY_IGRAPH = {"flavor": "igraph", "n_iterations": 2, "directed": False}
"""igraph's Leiden as scanpy announces it for its default: 2 iterations, undirected."""


class SeededNNDescent(PyNNDescentTransformer):
    """pynndescent's kNN transformer returning a ``scipy.sparse.csr_matrix``.

    pynndescent 0.6+ returns a sparse *array*, which scanpy 1.11 reads with a method
    that scipy 1.17 removed from sparse arrays (``getnnz``): every graph of 8192 cells
    or more then failed. The matrix class keeps that method on every scipy version.
    """

    def transform(self, X, y=None):
        return sp.csr_matrix(super().transform(X, y))


def knn_transformer(n_obs: int, n_neighbors: int, seed: int, search: str = "auto"):
    """The neighbour search of the kNN graph, chosen here rather than inside scanpy.

    ``exact``: brute-force Euclidean neighbours (scikit-learn), deterministic;
    ``approximate``: NN-descent (pynndescent) seeded with ``seed``, with the trees and
    iterations that UMAP and scanpy use for ``n_obs`` cells; ``auto``: exact below
    ``EXACT_MAX_CELLS`` cells, approximate from there on (scanpy switches at 8192 cells;
    below that both give the same graph).
    """
    if search not in KNN_SEARCHES:
        raise ValueError(f"knn_search {search!r} is not one of {KNN_SEARCHES}")
    if search == "exact" or (search == "auto" and n_obs < EXACT_MAX_CELLS):
        return "sklearn"
    return SeededNNDescent(
        n_neighbors=n_neighbors,
        metric="euclidean",
        n_trees=min(64, 5 + round(n_obs**0.5 / 20.0)),
        n_iters=max(5, round(np.log2(n_obs))),
        random_state=seed,
        n_jobs=None,
    )


def neighbors_graph(
    adata: ad.AnnData,
    n_neighbors: int,
    seed: int,
    search: str = "auto",
    use_rep: str = EMBEDDING_KEY,
) -> None:
    """kNN graph (UMAP connectivities, scanpy's default) on ``obsm[use_rep]``, in place."""
    if n_neighbors >= adata.n_obs:
        raise ValueError(
            f"n_neighbors is {n_neighbors} but there are only {adata.n_obs} cells; "
            f"set `cluster: {{n_neighbors: {max(2, adata.n_obs // 2)}}}` or use more cells."
        )
    transformer = knn_transformer(adata.n_obs, n_neighbors, seed, search)
    sc.pp.neighbors(
        adata, n_neighbors=n_neighbors, use_rep=use_rep, transformer=transformer, random_state=seed
    )


def leiden_settings(n_obs: int, flavor: str, n_iterations: int, directed: bool) -> dict:
    """The Leiden ``flavor``, ``n_iterations`` and ``directed`` a job of ``n_obs`` cells
    runs: as configured, except for ``flavor`` "auto": leidenalg with the configured
    iterations and directedness below :data:`IGRAPH_FROM_CELLS` cells (the book's
    setting by default), :data:`SCANPY_IGRAPH` from there."""
    if flavor not in LEIDEN_FLAVORS:
        raise ValueError(f"leiden_flavor {flavor!r} is not one of {LEIDEN_FLAVORS}")
    if flavor == "auto":
        if n_obs >= IGRAPH_FROM_CELLS:
            return dict(SCANPY_IGRAPH)
        flavor = "leidenalg"
    return {"flavor": flavor, "n_iterations": n_iterations, "directed": directed}


def describe_leiden(settings: dict) -> str:
    """e.g. "igraph, 2 iterations, undirected graph" (for logs)."""
    iterations = settings["n_iterations"]
    runs = "to convergence" if iterations < 0 else f"{iterations} iterations"
    graph = (
        "directed" if settings["directed"] and settings["flavor"] == "leidenalg" else "undirected"
    )
    return f"{settings['flavor']}, {runs}, {graph} graph"


def umap(adata: ad.AnnData, seed: int, min_dist: float = 0.5, n_epochs: int = 200) -> np.ndarray:
    """2-D UMAP of the kNN graph (seeded, hence single-threaded and reproducible), laid
    out in ``n_epochs`` epochs (scanpy's default is 500 up to 10,000 cells, 200 above).

    umap-learn sets the weak edges of the graph it is given to zero, in place (those
    below the strongest / n_epochs): it gets a copy, so that the clustering that follows
    (the matched-k bisection) runs on the kNN graph itself whether or not a UMAP is
    drawn, and whatever its number of epochs.
    """
    graph = adata.obsp["connectivities"]
    adata.obsp["connectivities"] = graph.copy()
    try:
        sc.tl.umap(adata, random_state=seed, min_dist=min_dist, maxiter=n_epochs)
    finally:
        adata.obsp["connectivities"] = graph
    return adata.obsm["X_umap"]


def umap_cells(n_obs: int, max_cells: int, seed: int) -> np.ndarray:
    """Sorted indices of the cells drawn in the UMAP: all up to ``max_cells``, a seeded
    random sample of ``max_cells`` above it, none when ``max_cells`` is 0."""
    if n_obs <= max_cells:
        return np.arange(n_obs)
    return np.sort(np.random.default_rng(seed).choice(n_obs, size=max_cells, replace=False))


def umap_of_sample(
    adata: ad.AnnData,
    seed: int,
    min_dist: float,
    max_cells: int,
    n_neighbors: int,
    knn_search: str,
    n_epochs: int,
) -> str | None:
    """``obsm["X_umap"]`` of every cell, NaN for the cells left out above ``max_cells``.

    Up to ``max_cells`` cells, the UMAP of the whole kNN graph; above, the UMAP of a
    seeded sample's own kNN graph (UMAP's optimisation grows with the cells while it
    only serves the figures); with ``max_cells`` 0, no UMAP. Returns why cells were
    left out (for the log), or None when every cell is drawn.
    """
    cells = umap_cells(adata.n_obs, max_cells, seed)
    if len(cells) == adata.n_obs:
        umap(adata, seed, min_dist, n_epochs)
        return None
    xy = np.full((adata.n_obs, 2), np.nan, dtype=np.float32)
    if len(cells) >= 3:
        sample = ad.AnnData(obs=adata.obs.iloc[cells][[]].copy())
        sample.obsm[EMBEDDING_KEY] = adata.obsm[EMBEDDING_KEY][cells]
        neighbors_graph(sample, min(n_neighbors, len(cells) - 1), seed, knn_search)
        xy[cells] = umap(sample, seed, min_dist, n_epochs)
    adata.obsm["X_umap"] = xy
    if max_cells == 0:
        return f"UMAP skipped (umap_max_cells: 0; {adata.n_obs} cells)"
    return (
        f"UMAP of a seeded sample of {len(cells)} of {adata.n_obs} cells "
        f"(umap_max_cells: {max_cells}); the other cells have no UMAP coordinates"
    )


@dataclass
class Clustering:
    """What :func:`cluster_embedding` ran, for the caller."""

    leiden_settings: dict
    """The Leiden ``flavor``, ``n_iterations`` and ``directed`` it ran (:func:`leiden_settings`)."""
    graph: LeidenGraph
    """The kNN graph as igraph, for more Leiden runs on it (the matched-k bisection);
    about 1 GB at 10^6 cells: drop it when they are done."""
    umap_note: str | None = None
    """Why the UMAP left cells out (:func:`umap_of_sample`); None when it drew them all."""


def cluster_embedding(
    adata: ad.AnnData,
    seed: int,
    *,
    n_neighbors: int,
    knn_search: str,
    resolution: float,
    leiden_flavor: str,
    leiden_n_iterations: int,
    leiden_directed: bool,
    umap_min_dist: float,
    umap_max_cells: int,
    umap_n_epochs: int,
) -> Clustering:
    """Graph, Leiden (``obs["leiden"]``) and UMAP (``obsm["X_umap"]``) on ``obsm["X_emb"]``,
    in place; returns the Leiden settings it ran, its graph and the UMAP's note.

    The parameters are the config's ``cluster`` keys (defaults in the schema)."""
    check_embedding(adata.obsm[EMBEDDING_KEY], "cluster")
    settings = leiden_settings(adata.n_obs, leiden_flavor, leiden_n_iterations, leiden_directed)
    with timed(f"kNN graph of {adata.n_obs} cells"):
        neighbors_graph(adata, n_neighbors, seed, knn_search)
    log.info("Leiden: %s (leiden_flavor: %s)", describe_leiden(settings), leiden_flavor)
    with timed(f"Leiden at resolution {resolution:g}"):
        graph = LeidenGraph.of(adata, seed, **settings)
        adata.obs["leiden"] = graph.clusters(resolution)
    with timed("UMAP"):
        note = umap_of_sample(
            adata, seed, umap_min_dist, umap_max_cells, n_neighbors, knn_search, umap_n_epochs
        )
    return Clustering(settings, graph, note)
