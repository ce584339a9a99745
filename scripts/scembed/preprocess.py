"""The book's preprocessing: gene selection on raw counts, cell filter, log-normalisation, split."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp

from scembed.checks import MIN_CELLS, DataError, split_sizes


def count_variance(X) -> np.ndarray:
    """Variance of each gene's raw counts across cells (population variance, ddof=0)."""
    if sp.issparse(X):
        mean = np.asarray(X.mean(axis=0)).ravel()
        mean_sq = np.asarray(X.multiply(X).mean(axis=0)).ravel()
        return mean_sq - mean**2
    X = np.asarray(X, dtype=np.float64)
    return X.var(axis=0)


def select_genes(adata: ad.AnnData, n_top_genes: int, method: str = "variance") -> np.ndarray:
    """Indices (sorted) of the genes kept: top raw-count variance (book) or seurat_v3."""
    if n_top_genes > adata.n_vars:
        raise DataError(
            f"n_top_genes is {n_top_genes} but the dataset has only {adata.n_vars} genes. "
            f"Set `preprocess: {{n_top_genes: {adata.n_vars}}}` under this dataset."
        )
    if method == "variance":
        variance = count_variance(sp.csr_matrix(adata.X, dtype=np.float64))
        top = np.argsort(-variance, kind="stable")[:n_top_genes]
    elif method == "seurat_v3":
        hvg = sc.pp.highly_variable_genes(
            adata, flavor="seurat_v3", n_top_genes=n_top_genes, inplace=False
        )
        top = np.flatnonzero(hvg["highly_variable"].to_numpy())
    else:
        raise DataError(f"unknown gene_selection {method!r}; use 'variance' or 'seurat_v3'.")
    return np.sort(top)


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


def preprocess(
    raw: ad.AnnData,
    *,
    gene_selection: str,
    n_top_genes: int,
    min_genes: int,
    target_sum: float,
    log1p: bool,
    validation_fraction: float,
    test_fraction: float,
    split_seed: int,
) -> ad.AnnData:
    """Select genes, drop sparse cells, keep counts in ``layers["counts"]``, log-normalise X.

    The parameters are the config's ``preprocess`` keys (their defaults live in the
    schema, config/schema/config.schema.yaml). The order is the book's: genes are chosen
    on all cells, then cells with fewer than ``min_genes`` expressed kept genes are
    dropped (and, whatever ``min_genes``, cells without any count in the kept genes: a
    cell of total 0 cannot be normalised), then the split is drawn.
    """
    genes = select_genes(raw, n_top_genes, gene_selection)
    adata = raw[:, genes].copy()
    adata.X = sp.csr_matrix(adata.X)
    expressed = np.asarray((adata.X > 0).sum(axis=1)).ravel()
    keep = expressed >= max(min_genes, 1)
    if keep.sum() < MIN_CELLS:
        raise DataError(
            f"only {int(keep.sum())} of {adata.n_obs} cells have at least "
            f"{max(min_genes, 1)} expressed genes among the {len(genes)} kept genes, and "
            f"the workflow needs at least {MIN_CELLS}. Lower `min_genes` or raise "
            "`n_top_genes` under this dataset's `preprocess`, or use more cells."
        )
    adata = adata[keep].copy()
    adata.obs["n_genes_expressed"] = expressed[keep]
    adata.layers["counts"] = adata.X.copy()
    adata.X = adata.X.astype(np.float32)
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
        "cells_dropped": int((~keep).sum()),
    }
    return adata
