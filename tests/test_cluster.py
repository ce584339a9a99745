"""Clustering of an embedding (scembed.cluster): the neighbour graph (exact and
approximate search, 8192+ cells), Leiden and its bisection to a number of clusters, UMAP
(a seeded sample above umap_max_cells), and what it refuses."""

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
from scembed.leiden import LeidenGraph, leiden, leiden_matched
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


@pytest.fixture(scope="module")
def clustered():
    points, labels = blobs()
    runs = [
        cluster_embedding(
            embedding_adata(points, labels), seed=seed, **{**GRAPH, "n_neighbors": 15}
        )
        for seed in (0, 0)
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


def test_umap_above_umap_max_cells_is_a_seeded_sample(tmp_path):
    from scembed.plots import umap_figure

    points, labels = blobs(n_per_blob=50)  # 200 cells
    settings = {**GRAPH, "n_neighbors": 10, "umap_max_cells": 60}
    runs = [cluster_embedding(embedding_adata(points, labels), 4, **settings) for _ in (0, 1)]
    xy = runs[0].obsm["X_umap"]
    drawn = np.isfinite(xy).all(axis=1)
    assert drawn.sum() == 60 and np.isnan(xy[~drawn]).all()
    np.testing.assert_array_equal(xy, runs[1].obsm["X_umap"])  # the same sample and layout
    assert "seeded sample of 60 of 200 cells (umap_max_cells: 60)" in runs[0].uns["umap_note"]
    other = cluster_embedding(embedding_adata(points, labels), 5, **settings).obsm["X_umap"]
    assert not np.array_equal(np.isfinite(other).all(axis=1), drawn)  # another seed's sample
    # Leiden still clusters every cell
    assert runs[0].obs["leiden"].notna().all()
    umap_figure(xy, runs[0].obs["leiden"], runs[0].obs["label"], "sampled", tmp_path / "u.png")
    assert (tmp_path / "u.png").stat().st_size > 0
    skipped = cluster_embedding(
        embedding_adata(points, labels), 4, **{**settings, "umap_max_cells": 0}
    )
    assert np.isnan(skipped.obsm["X_umap"]).all() and "UMAP skipped" in skipped.uns["umap_note"]
    whole = cluster_embedding(
        embedding_adata(points, labels), 4, **{**settings, "umap_max_cells": 200}
    )
    assert np.isfinite(whole.obsm["X_umap"]).all() and "umap_note" not in whole.uns


def test_umap_n_epochs_moves_the_layout_and_nothing_else():
    """`umap_n_epochs` (figures only): fewer epochs, another layout; the same graph and
    Leiden clusters."""
    points, labels = blobs(n_per_blob=50)
    short, default = (
        cluster_embedding(embedding_adata(points, labels), 0, **{**GRAPH, **epochs})
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
        cluster_embedding(
            embedding_adata(points, labels), 0, **{**GRAPH, "n_neighbors": 15, **umap}
        )
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


# --------------------------------------------------------------------------- matched-k Leiden


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


def test_bisection_reuses_the_jobs_leiden_run_and_gives_the_same_result(monkeypatch):
    """The job's Leiden at resolution 1.0 is the bisection's first step: handed over
    (`known`), it is not run again, and the bisection ends where it ends without it."""
    adata = ring_of_cliques(n_cliques=12, size=8)
    kwargs = {"flavor": "leidenalg", "directed": False}
    at_one = leiden(adata, 1.0, seed=0, n_iterations=-1, **kwargs).copy()
    runs = []
    clusters = LeidenGraph.clusters
    monkeypatch.setattr(
        LeidenGraph,
        "clusters",
        lambda self, r, start=None: runs.append(r) or clusters(self, r, start),
    )
    alone = leiden_matched(adata, 4, seed=0, **kwargs)
    alone_runs, runs[:] = list(runs), []
    reused = leiden_matched(adata, 4, seed=0, known={1.0: at_one}, **kwargs)
    assert alone_runs[0] == 1.0 and runs == alone_runs[1:]  # one Leiden run fewer
    assert reused["steps"] == alone["steps"] and reused["resolution"] == alone["resolution"]
    assert (reused["clusters"] == alone["clusters"]).all()


def test_bisection_reports_when_it_cannot_match():
    adata = ring_of_cliques(n_cliques=4, size=5)
    result = leiden_matched(adata, 50, seed=0, max_steps=6, flavor="leidenalg", directed=False)
    assert not result["exact"]
    assert result["n_clusters"] < 50
    assert result["steps"] == 6


def test_bisection_stops_when_the_count_jumps_past_the_target():
    """No resolution gives 6 of these 12 cliques' groups (the count jumps from 5 to 7):
    the bisection stops once its interval is pinned to BISECTION_WIDTH of the
    resolution, not after all of max_steps, and that is no time-out."""
    adata = ring_of_cliques(n_cliques=12, size=8)
    result = leiden_matched(adata, 6, seed=0, flavor="leidenalg", directed=False)
    assert not result["exact"] and result["n_clusters"] in (5, 7)
    assert 5 < result["steps"] < 30 and not result["timed_out"]
    assert 0.0625 <= result["resolution"] <= 0.125  # where 5 groups (0.0625) jump to 7


def test_bisection_stops_at_its_time_bound():
    adata = ring_of_cliques(n_cliques=12, size=8)
    unbounded = leiden_matched(adata, 4, seed=0, flavor="leidenalg", directed=False)
    assert unbounded["exact"] and unbounded["steps"] > 1 and not unbounded["timed_out"]
    bounded = leiden_matched(adata, 4, seed=0, max_seconds=1e-9, flavor="leidenalg", directed=False)
    assert bounded["steps"] == 1  # the first run always happens, no other starts
    assert bounded["timed_out"] and not bounded["exact"]
    assert bounded["n_clusters"] == adata.obs["leiden_matched"].nunique()


# --------------------------------------------------------------------------- one graph


@pytest.mark.parametrize(
    "settings",
    [
        {"flavor": "leidenalg", "n_iterations": -1, "directed": True},
        {"flavor": "leidenalg", "n_iterations": 2, "directed": False},
        {"flavor": "igraph", "n_iterations": 2, "directed": False},
    ],
)
def test_leiden_on_one_graph_gives_scanpys_clusters(settings):
    """LeidenGraph runs what sc.tl.leiden runs, on a graph converted once: the same
    clusters, named alike, at every resolution and seed (the kNN graph of 400 points)."""
    import scanpy as sc

    adata = graph_adata(points(400, seed=1))
    neighbors_graph(adata, n_neighbors=15, seed=0)
    for seed in (0, 7):
        graph = LeidenGraph.of(adata, seed, **settings)
        for resolution in (0.3, 1.0, 2.5):
            sc.tl.leiden(
                adata, resolution=resolution, random_state=seed, key_added="ref", **settings
            )
            ours = graph.clusters(resolution)
            assert list(ours.categories) == list(adata.obs["ref"].cat.categories)
            np.testing.assert_array_equal(np.asarray(ours), adata.obs["ref"].to_numpy())


def test_the_bisection_converts_the_graph_once(monkeypatch):
    """Every Leiden run of the bisection uses one igraph graph (scanpy converted it on each
    call), and ends where Leiden through scanpy ends."""
    import scanpy as sc

    adata = ring_of_cliques(n_cliques=12, size=8)
    built = []
    original = LeidenGraph.__init__
    monkeypatch.setattr(
        LeidenGraph, "__init__", lambda self, *a, **k: built.append(1) or original(self, *a, **k)
    )
    result = leiden_matched(adata, 4, seed=0, flavor="leidenalg", directed=False, warm_start=False)
    assert len(built) == 1 and result["steps"] > 1 and result["exact"]
    sc.tl.leiden(
        adata,
        result["resolution"],
        random_state=0,
        flavor="leidenalg",
        directed=False,
        key_added="ref",
    )
    np.testing.assert_array_equal(result["clusters"].to_numpy(), adata.obs["ref"].to_numpy())


def test_the_jobs_leiden_run_and_its_bisection_share_one_graph(monkeypatch):
    """cluster_embedding's Leiden run and the bisection after it convert the graph once;
    another graph, or other arguments, get their own; release() forgets it."""
    X, labels = blobs(n_blobs=4, n_per_blob=40, dims=6)
    adata = embedding_adata(X, labels)
    built = []
    original = LeidenGraph.__init__
    monkeypatch.setattr(
        LeidenGraph, "__init__", lambda self, *a, **k: built.append(1) or original(self, *a, **k)
    )
    LeidenGraph.release()
    cluster_embedding(adata, 0, **{**GRAPH, "n_neighbors": 10, "umap_max_cells": 0})
    settings = adata.uns["leiden_settings"]
    leiden_matched(adata, 4, 0, **settings)
    assert len(built) == 1
    leiden_matched(adata, 4, 0, **{**settings, "n_iterations": 3})  # other arguments
    assert len(built) == 2
    other = embedding_adata(X, labels)
    neighbors_graph(other, 10, 0)
    leiden_matched(other, 4, 0, **settings)  # another matrix
    assert len(built) == 3
    LeidenGraph.release()
    leiden_matched(other, 4, 0, **settings)
    assert len(built) == 4
    LeidenGraph.release()


def test_an_unknown_leiden_flavor_is_refused():
    adata = ring_of_cliques(n_cliques=3, size=4)
    with pytest.raises(ValueError, match="leiden_flavor 'louvain' is not one of"):
        LeidenGraph.of(adata, 0, flavor="louvain")
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
        runs[name] = cluster_embedding(
            embedding_adata(X, labels), 0, **{**params, "leiden_flavor": flavor}
        )
    monkeypatch.setattr(cluster_module, "IGRAPH_FROM_CELLS", len(labels))  # 240 cells: "large"
    runs["auto, large"] = cluster_embedding(embedding_adata(X, labels), 0, **params)
    igraph = {**params, "leiden_flavor": "igraph", "leiden_n_iterations": 2}
    runs["igraph"] = cluster_embedding(embedding_adata(X, labels), 0, **igraph)
    clusters = {name: list(run.obs["leiden"]) for name, run in runs.items()}
    assert clusters["leidenalg"] != clusters["igraph"]  # the data tell the two apart
    assert clusters["auto"] == clusters["leidenalg"]
    assert runs["auto"].uns["leiden_settings"]["flavor"] == "leidenalg"
    assert clusters["auto, large"] == clusters["igraph"]
    assert runs["auto, large"].uns["leiden_settings"] == SCANPY_IGRAPH


def test_the_warm_started_bisection_starts_below_from_the_finer_clusters(monkeypatch):
    """A run below a resolution already run starts from that run's clusters (finer:
    Leiden merges them); runs above every one so far start cold. On the ring of cliques
    it reaches 4 clusters of whole cliques at the cold bisection's resolution; which
    neighbouring cliques go together is nearly a tie there, and the two starts may break
    it differently (docs/leiden.md compares them on real data)."""
    adata = ring_of_cliques(n_cliques=12, size=8)
    starts = []
    clusters = LeidenGraph.clusters

    def record(self, resolution, start=None):
        starts.append((resolution, None if start is None else len(set(start))))
        return clusters(self, resolution, start)

    monkeypatch.setattr(LeidenGraph, "clusters", record)
    kwargs = {"flavor": "leidenalg", "directed": False}
    warm = leiden_matched(adata, 4, seed=0, **kwargs)
    LeidenGraph.release()
    assert starts[0] == (1.0, None) and len(starts) > 2
    for resolution, start in starts[1:]:
        above = [r for r, _ in starts if r > resolution]
        assert (start is not None) == bool(above), (resolution, starts)
    cold = leiden_matched(adata, 4, seed=0, warm_start=False, **kwargs)
    LeidenGraph.release()
    assert warm["exact"] and cold["exact"] and warm["resolution"] == cold["resolution"]
    cliques = np.repeat(np.arange(12), 8)
    for result in (warm, cold):
        per_clique = pd.crosstab(cliques, result["clusters"].to_numpy())
        assert ((per_clique > 0).sum(axis=1) == 1).all()  # no clique is split
