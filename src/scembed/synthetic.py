"""Simulated labelled counts from a zero-inflated negative binomial.

Each cell type shifts the mean of a small set of marker genes; library sizes, gene
dispersions and dropout vary as in UMI data, so clustering is neither trivial nor hopeless.
With ``n_batches`` above 1 the cells also fall into batches (``obs["batch"]``), each with
its own gene-wise scaling and library size (:func:`draw_batches`).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def draw_labels(rng, n_cells: int, n_types: int, type_sizes, concentration: float):
    """(shuffled type of each cell, n_types, n_cells): ``type_sizes`` cells per type when
    given, else sizes from a Dirichlet draw (``concentration``: lower, more unequal)."""
    if type_sizes is not None:
        sizes = np.asarray(type_sizes, dtype=np.int64)
        n_types, n_cells = len(sizes), int(sizes.sum())
    else:
        weights = rng.dirichlet(np.full(n_types, concentration))
        sizes = np.maximum(1, np.floor(weights * n_cells).astype(np.int64))
        sizes[np.argmax(sizes)] += n_cells - sizes.sum()
    labels = np.repeat(np.arange(n_types), sizes)
    rng.shuffle(labels)
    return labels, n_types, n_cells


BATCH_GENE_SD = 0.5  # sd of the log of each batch's gene-wise scaling
BATCH_LIBRARY_SD = 0.3  # sd of the log of each batch's library-size factor


def draw_batches(seed: int, labels: np.ndarray, n_types: int, n_genes: int, n_batches: int):
    """(batch of each cell, gene scaling (n_batches x n_genes), library factor per batch).

    The batches come from their own stream (``[seed, 7919]``), so the rest of the
    simulation draws exactly what it draws without batches. Each type's cells are dealt
    round the batches in a random order: batches independent of types, and every type
    with at least ``n_batches`` cells in every batch. The log-normal factors have mean 1
    (their log has mean -sd^2/2), so batches shift expression without raising it overall.
    """
    brng = np.random.default_rng([seed, 7919])
    batches = np.empty(len(labels), dtype=np.int64)
    for t in range(n_types):
        cells = np.flatnonzero(labels == t)
        dealt = (np.arange(len(cells)) + brng.integers(n_batches)) % n_batches
        batches[cells] = brng.permutation(dealt)
    gene_scale = brng.lognormal(-0.5 * BATCH_GENE_SD**2, BATCH_GENE_SD, (n_batches, n_genes))
    library_scale = brng.lognormal(-0.5 * BATCH_LIBRARY_SD**2, BATCH_LIBRARY_SD, n_batches)
    return batches, gene_scale, library_scale


def batch_column(batches: np.ndarray, n_batches: int) -> pd.Categorical:
    """``obs["batch"]``: "batch0", "batch1", ... as a categorical."""
    return pd.Categorical.from_codes(batches, [f"batch{b}" for b in range(n_batches)])


def simulate_counts(
    n_cells: int = 1000,
    n_genes: int = 500,
    n_types: int = 5,
    seed: int = 0,
    type_sizes: list[int] | None = None,
    marker_fraction: float = 0.08,
    marker_log_fold: float = 1.2,
    n_batches: int = 1,
) -> ad.AnnData:
    """Counts (CSR int32) of ``n_cells`` x ``n_genes`` with labels in ``obs["cell_type"]``.

    ``type_sizes`` fixes the cells per type (e.g. Zeisel's class sizes) and overrides
    ``n_cells``/``n_types``; otherwise types get unequal Dirichlet-drawn sizes. With
    ``n_batches`` above 1, ``obs["batch"]`` holds each cell's batch, whose gene scaling
    and library factor multiply the cell's mean (:func:`draw_batches`); 1 gives the
    counts of a simulation without batches, draw for draw.
    """
    rng = np.random.default_rng(seed)
    labels, n_types, n_cells = draw_labels(rng, n_cells, n_types, type_sizes, 2.0)

    base = rng.lognormal(mean=-1.0, sigma=1.5, size=n_genes)  # mean expression per gene
    log_fold = np.zeros((n_types, n_genes))
    n_markers = max(1, int(marker_fraction * n_genes))
    for t in range(n_types):
        markers = rng.choice(n_genes, size=n_markers, replace=False)
        log_fold[t, markers] = rng.normal(marker_log_fold, 0.5, size=n_markers)
    library = rng.lognormal(mean=0.0, sigma=0.35, size=n_cells)
    mu = base[None, :] * np.exp(log_fold[labels]) * library[:, None]
    if n_batches > 1:
        batches, gene_scale, library_scale = draw_batches(seed, labels, n_types, n_genes, n_batches)
        mu *= gene_scale[batches] * library_scale[batches, None]
    theta = rng.lognormal(mean=0.5, sigma=0.6, size=n_genes)  # inverse dispersion
    rate = rng.gamma(shape=theta[None, :], scale=mu / theta[None, :])
    counts = rng.poisson(rate)
    dropout = 1.0 / (1.0 + np.exp(1.0 + np.log(base)))  # lowly expressed genes drop more
    counts[rng.random(counts.shape) < dropout[None, :] * 0.5] = 0

    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"type{t}" for t in labels])},
        index=[f"cell{i}" for i in range(n_cells)],
    )
    if n_batches > 1:
        obs["batch"] = batch_column(batches, n_batches)
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    return ad.AnnData(X=sp.csr_matrix(counts.astype(np.int32)), obs=obs, var=var)


CHUNK_CELLS = 10_000  # cells simulated at once by the droplet profile (~160 MB dense)


def simulate_droplet_counts(
    n_cells: int = 1000,
    n_genes: int = 2000,
    n_types: int = 5,
    seed: int = 0,
    type_sizes: list[int] | None = None,
    library_size: int = 2500,
    marker_fraction: float = 0.05,
    marker_log_fold: float = 1.5,
    chunk_cells: int = CHUNK_CELLS,
    n_batches: int = 1,
) -> ad.AnnData:
    """Droplet-like counts (CSR int32) at atlas scale, with labels in ``obs["cell_type"]``.

    Each type has an expression profile (a heavy-tailed share of the library per gene,
    raised on its markers); a cell draws its library size (log-normal around
    ``library_size`` UMIs) and gamma-Poisson (negative binomial) counts from its type's
    profile. Cells are simulated ``chunk_cells`` at a time, each chunk from its own
    seeded stream, and converted to CSR at once, so memory beyond the result is one
    dense chunk. Type sizes follow a Dirichlet draw (a few large types, several small
    ones) unless ``type_sizes`` fixes them. With ``n_batches`` above 1, each batch
    scales its types' profiles gene by gene (renormalised to shares of the library) and
    shifts the library size (:func:`draw_batches`), with the batch in ``obs["batch"]``;
    1 gives the counts of a simulation without batches, draw for draw.
    """
    rng = np.random.default_rng(seed)
    labels, n_types, n_cells = draw_labels(rng, n_cells, n_types, type_sizes, 0.8)

    share = rng.lognormal(mean=0.0, sigma=2.8, size=n_genes)  # heavy-tailed gene means
    log_fold = np.zeros((n_types, n_genes))
    n_markers = max(1, int(marker_fraction * n_genes))
    for t in range(n_types):
        markers = rng.choice(n_genes, size=n_markers, replace=False)
        log_fold[t, markers] = rng.normal(marker_log_fold, 0.5, size=n_markers)
    profiles = share[None, :] * np.exp(log_fold)
    profiles /= profiles.sum(axis=1, keepdims=True)  # each type's share of the library
    theta = rng.lognormal(mean=0.0, sigma=0.5, size=n_genes)  # inverse dispersion
    if n_batches > 1:
        batches, gene_scale, library_scale = draw_batches(seed, labels, n_types, n_genes, n_batches)
        # profiles[type * n_batches + batch]: each type's share of the library in each batch
        profiles = (profiles[:, None, :] * gene_scale[None, :, :]).reshape(-1, n_genes)
        profiles /= profiles.sum(axis=1, keepdims=True)

    data, indices, indptr = [], [], [np.zeros(1, dtype=np.int64)]
    nnz = 0
    for number, start in enumerate(range(0, n_cells, chunk_cells)):
        chunk = labels[start : start + chunk_cells]
        crng = np.random.default_rng([seed, number])
        library = crng.lognormal(np.log(library_size) - 0.5 * 0.5**2, 0.5, size=len(chunk))
        if n_batches > 1:
            in_batch = batches[start : start + chunk_cells]
            library *= library_scale[in_batch]
            chunk = chunk * n_batches + in_batch
        mu = profiles[chunk] * library[:, None]
        rate = crng.gamma(shape=theta[None, :], scale=mu / theta[None, :])
        counts = sp.csr_matrix(crng.poisson(rate).astype(np.int32))
        data.append(counts.data)
        indices.append(counts.indices)
        indptr.append(counts.indptr[1:].astype(np.int64) + nnz)
        nnz += counts.nnz
    index_dtype = np.int32 if nnz < 2**31 else np.int64
    X = sp.csr_matrix(
        (
            np.concatenate(data),
            np.concatenate(indices).astype(index_dtype, copy=False),
            np.concatenate(indptr).astype(index_dtype, copy=False),
        ),
        shape=(n_cells, n_genes),
    )
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical.from_codes(labels, [f"type{t}" for t in range(n_types)])},
        index=pd.Index([f"cell{i}" for i in range(n_cells)]),
    )
    if n_batches > 1:
        obs["batch"] = batch_column(batches, n_batches)
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    return ad.AnnData(X=X, obs=obs, var=var)
