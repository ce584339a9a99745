"""Leiden on the kNN graph: one igraph conversion for every run of a job, and the
matched-k bisection of the resolution (as many clusters as labels)."""

from __future__ import annotations

import logging
import time

import anndata as ad
import numpy as np
import pandas as pd
from natsort import natsorted

log = logging.getLogger("scembed")


class LeidenGraph:
    """The kNN graph as igraph, built once, for every Leiden run on it.

    scanpy's ``tl.leiden`` converts the graph to igraph through Python lists on every
    call (350 s at 10^6 cells); the matched-k bisection runs Leiden several times on the
    same graph. This runs exactly what ``sc.tl.leiden`` runs (the same edges in the same
    order, weights, seed and arguments), so the clusters are the same (tested).
    """

    def __init__(
        self,
        adjacency,
        seed: int,
        flavor: str = "leidenalg",
        n_iterations: int = -1,
        directed: bool = True,
    ):
        import igraph as ig

        if flavor not in ("leidenalg", "igraph"):
            raise ValueError(f"leiden_flavor {flavor!r} is not one of ('leidenalg', 'igraph')")
        self.seed, self.flavor, self.n_iterations = seed, flavor, n_iterations
        sources, targets = adjacency.nonzero()
        weights = np.asarray(adjacency[sources, targets]).ravel()
        self.graph = ig.Graph(
            n=adjacency.shape[0], directed=directed if flavor == "leidenalg" else False
        )
        # the same edges in the same order as Graph(edges=...), 2.5x faster from an array
        self.graph.add_edges(np.column_stack([sources, targets]))
        self.graph.es["weight"] = weights
        self.weights = weights.astype(np.float64)  # what scanpy hands leidenalg

    @classmethod
    def of(cls, adata: ad.AnnData, seed: int, **leiden_kwargs) -> LeidenGraph:
        """The graph of ``obsp["connectivities"]`` (see :func:`scembed.cluster.neighbors_graph`).

        Converting takes about 40 s at 10^6 cells and the graph holds about 1 GB: the
        caller keeps it for every Leiden run on that graph (the job's run and its
        matched-k bisection, :func:`leiden_matched`'s ``graph``) and drops it after."""
        return cls(adata.obsp["connectivities"], seed, **leiden_kwargs)

    def clusters(self, resolution: float, start=None) -> pd.Categorical:
        """Leiden's clusters at ``resolution``, named "0", "1", ... as scanpy names them.

        ``start``: clusters (one label per cell) that Leiden starts from instead of one
        cluster per cell (a warm start, see :func:`leiden_matched`)."""
        initial = None if start is None else pd.factorize(np.asarray(start))[0].tolist()
        if self.flavor == "leidenalg":
            import leidenalg

            membership = leidenalg.find_partition(
                self.graph,
                leidenalg.RBConfigurationVertexPartition,
                initial_membership=initial,
                n_iterations=self.n_iterations,
                resolution_parameter=resolution,
                weights=self.weights,
                seed=self.seed,
            ).membership
        else:
            from scanpy._utils.random import set_igraph_random_state

            with set_igraph_random_state(self.seed):
                membership = self.graph.community_leiden(
                    initial_membership=initial,
                    n_iterations=self.n_iterations,
                    weights="weight",
                    resolution=resolution,
                    objective_function="modularity",
                ).membership
        groups = np.array(membership)
        return pd.Categorical(
            values=groups.astype("U"), categories=natsorted(map(str, np.unique(groups)))
        )


def leiden(
    adata: ad.AnnData,
    resolution: float,
    seed: int,
    flavor: str = "leidenalg",
    n_iterations: int = -1,
    directed: bool = True,
    key_added: str = "leiden",
) -> pd.Series:
    """Leiden clusters with the backend, iterations and directedness pinned explicitly
    (on a graph converted for this run alone: :class:`LeidenGraph` for several runs)."""
    graph = LeidenGraph.of(adata, seed, flavor=flavor, n_iterations=n_iterations, directed=directed)
    adata.obs[key_added] = graph.clusters(resolution)
    return adata.obs[key_added]


BISECTION_WIDTH = 1e-3
"""The matched-k bisection stops when its resolution interval is narrower than this
fraction of the resolution (on the 80 panel embeddings of docs/leiden.md every exact
match came within 9 runs, long before; at 10^6 cells it bounds a fruitless search to
about a dozen runs of minutes each)."""


def leiden_matched(
    adata: ad.AnnData,
    n_target: int,
    seed: int,
    max_steps: int = 30,
    max_seconds: float = 0.0,
    known: dict[float, pd.Series] | None = None,
    warm_start: bool = True,
    graph: LeidenGraph | None = None,
    **leiden_kwargs,
) -> dict:
    """Leiden at the resolution, found by bisection, that gives ``n_target`` clusters.

    The resolution is doubled from 1.0 until there are at least ``n_target`` clusters,
    then bisected. When no resolution within ``max_steps`` Leiden runs (and, when
    ``max_seconds`` > 0, within that time: no run starts after it) gives exactly
    ``n_target``, the closest count is kept and ``exact`` is False. The bisection also
    stops once its interval is narrower than :data:`BISECTION_WIDTH` of the resolution:
    the count jumps past ``n_target`` there (Leiden's count is not monotone in the
    resolution), and further runs in that sliver would only spend time. Every run uses one
    :class:`LeidenGraph`: ``graph`` (the caller's, converted with ``seed`` for an earlier
    run on this graph), else one converted here with ``leiden_kwargs``. ``known`` maps a
    resolution to Leiden's clusters there on this graph with these arguments (the job's
    own Leiden run): the bisection takes them instead of running Leiden again, and counts
    the step as run, so its path and result are the same. With ``warm_start``, a run
    below a resolution already run starts from the clusters of the nearest one above it
    (a finer partition, which Leiden merges) instead of one cluster per cell: about half
    the time of a cold run, with the same clusters on the data measured (docs/leiden.md).
    Runs above every resolution run so far start cold (a coarse start keeps Leiden from
    splitting).
    Returns ``resolution``, ``n_clusters``, ``exact``, ``steps``, ``timed_out`` and
    ``clusters``.
    """
    steps = 0
    best = None
    deadline = time.monotonic() + max_seconds if max_seconds > 0 else float("inf")
    if graph is None:
        graph = LeidenGraph.of(adata, seed, **leiden_kwargs)
    elif leiden_kwargs:
        raise ValueError(f"Leiden's settings {sorted(leiden_kwargs)} with a graph: give one")
    elif graph.seed != seed:
        raise ValueError(f"a graph converted with seed {graph.seed} for seed {seed}")
    finer: dict[float, pd.Series] = {}  # resolution -> its clusters, for warm starts

    def more() -> bool:
        return steps < max_steps and time.monotonic() < deadline

    def run(resolution: float) -> int:
        nonlocal steps, best
        steps += 1
        if known and resolution in known:
            clusters = pd.Series(known[resolution].to_numpy(), index=adata.obs_names)
        else:
            above = [r for r in finer if r > resolution]
            start = finer[min(above)].to_numpy() if warm_start and above else None
            began = time.monotonic()
            clusters = pd.Series(graph.clusters(resolution, start), index=adata.obs_names)
            log.info(
                "bisection run %d: resolution %g, %d clusters, %s start, %.1f s",
                steps,
                resolution,
                clusters.nunique(),
                "cold" if start is None else "warm",
                time.monotonic() - began,
            )
        finer[resolution] = clusters
        n = int(clusters.nunique())
        if best is None or abs(n - n_target) < abs(best["n_clusters"] - n_target):
            best = {"resolution": resolution, "n_clusters": n, "clusters": clusters}
        return n

    low, high = 0.0, 1.0
    n = run(high)
    while n < n_target and more():
        low, high = high, high * 2
        n = run(high)
    narrowed = False
    while n != n_target and more():
        if high - low <= BISECTION_WIDTH * high:  # k lies in no wider interval: stop
            narrowed = True
            break
        middle = (low + high) / 2
        n = run(middle)
        if n < n_target:
            low = middle
        elif n > n_target:
            high = middle
    adata.obs["leiden_matched"] = best["clusters"]
    exact = best["n_clusters"] == n_target
    timed_out = not exact and not narrowed and steps < max_steps
    return {**best, "exact": exact, "steps": steps, "timed_out": timed_out}
