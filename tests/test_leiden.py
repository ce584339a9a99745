"""Leiden on one igraph graph (scembed.leiden): the clusters scanpy's Leiden gives, and
the matched-k bisection to a number of clusters on a graph converted once."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from test_cluster import graph_adata, points

from scembed.cluster import neighbors_graph
from scembed.leiden import LeidenGraph, leiden, leiden_matched

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


def test_the_bisection_runs_on_the_graph_it_is_given(monkeypatch):
    """The caller's graph (the one of the job's Leiden run) is the bisection's: no
    conversion, the same result; settings beside it, or another seed, are refused."""
    adata = ring_of_cliques(n_cliques=12, size=8)
    kwargs = {"flavor": "leidenalg", "directed": False}
    graph = LeidenGraph.of(adata, 0, **kwargs)
    alone = leiden_matched(adata, 4, 0, **kwargs)
    built = []
    original = LeidenGraph.__init__
    monkeypatch.setattr(
        LeidenGraph, "__init__", lambda self, *a, **k: built.append(1) or original(self, *a, **k)
    )
    given = leiden_matched(adata, 4, 0, graph=graph)
    assert not built
    assert given["steps"] == alone["steps"] and given["resolution"] == alone["resolution"]
    assert (given["clusters"] == alone["clusters"]).all()
    with pytest.raises(ValueError, match="settings .*'flavor'.* with a graph"):
        leiden_matched(adata, 4, 0, graph=graph, flavor="igraph")
    with pytest.raises(ValueError, match="converted with seed 0 for seed 1"):
        leiden_matched(adata, 4, 1, graph=graph)


def test_an_unknown_flavor_is_refused():
    adata = ring_of_cliques(n_cliques=3, size=4)
    with pytest.raises(ValueError, match="leiden_flavor 'louvain' is not one of"):
        LeidenGraph.of(adata, 0, flavor="louvain")


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
    assert starts[0] == (1.0, None) and len(starts) > 2
    for resolution, start in starts[1:]:
        above = [r for r, _ in starts if r > resolution]
        assert (start is not None) == bool(above), (resolution, starts)
    cold = leiden_matched(adata, 4, seed=0, warm_start=False, **kwargs)
    assert warm["exact"] and cold["exact"] and warm["resolution"] == cold["resolution"]
    cliques = np.repeat(np.arange(12), 8)
    for result in (warm, cold):
        per_clique = pd.crosstab(cliques, result["clusters"].to_numpy())
        assert ((per_clique > 0).sum(axis=1) == 1).all()  # no clique is split
