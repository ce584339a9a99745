"""The book's preprocessing: gene selection on raw counts, cell filter, log-normalisation, split."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from scembed.batches import batch_key_of
from scembed.checks import MIN_CELLS, DataError, split_sizes

MOMENT_ROWS = 65536  # cells per block when summing gene moments of sparse counts
SEURAT_V3_SPANS = (0.3, 0.5, 1.0)
"""Loess spans tried in turn by the seurat_v3 selection: scanpy's default first, wider ones
when its fit is singular (shallow data with many rarely detected genes)."""

DROP_WARNING = 0.25  # the log warns when the cell filter drops more than this share

log = logging.getLogger("scembed.preprocess")

Hint = Callable[[str, object], str]
"""How a message names a ``preprocess`` setting: ``hint(key, value)`` says how to set
``key`` to ``value`` ("set ... under this dataset"), ``hint(key, None)`` where ``key`` is
set ("`key` under this dataset's `preprocess`"). The workflow's messages name the config
(:func:`config_hint`); :func:`scembed.pp.book` names its keywords."""


def config_hint(key: str, value: object) -> str:
    """A ``preprocess`` setting as the config's key under the dataset (the workflow's)."""
    if value is None:
        return f"`{key}` under this dataset's `preprocess`"
    return f"set `preprocess: {{{key}: {value}}}` under this dataset"


def sentence(text: str) -> str:
    """``text`` starting with a capital, to open a sentence."""
    return text[:1].upper() + text[1:]


def count_variance(X) -> np.ndarray:
    """Variance of each gene's raw counts across cells (population variance, ddof=0).

    Sparse counts are summed from their stored values a block of cells at a time, in
    float64: no dense or squared copy of the matrix, memory beyond it bounded by the
    block."""
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        total = np.zeros(X.shape[1])
        total_sq = np.zeros(X.shape[1])
        for start in range(0, X.shape[0], MOMENT_ROWS):
            lo, hi = X.indptr[start], X.indptr[min(start + MOMENT_ROWS, X.shape[0])]
            values = X.data[lo:hi].astype(np.float64)
            columns = X.indices[lo:hi]
            total += np.bincount(columns, weights=values, minlength=X.shape[1])
            total_sq += np.bincount(columns, weights=values * values, minlength=X.shape[1])
        mean = total / X.shape[0]
        return total_sq / X.shape[0] - mean**2
    X = np.asarray(X, dtype=np.float64)
    return X.var(axis=0)


def select_genes(
    adata: ad.AnnData, n_top_genes: int, method: str = "variance", hint: Hint = config_hint
) -> np.ndarray:
    """Indices (sorted) of the genes kept: top raw-count variance (book) or seurat_v3.
    ``hint`` phrases the fix of an error (:data:`Hint`)."""
    if n_top_genes > adata.n_vars:
        raise DataError(
            f"n_top_genes is {n_top_genes} but the dataset has only {adata.n_vars} genes. "
            f"{sentence(hint('n_top_genes', adata.n_vars))}."
        )
    if method == "variance":
        variance = count_variance(adata.X)
        top = np.argsort(-variance, kind="stable")[:n_top_genes]
    elif method == "seurat_v3":
        top = np.flatnonzero(seurat_v3_genes(adata, n_top_genes, hint))
    else:
        raise DataError(f"unknown gene_selection {method!r}; use 'variance' or 'seurat_v3'.")
    return np.sort(top)


def seurat_v3_genes(adata: ad.AnnData, n_top_genes: int, hint: Hint = config_hint) -> np.ndarray:
    """scanpy's seurat_v3 selection (boolean mask of the genes kept).

    Its loess fit of log variance on log mean fails as singular on some shallow data
    (worm_neuron: 246 counts per cell, most genes seen in a handful of cells; a known
    scanpy issue). The fit is then retried with a wider span (SEURAT_V3_SPANS), which the
    log reports; if every span fails, a DataError names the fix."""
    for span in SEURAT_V3_SPANS:
        try:
            hvg = sc.pp.highly_variable_genes(
                adata, flavor="seurat_v3", n_top_genes=n_top_genes, inplace=False, span=span
            )
        except ValueError as error:  # the loess fit (skmisc) raises a bare ValueError
            failure = error
            log.warning("seurat_v3: the loess fit with span %s failed (%s)", span, error)
            continue
        if span != SEURAT_V3_SPANS[0]:
            log.warning(
                "seurat_v3: genes selected with the loess span %s instead of %s",
                span,
                SEURAT_V3_SPANS[0],
            )
        return hvg["highly_variable"].to_numpy()
    raise DataError(
        f"gene_selection seurat_v3 failed on these counts with every loess span "
        f"{list(SEURAT_V3_SPANS)} ({failure}); {hint('gene_selection', 'variance')}."
    )


def split_cells(
    n_cells: int, validation_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """One random train/validation/test assignment (numpy RandomState, as in the book)."""
    order = np.random.RandomState(seed).permutation(n_cells)
    sizes = split_sizes(n_cells, validation_fraction, test_fraction)
    n_validation, n_test = sizes["validation"], sizes["test"]
    split = np.full(n_cells, "train", dtype=object)
    split[order[:n_validation]] = "validation"
    split[order[n_validation : n_validation + n_test]] = "test"
    return split


def keep_batches(adata: ad.AnnData, key: str, before: set[str]) -> None:
    """After the cell filter: keep the batch column ``key`` as categories of the batches
    left, saying which of the batches ``before`` it lost every cell of, and drop
    ``uns["batch_key"]`` (with a log line) when a single batch is left."""
    batches = adata.obs[key].astype(str)
    kept = sorted(batches.unique())
    lost = sorted(before - set(kept))
    if lost:
        log.warning(
            "the cell filter (min_genes) dropped every cell of the batch(es) %s of %r",
            lost,
            key,
        )
    adata.obs[key] = pd.Categorical(batches.to_numpy(), categories=kept)
    if len(kept) < 2:
        del adata.uns["batch_key"]
        log.warning(
            "after the cell filter (min_genes) the batch column %r holds a single batch "
            "(%r): the integration (batch) scores are skipped and uns['batch_key'] is "
            "removed",
            key,
            kept[0],
        )


def preprocess(
    raw: ad.AnnData | str | os.PathLike,
    *,
    gene_selection: str,
    n_top_genes: int,
    min_genes: int,
    target_sum: float,
    log1p: bool,
    validation_fraction: float,
    test_fraction: float,
    split_seed: int,
    hint: Hint = config_hint,
) -> ad.AnnData:
    """Select genes, drop sparse cells, keep counts in ``layers["counts"]``, log-normalise X.

    The parameters are the config's ``preprocess`` keys (their defaults live in the
    schema, scembed/schemas/config.schema.yaml). The order is the book's: genes are chosen
    on all cells, then cells with fewer than ``min_genes`` expressed kept genes are
    dropped (and, whatever ``min_genes``, cells without any count in the kept genes: a
    cell of total 0 cannot be normalised), then the split is drawn. Every obs column and
    ``uns`` entry of ``raw`` is kept, the batch column of ``uns["batch_key"]`` included
    (:func:`keep_batches`). ``hint`` phrases the fixes in the errors and the log
    (:data:`Hint`: the config's keys by default).

    ``raw`` is freed once the genes are chosen when the caller keeps no reference to it:
    no name, and no call with ``**params`` (in CPython 3.11 such a call's argument tuple
    holds it until the function returns). Given as a path (an ``.h5ad`` file, as the
    workflow's job does), it is read here, so no caller can hold it.
    """
    if not isinstance(raw, ad.AnnData):
        raw = ad.read_h5ad(raw)
    genes = select_genes(raw, n_top_genes, gene_selection, hint)
    adata = raw[:, genes].copy()
    # The caller passes the only reference; the view above holds it in a reference
    # cycle (anndata's), so it is collected here rather than at some later collection.
    del raw
    gc.collect()
    adata.X = sp.csr_matrix(adata.X)
    adata.X.eliminate_zeros()
    expressed = np.diff(adata.X.indptr)  # stored non-zeros per cell, no boolean copy
    keep = expressed >= max(min_genes, 1)
    if keep.sum() < MIN_CELLS:
        raise DataError(
            f"only {int(keep.sum())} of {adata.n_obs} cells have at least "
            f"{max(min_genes, 1)} expressed genes among the {len(genes)} kept genes, and "
            f"the workflow needs at least {MIN_CELLS}. Lower `min_genes` or raise "
            f"{hint('n_top_genes', None)}, or use more cells."
        )
    dropped = int(adata.n_obs - keep.sum())
    if dropped > DROP_WARNING * adata.n_obs:
        log.warning(
            "%d of %d cells (%.0f%%) have fewer than %d expressed genes among the %d kept "
            "(%s selection) and are dropped; lower %s to keep them",
            dropped,
            adata.n_obs,
            100 * dropped / adata.n_obs,
            max(min_genes, 1),
            len(genes),
            gene_selection,
            hint("min_genes", None),
        )
    batch_key = batch_key_of(adata)
    batches_before = set(adata.obs[batch_key].astype(str)) if batch_key else set()
    adata = adata[keep].copy()
    adata.obs["n_genes_expressed"] = expressed[keep]
    if batch_key:
        keep_batches(adata, batch_key, batches_before)
    counts = adata.X
    adata.layers["counts"] = counts
    # X shares the counts' sparsity pattern (indices, indptr): only the values are new
    adata.X = sp.csr_matrix(
        (counts.data.astype(np.float32), counts.indices, counts.indptr), shape=counts.shape
    )
    sc.pp.normalize_total(adata, target_sum=target_sum)
    if log1p:
        sc.pp.log1p(adata)
    split = split_cells(adata.n_obs, validation_fraction, test_fraction, split_seed)
    if (split == "train").sum() < 2 or (split == "validation").sum() < 1:
        raise DataError(
            f"{adata.n_obs} cells are too few to split into train and validation; "
            "use more cells or a larger `validation_fraction`."
        )
    adata.obs["split"] = split
    adata.obs["split"] = adata.obs["split"].astype("category")
    adata.uns["preprocess"] = {
        "gene_selection": gene_selection,
        "n_top_genes": n_top_genes,
        "min_genes": min_genes,
        "target_sum": target_sum,
        "log1p": log1p,
        "validation_fraction": validation_fraction,
        "test_fraction": test_fraction,
        "split_seed": split_seed,
        "cells_dropped": dropped,
    }
    return adata
