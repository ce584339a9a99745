"""Clustering of an embedding (scembed.cluster): the neighbour graph (exact and
approximate search, 8192+ cells), the Leiden settings a job runs, UMAP (a seeded sample
above umap_max_cells), and what it refuses. Leiden itself and its bisection to a number
of clusters: test_leiden.py."""

from __future__ import annotations

import inspect

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import schema_defaults
from sklearn.neighbors import NearestNeighbors

from scembed import cluster as cluster_module
from scembed.cluster import (
    EXACT_MAX_CELLS,
    IGRAPH_FROM_CELLS,
    SCANPY_IGRAPH,
    SeededNNDescent,
    cluster_embedding,
    knn_transformer,
    leiden_settings,
    neighbors_graph,
)
from scembed.embedding import EMBEDDING_KEY
from scembed.leiden import leiden
from scembed.metrics import cluster_scores

GRAPH = {
    key: value
    for key, value in schema_defaults("cluster").items()
    if key in inspect.signature(cluster_embedding).parameters
}


# --------------------------------------------------------------------------- neighbours


def points(n: int, seed: int = 0, dims: int = 8) -> np.ndarray:
    """Four well separated Gaussian groups in ``dims`` dimensions, float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(4, dims))
    return (centres[np.arange(n) % 4] + rng.normal(size=(n, dims))).astype(np.float32)


def graph_adata(X: np.ndarray) -> ad.AnnData:
    return ad.AnnData(
        obs=pd.DataFrame(index=[f"c{i}" for i in range(len(X))]), obsm={EMBEDDING_KEY: X}
    )


def test_auto_search_is_exact_below_10_5_cells_and_approximate_from_there():
    assert knn_transformer(EXACT_MAX_CELLS - 1, 20, 0) == "sklearn"
    assert isinstance(knn_transformer(EXACT_MAX_CELLS, 20, 0), SeededNNDescent)
    assert knn_transformer(10**6, 20, 0, "exact") == "sklearn"
    assert isinstance(knn_transformer(100, 20, 0, "approximate"), SeededNNDescent)
    with pytest.raises(ValueError, match="knn_search 'fast'"):
        knn_transformer(100, 20, 0, "fast")


@pytest.mark.compiled  # pynndescent's nn_descent: about 100 s of compiling, every process
def test_approximate_graph_of_8192_cells_is_built_seeded_and_close_to_exact():
    """Took scanpy's pynndescent path, which crashed (csr_array.getnnz) at 8192 cells."""
    X = points(8192)
    runs = []
    for _ in range(2):
        adata = graph_adata(X)
        neighbors_graph(adata, n_neighbors=10, seed=3, search="approximate")
        runs.append(adata)
    first, second = (run.obsp["distances"] for run in runs)
    assert isinstance(first, sp.spmatrix | sp.sparray)
    assert (first != second).nnz == 0  # same seed, same machine: the same graph
    fast = {"flavor": "igraph", "n_iterations": 2, "directed": False}  # leidenalg: minutes
    leiden_first = leiden(runs[0], 1.0, seed=3, **fast).to_numpy()
    np.testing.assert_array_equal(leiden_first, leiden(runs[1], 1.0, seed=3, **fast).to_numpy())
    # approximate neighbours: nearly all are the exact ones
    exact = NearestNeighbors(n_neighbors=10).fit(X).kneighbors(X, return_distance=False)
    found = first.tolil().rows
    recall = np.mean([len(set(found[i]) & set(exact[i][1:])) / 9 for i in range(0, len(X), 97)])
    assert recall > 0.95


@pytest.mark.compiled  # pynndescent's nn_descent again: in a fresh worker, 30 s of compiling
def test_approximate_search_on_small_data_returns_a_sparse_matrix():
    transformer = knn_transformer(300, 5, 0, "approximate")
    distances = transformer.fit_transform(points(300))
    assert isinstance(distances, sp.csr_matrix)  # the class scanpy 1.11 can read
    assert (distances.getnnz(axis=1) == 6).all()  # the cell itself and its 5 neighbours


def test_too_few_cells_for_the_neighbours_is_a_clear_error():
    with pytest.raises(ValueError, match="n_neighbors is 20 but there are only 15 cells"):
        neighbors_graph(graph_adata(points(15)), n_neighbors=20, seed=0)


# --------------------------------------------------------------------------- clustering


def blobs(n_per_blob=60, n_blobs=4, dims=10, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=12.0, size=(n_blobs, dims))
    labels = np.repeat(np.arange(n_blobs), n_per_blob)
    points = centres[labels] + rng.normal(size=(len(labels), dims))
    order = rng.permutation(len(labels))
    return points[order].astype(np.float32), labels[order]


def embedding_adata(points, labels):
    obs = pd.DataFrame(
        {"label": pd.Categorical([f"type{x}" for x in labels])},
        index=[f"cell{i}" for i in range(len(labels))],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm[EMBEDDING_KEY] = points
    return adata


def clustered_adata(points, labels, seed: int, **params):
    """cluster_embedding on a new embedding file: the AnnData it filled, what it returned."""
    adata = embedding_adata(points, labels)
    return adata, cluster_embedding(adata, seed, **params)


@pytest.fixture(scope="module")
def clustered():
    points, labels = blobs()
    runs = [
        clustered_adata(points, labels, seed, **{**GRAPH, "n_neighbors": 15})[0] for seed in (0, 0)
    ]
    return labels, runs


def test_cluster_embedding_recovers_blobs(clustered):
    labels, (adata, _) = clustered
    scores = cluster_scores(labels, adata.obs["leiden"])
    assert scores["ari"] > 0.9
    assert adata.obsm["X_umap"].shape == (len(labels), 2)
    assert np.isfinite(adata.obsm["X_umap"]).all()


def test_cluster_embedding_is_seeded(clustered):
    _, (first, again) = clustered
    assert list(first.obs["leiden"]) == list(again.obs["leiden"])
    np.testing.assert_array_equal(first.obsm["X_umap"], again.obsm["X_umap"])


def test_cluster_embedding_returns_what_it_ran_and_leaves_uns_alone():
    """The Leiden settings, the graph of its Leiden run (the bisection's) and the UMAP's
    note go to the caller, not into the AnnData."""
    points, labels = blobs(n_per_blob=30)
    adata, clustering = clustered_adata(points, labels, 0, **{**GRAPH, "n_neighbors": 10})
    assert clustering.leiden_settings == {  # leiden_flavor auto on few cells: leidenalg
        "flavor": "leidenalg",
        "n_iterations": GRAPH["leiden_n_iterations"],
        "directed": GRAPH["leiden_directed"],
    }
    assert clustering.umap_note is None and set(adata.uns) <= {"neighbors", "umap"}
    at_one = clustering.graph.clusters(GRAPH["resolution"])  # the job's run, on its graph
    np.testing.assert_array_equal(np.asarray(at_one), adata.obs["leiden"].to_numpy())


def test_umap_above_umap_max_cells_is_a_seeded_sample(tmp_path):
    from scembed.plots import umap_figure

    points, labels = blobs(n_per_blob=50)  # 200 cells
    settings = {**GRAPH, "n_neighbors": 10, "umap_max_cells": 60}
    runs = [clustered_adata(points, labels, 4, **settings) for _ in (0, 1)]
    (first, clustering), (again, _) = runs
    xy = first.obsm["X_umap"]
    drawn = np.isfinite(xy).all(axis=1)
    assert drawn.sum() == 60 and np.isnan(xy[~drawn]).all()
    np.testing.assert_array_equal(xy, again.obsm["X_umap"])  # the same sample and layout
    assert "seeded sample of 60 of 200 cells (umap_max_cells: 60)" in clustering.umap_note
    other = clustered_adata(points, labels, 5, **settings)[0].obsm["X_umap"]
    assert not np.array_equal(np.isfinite(other).all(axis=1), drawn)  # another seed's sample
    # Leiden still clusters every cell
    assert first.obs["leiden"].notna().all()
    umap_figure(xy, first.obs["leiden"], first.obs["label"], "sampled", tmp_path / "u.png")
    assert (tmp_path / "u.png").stat().st_size > 0
    skipped, clustering = clustered_adata(points, labels, 4, **{**settings, "umap_max_cells": 0})
    assert np.isnan(skipped.obsm["X_umap"]).all() and "UMAP skipped" in clustering.umap_note
    whole, clustering = clustered_adata(points, labels, 4, **{**settings, "umap_max_cells": 200})
    assert np.isfinite(whole.obsm["X_umap"]).all() and clustering.umap_note is None


def test_umap_n_epochs_moves_the_layout_and_nothing_else():
    """`umap_n_epochs` (figures only): fewer epochs, another layout; the same graph and
    Leiden clusters."""
    points, labels = blobs(n_per_blob=50)
    short, default = (
        clustered_adata(points, labels, 0, **{**GRAPH, **epochs})[0]
        for epochs in ({"umap_n_epochs": 5}, {})
    )
    assert np.isfinite(short.obsm["X_umap"]).all()
    assert not np.allclose(short.obsm["X_umap"], default.obsm["X_umap"])
    assert (short.obsp["connectivities"] != default.obsp["connectivities"]).nnz == 0
    assert (short.obs["leiden"] == default.obs["leiden"]).all()


def test_the_umap_leaves_the_knn_graph_as_it_was():
    """umap-learn zeroes the graph's weak edges in place; the bisection after the UMAP
    must see the kNN graph itself, drawn or not (it did not before this test)."""
    points, labels = blobs(n_per_blob=300)  # 1200 cells: umap-learn zeroes 18 edges
    drawn, skipped = (
        clustered_adata(points, labels, 0, **{**GRAPH, "n_neighbors": 15, **umap})[0]
        for umap in ({}, {"umap_max_cells": 0})
    )
    assert np.isfinite(drawn.obsm["X_umap"]).all() and np.isnan(skipped.obsm["X_umap"]).all()
    graph = drawn.obsp["connectivities"]
    assert (graph != skipped.obsp["connectivities"]).nnz == 0
    assert graph.data.min() > 0  # no edge was zeroed


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_cluster_embedding_refuses_non_finite(bad):
    points, labels = blobs(n_per_blob=10)
    points[7, 3] = bad
    points[12, 0] = bad
    with pytest.raises(ValueError, match=r"non-finite values in 2 cells \(first: cell 7\)"):
        cluster_embedding(embedding_adata(points, labels), seed=0, **{**GRAPH, "n_neighbors": 5})


# --------------------------------------------------------------------------- Leiden settings


def test_an_unknown_leiden_flavor_is_refused():
    with pytest.raises(ValueError, match="leiden_flavor 'louvain' is not one of .*'auto'"):
        leiden_settings(100, "louvain", -1, True)


def test_auto_leiden_is_the_books_below_10_5_cells_and_scanpys_igraph_from_there():
    assert GRAPH["leiden_flavor"] == "auto"  # the schema's default
    assert IGRAPH_FROM_CELLS == EXACT_MAX_CELLS  # where the graph is approximate anyway
    book = {"flavor": "leidenalg", "n_iterations": -1, "directed": True}
    assert leiden_settings(IGRAPH_FROM_CELLS - 1, "auto", -1, True) == book
    assert leiden_settings(IGRAPH_FROM_CELLS, "auto", -1, True) == SCANPY_IGRAPH
    assert SCANPY_IGRAPH == {"flavor": "igraph", "n_iterations": 2, "directed": False}
    # the other keys apply below the switch; an explicit backend applies at every size
    assert leiden_settings(10, "auto", 5, False) == {**book, "n_iterations": 5, "directed": False}
    assert leiden_settings(10**6, "leidenalg", -1, True) == book


def test_auto_leiden_runs_what_it_says_on_either_side_of_the_switch(monkeypatch):
    """The job with `auto` gives the clusters of leidenalg (the book's setting) below
    the switch and those of igraph with 2 iterations from it, and says which ran."""
    X, labels = blobs(n_blobs=4, n_per_blob=60, dims=6)
    params = {**GRAPH, "n_neighbors": 10, "umap_max_cells": 0}
    runs = {}
    for name, flavor in (("auto", "auto"), ("leidenalg", "leidenalg")):
        runs[name] = clustered_adata(X, labels, 0, **{**params, "leiden_flavor": flavor})
    monkeypatch.setattr(cluster_module, "IGRAPH_FROM_CELLS", len(labels))  # 240 cells: "large"
    runs["auto, large"] = clustered_adata(X, labels, 0, **params)
    igraph = {**params, "leiden_flavor": "igraph", "leiden_n_iterations": 2}
    runs["igraph"] = clustered_adata(X, labels, 0, **igraph)
    clusters = {name: list(adata.obs["leiden"]) for name, (adata, _) in runs.items()}
    assert clusters["leidenalg"] != clusters["igraph"]  # the data tell the two apart
    assert clusters["auto"] == clusters["leidenalg"]
    assert runs["auto"][1].leiden_settings["flavor"] == "leidenalg"
    assert clusters["auto, large"] == clusters["igraph"]
    assert runs["auto, large"][1].leiden_settings == SCANPY_IGRAPH
