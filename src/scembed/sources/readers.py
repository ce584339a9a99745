"""Readers of the sources other than Zeisel's file: scanpy's pbmc68k, an h5ad file, 10x.

Each returns an AnnData of cells x genes counts with the cells' labels in ``obs``; the
counts are checked and put in the common layout by :func:`~scembed.sources.finishing.finish`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scembed.checks import (
    RAW_COUNTS_FIX,
    DataError,
    check_batches,
    check_counts,
    check_label_column,
    check_labels,
)


def read_pbmc68k(label_key: str = "bulk_labels") -> ad.AnnData:
    """Integer counts recovered from scanpy's ``pbmc68k_reduced`` (700 PBMCs, 765 genes).

    ``raw.X`` holds log1p(counts / n_counts x 1e4) rounded to 3 decimals, so
    round(expm1(raw.X) x n_counts / 1e4) gives back the counts.
    """
    import scanpy as sc

    pbmc = sc.datasets.pbmc68k_reduced()
    logged = pbmc.raw.X.toarray() if sp.issparse(pbmc.raw.X) else np.asarray(pbmc.raw.X)
    library = pbmc.obs["n_counts"].to_numpy(dtype=np.float64)[:, None]
    counts = np.rint(np.expm1(logged.astype(np.float64)) * library / 1e4)
    obs = pbmc.obs.copy()
    return ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=pbmc.raw.var_names.copy()))


def read_h5ad(path: str, counts_layer: str = "X") -> ad.AnnData:
    """A user's AnnData file; counts from ``X``, from ``layers[counts_layer]`` or, with
    ``counts_layer: raw`` (and no layer of that name), from ``.raw.X`` with ``.raw``'s
    genes. When the chosen matrix holds no counts, the error says where counts are."""
    try:
        adata = ad.read_h5ad(path)
    except Exception as err:  # h5py, anndata and OS errors alike: a file we cannot use
        raise DataError(
            f"{path}: cannot be read as an AnnData file ({type(err).__name__}: {err}). It "
            "is truncated, damaged or not an .h5ad file: copy or write it again "
            "(adata.write_h5ad), or check the dataset's `path`."
        ) from err
    matrices = count_matrices(adata)
    if counts_layer not in matrices:
        raw = " (`raw` reads .raw.X; this file has no .raw)" if counts_layer == "raw" else ""
        raise DataError(
            f"{path}: there is no layer {counts_layer!r}{raw}; the layers are "
            f"{list(adata.layers.keys())}. Set `counts_layer` to one of them, or `X`"
            + (", or `raw` for .raw.X." if "raw" in matrices else ".")
        )
    name, X, var_names = matrices[counts_layer]
    where = path if counts_layer == "X" else f"{path} ({name})"

    def fix(found: str) -> str:
        return (
            f"{name} looks normalised or transformed; the integer counts are in "
            f"{matrices[found][0]}: set `counts_layer: {found}` for this dataset."
        )

    check_count_matrix(matrices, counts_layer, where, fix)
    return ad.AnnData(X=X, obs=adata.obs.copy(), var=pd.DataFrame(index=var_names))


def count_matrices(adata: ad.AnnData) -> dict:
    """``counts_layer`` value -> (description, matrix, gene names) of every matrix of an
    h5ad file that can hold the counts: ``X``, each layer, and ``raw`` for ``.raw.X``
    (unless a layer is called "raw")."""
    matrices = {"X": ("X", adata.X, adata.var_names)}
    for key in adata.layers:
        matrices[key] = (f"layers[{key!r}]", adata.layers[key], adata.var_names)
    if adata.raw is not None and "raw" not in matrices:
        matrices["raw"] = (".raw.X", adata.raw.X, adata.raw.var_names)
    return matrices


def check_count_matrix(
    matrices: dict,
    key: str,
    where: str,
    fix_found: Callable[[str], str],
    fix: str = RAW_COUNTS_FIX,
) -> None:
    """Check that ``matrices[key]`` (of :func:`count_matrices`) holds the counts, as
    :func:`~scembed.checks.check_counts` does, naming ``where`` and ending with ``fix``.
    When it does not but another of ``matrices`` does, the DataError ends
    with ``fix_found(that key)`` instead: where the counts are, and how to read them."""
    X = matrices[key][1]
    try:
        check_counts(X, where, fix=fix)
    except DataError:
        found = [k for k, (_, M, _) in matrices.items() if k != key and holds_counts(M)]
        if not found:
            raise
        check_counts(X, where, fix=fix_found(found[0]))


def holds_counts(X) -> bool:
    """True when ``X`` is a matrix of non-negative integers that are not all zero."""
    if X is None or not hasattr(X, "shape") or len(X.shape) != 2:
        return False
    try:
        check_counts(X, "")
    except DataError:
        return False
    return bool((X != 0).sum() > 0)


def read_10x(path: str, labels: str, label_key: str, batch_key: str | None = None) -> ad.AnnData:
    """A 10x ``.h5`` file or matrix folder, with labels (and, with ``batch_key``, the
    batches) from columns of a barcode TSV (with header). The labels and batches are
    checked on the cells of the 10x file, and the messages name the TSV."""
    adata = read_10x_counts(path)
    table = pd.read_csv(labels, sep="\t", index_col=0, dtype=str)
    check_label_column(table, label_key, labels)
    table = table[table[label_key].notna()]  # cells without a label are dropped
    shared = adata.obs_names.intersection(table.index)
    if len(shared) == 0:
        raise DataError(
            f"{labels}: none of its barcodes (e.g. {list(table.index[:3])}) are cells of "
            f"{path} (e.g. {list(adata.obs_names[:3])}). The first column must hold the "
            "barcodes exactly as in the 10x file."
        )
    check_labels(table.loc[shared], label_key, labels)
    if batch_key is not None:
        check_batches(table.loc[shared], batch_key, label_key, labels)
    adata = adata[shared].copy()
    adata.obs[label_key] = table.loc[shared, label_key].to_numpy()
    if batch_key is not None:
        adata.obs[batch_key] = table.loc[shared, batch_key].to_numpy()
    return adata


TENX_FILES = {  # Cell Ranger v3+ and v2 matrix folders, as scanpy reads them
    "v3": ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"),
    "v2": ("matrix.mtx", "genes.tsv", "barcodes.tsv"),
}


def read_10x_counts(path: str) -> ad.AnnData:
    """The counts of a 10x ``.h5`` file or matrix folder; a missing, truncated or damaged
    file is a :class:`DataError` naming it. Gene names are left as they are (duplicates
    are made unique, with a log line, on import)."""
    import scanpy as sc

    folder = Path(path)
    if str(path).endswith(".h5"):
        what, read = "a 10x .h5 file", sc.read_10x_h5
    elif folder.is_dir():
        layout = "v2" if (folder / "genes.tsv").is_file() else "v3"
        missing = [name for name in TENX_FILES[layout] if not (folder / name).is_file()]
        if missing:
            raise DataError(
                f"{path}: the 10x matrix folder lacks {', '.join(missing)} (a Cell Ranger "
                f"{layout} folder holds {', '.join(TENX_FILES[layout])}). Copy the whole "
                "filtered_feature_bc_matrix folder from Cell Ranger's outs/ again, or set "
                "`path` to its filtered_feature_bc_matrix.h5."
            )
        what = f"a 10x matrix folder ({', '.join(TENX_FILES[layout])})"

        def read(p):
            return sc.read_10x_mtx(p, make_unique=False)
    else:
        raise DataError(
            f"{path}: a 10x source needs a .h5 file or a matrix folder, and this is neither. "
            "Set `path` to Cell Ranger's filtered_feature_bc_matrix.h5 or to its "
            "filtered_feature_bc_matrix folder."
        )
    try:
        return read(path)
    except Exception as err:  # h5py, gzip, scipy.io, pandas: any of them means damaged
        raise DataError(
            f"{path}: cannot be read as {what} ({type(err).__name__}: {err}). A file is "
            "truncated, damaged or not Cell Ranger output: copy it again from Cell "
            "Ranger's outs/ folder (or check the dataset's `path`)."
        ) from err
