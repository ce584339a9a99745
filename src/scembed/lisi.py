"""The LISI (local inverse Simpson's index, Korsunsky et al. 2019) of each cell: the
effective number of categories (batches, or labels) among its nearest neighbours, and
scIB's scaling of its median to 0 (worst) .. 1 (best) as iLISI and cLISI
(:mod:`scembed.integration`).

Each cell's 90 nearest neighbours are weighed as harmonypy's ``compute_lisi`` weighs
them (a Gaussian kernel whose width gives perplexity 30), but taken from the
clustering's search (:func:`scembed.cluster.knn_transformer`): exact below 10^5 cells,
where the LISI equals harmonypy's to 1e-10 (tested), NN-descent from there, where
harmonypy's brute-force search would take hours.
"""

from __future__ import annotations

import numpy as np

LISI_PERPLEXITY = 30
"""The LISI's effective neighbourhood size (the LISI paper's and harmonypy's default);
each cell's 3 x 30 = 90 nearest neighbours are weighed."""
LISI_CHUNK = 20_000  # cells whose weights are searched at once (memory: chunk x 90 floats)


def neighbours(
    embedding: np.ndarray, k: int, seed: int, search: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices (n x k) of each cell's ``k`` nearest other cells (Euclidean):
    exact (scikit-learn) or NN-descent seeded with ``seed``, as ``knn_search`` chooses
    for the clustering's graph (:func:`scembed.cluster.knn_transformer`)."""
    from sklearn.neighbors import NearestNeighbors

    from scembed.cluster import knn_transformer

    x = np.ascontiguousarray(embedding, dtype=np.float64)
    n = len(x)
    if not 0 < k < n:
        raise ValueError(f"{k} neighbours of each of {n} cells: need at least {k + 1} cells")
    search_with = knn_transformer(n, k + 1, seed, search)
    if search_with == "sklearn":
        return NearestNeighbors(n_neighbors=k).fit(x).kneighbors()  # each cell not its own
    from pynndescent import NNDescent

    index = NNDescent(
        x,
        n_neighbors=k + 1,
        metric="euclidean",
        n_trees=search_with.n_trees,
        n_iters=search_with.n_iters,
        random_state=seed,
        n_jobs=None,
    )
    indices, distances = index.neighbor_graph
    return without_self(distances, indices, k)


def without_self(
    distances: np.ndarray, indices: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` neighbours of each row of an NN-descent search of k + 1 that are not the
    cell itself (a row without it, which duplicates of the cell can cause, drops its
    last); an index of -1 (no neighbour found) gets an infinite distance, which weighs
    nothing in :func:`lisi`."""
    n = len(indices)
    is_self = indices == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    distances = np.where(indices < 0, np.inf, distances)
    return distances[keep].reshape(n, k), np.maximum(indices[keep], 0).reshape(n, k)


def _neighbour_weights(distances: np.ndarray, perplexity: float, tol: float, max_tries: int):
    """Each row's Gaussian weights exp(-beta d) (summing to 1) with beta searched per row
    so that their entropy is log(perplexity), as LISI does; and the entropy (0: the
    weights vanished)."""
    d = distances.astype(np.float64)
    n = len(d)
    target = np.log(perplexity)
    beta = np.ones(n)
    low, high = np.full(n, -np.inf), np.full(n, np.inf)

    def weights(rows):
        p = np.exp(-d[rows] * beta[rows, None])
        total = p.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = np.where(p > 0, d[rows] * p, 0.0).sum(axis=1)
            h = np.where(total > 0, np.log(total) + beta[rows] * spread / total, 0.0)
            p = np.where(total[:, None] > 0, p / total[:, None], 0.0)
        return h, p

    h, p = weights(np.arange(n))
    rows = np.flatnonzero(np.abs(h - target) > tol)
    for _ in range(max_tries):
        if not len(rows):
            break
        wide = h[rows] > target  # too even: sharpen (larger beta)
        up, down = rows[wide], rows[~wide]
        low[up] = beta[up]
        beta[up] = np.where(np.isinf(high[up]), beta[up] * 2, (beta[up] + high[up]) / 2)
        high[down] = beta[down]
        beta[down] = np.where(np.isinf(low[down]), beta[down] / 2, (beta[down] + low[down]) / 2)
        h[rows], p[rows] = weights(rows)
        rows = rows[np.abs(h[rows] - target) > tol]
    return p, h


def lisi(
    distances: np.ndarray,
    indices: np.ndarray,
    codes: np.ndarray,
    perplexity: float = LISI_PERPLEXITY,
    tol: float = 1e-5,
    max_tries: int = 50,
) -> np.ndarray:
    """The LISI of each cell (1 .. number of categories): the inverse Simpson index of
    the categories ``codes`` (0 .. m - 1) among its neighbours (``distances``,
    ``indices``: n x k), weighted as harmonypy's ``compute_lisi`` weighs them. NaN for a
    cell whose weights vanish (harmonypy's -1)."""
    codes = np.asarray(codes, dtype=np.int64)
    n_categories = int(codes.max()) + 1
    result = np.empty(len(indices))
    for start in range(0, len(indices), LISI_CHUNK):
        stop = min(start + LISI_CHUNK, len(indices))
        p, h = _neighbour_weights(distances[start:stop], perplexity, tol, max_tries)
        rows = np.repeat(np.arange(stop - start), p.shape[1])
        per_category = np.bincount(
            rows * n_categories + codes[indices[start:stop]].ravel(),
            weights=p.ravel(),
            minlength=(stop - start) * n_categories,
        ).reshape(-1, n_categories)
        with np.errstate(divide="ignore"):
            result[start:stop] = np.where(h == 0, np.nan, 1 / (per_category**2).sum(axis=1))
    return result


def ilisi_scaled(values: np.ndarray, n_batches: int) -> float:
    """scIB's iLISI: (median - 1) / (n_batches - 1); 1 when every neighbourhood holds
    all batches evenly, 0 when it holds one."""
    if n_batches < 2:
        return float("nan")
    return float((np.nanmedian(values) - 1) / (n_batches - 1))


def clisi_scaled(values: np.ndarray, n_labels: int) -> float:
    """scIB's cLISI: (n_labels - median) / (n_labels - 1); 1 when every neighbourhood
    holds one label, 0 when it holds all labels evenly."""
    if n_labels < 2:
        return float("nan")
    return float((n_labels - np.nanmedian(values)) / (n_labels - 1))
