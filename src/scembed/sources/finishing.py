"""The steps every reader's output goes through: checks, the common layout, provenance."""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scembed.batches import confounding_warning
from scembed.checks import DataError, check_batches, check_counts, check_labels, normalise_labels

# One logger for the whole package: what an import logs is found under one name.
log = logging.getLogger("scembed.sources")


def finish(
    adata: ad.AnnData,
    label_key: str,
    where: str,
    provenance: dict,
    batch_key: str | None = None,
) -> ad.AnnData:
    """Check counts, labels and batches, store them in the common layout and record
    provenance.

    Cells without any count are dropped (refused when every cell is empty); genes without
    any count are kept (gene selection ranks them last). Duplicated cell or gene names are
    made unique (:func:`make_names_unique`). Each of these says so in the log. The batch
    column, when ``batch_key`` names one, is recorded by :func:`record_batches`.
    """
    check_labels(adata.obs, label_key, where)
    if batch_key is not None:
        check_batches(adata.obs, batch_key, label_key, where)
    check_counts(adata.X, where)
    X = sp.csr_matrix(adata.X)
    if not np.issubdtype(X.dtype, np.integer):  # integer counts are kept without a copy
        X.data = np.rint(X.data)
    dtype = np.int64 if X.data.size and X.data.max() > 2**31 - 1 else np.int32
    adata.X = X if X.dtype == dtype else X.astype(dtype)
    adata.X.eliminate_zeros()
    n_cells = adata.n_obs
    adata = drop_empty_cells(adata, where)
    if adata.n_obs < n_cells:
        check_labels(adata.obs, label_key, where)  # the empty cells may have held a type
    empty_genes = int((adata.X.getnnz(axis=0) == 0).sum())
    if empty_genes:
        log.info(
            "%s: %d of %d genes have no count in any cell; kept (gene selection ranks them last)",
            where,
            empty_genes,
            adata.n_vars,
        )
    adata.obs[label_key] = normalise_labels(adata.obs[label_key])
    if batch_key is not None:
        record_batches(adata, batch_key, label_key, where)
    make_names_unique(adata, where)
    adata.uns["label_key"] = label_key
    adata.uns["provenance"] = {
        **provenance,
        "imported": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return adata


def record_batches(adata: ad.AnnData, batch_key: str, label_key: str, where: str) -> None:
    """Keep a checked batch column of two or more batches as strings and name it in
    ``uns["batch_key"]``, warning when batch and labels are confounded. A single batch is
    left as it is, without ``uns["batch_key"]``: there is nothing to integrate."""
    batches = adata.obs[batch_key].astype(str)
    sizes = batches.value_counts().sort_index()
    if len(sizes) < 2:
        log.warning(
            "%s: the batch column %r holds a single batch (%r): the integration (batch) "
            "scores are skipped and uns['batch_key'] is not set",
            where,
            batch_key,
            sizes.index[0],
        )
        return
    adata.obs[batch_key] = pd.Categorical(batches.to_numpy())
    adata.uns["batch_key"] = batch_key
    shown = dict(list(sizes.items())[:10])
    more = f" and {len(sizes) - 10} more" if len(sizes) > 10 else ""
    log.info("%s: %d batches in %r (cells: %s%s)", where, len(sizes), batch_key, shown, more)
    scored = adata.obs[label_key].notna().to_numpy()
    warning = confounding_warning(
        adata.obs[label_key][scored].astype(str), batches[scored], batch_key, label_key
    )
    if warning:
        log.warning("%s: %s", where, warning)


def drop_empty_cells(adata: ad.AnnData, where: str) -> ad.AnnData:
    """``adata`` (CSR counts) without its cells of total count 0, with a log line; a
    matrix without any count is refused."""
    empty = adata.X.getnnz(axis=1) == 0
    if empty.all():
        raise DataError(
            f"{where}: every one of the {adata.n_obs} cells ({adata.n_vars} genes) has zero "
            "counts: the matrix is empty. Check that `path` is the file you meant (and, "
            "for an h5ad file, that `counts_layer` names the layer of the counts)."
        )
    if not empty.any():
        return adata
    log.warning(
        "%s: dropped %d of %d cells without any count (e.g. %s)",
        where,
        int(empty.sum()),
        adata.n_obs,
        list(adata.obs_names[empty][:3]),
    )
    return adata[~empty].copy()


def make_names_unique(adata: ad.AnnData, where: str) -> None:
    """Make duplicated cell and gene names unique, in place, saying how many in the log.

    Gene symbols are often duplicated (one symbol, several Ensembl ids); the copies get
    anndata's suffixes ``-1``, ``-2``... in the order they appear, so that every gene
    and cell can be told apart downstream.
    """
    for axis, names, make_unique in (
        ("cell", adata.obs_names, adata.obs_names_make_unique),
        ("gene", adata.var_names, adata.var_names_make_unique),
    ):
        repeated = names[names.duplicated(keep=False)].unique()
        if len(repeated) == 0:
            continue
        extra = int(names.duplicated().sum())
        make_unique()
        log.warning(
            "%s: %d %s names occur more than once (%d extra copies, e.g. %s); the copies "
            "are renamed NAME-1, NAME-2, ... to make every %s name unique",
            where,
            len(repeated),
            axis,
            extra,
            list(map(str, repeated[:3])),
            axis,
        )


def file_provenance(path: str | os.PathLike, sha256: str | None = None) -> dict:
    """SHA-256 and size of a file (or of every file in a folder), checked when pinned."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. Check the dataset's `path`.")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    size = 0
    for f in files:
        with open(f, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    actual = digest.hexdigest()
    if sha256 and actual.lower() != sha256.lower():
        raise DataError(
            f"{path}: SHA-256 {actual} does not match the pinned sha256 {sha256}. "
            "The file changed or is not the one you meant; fix the file or the `sha256`."
        )
    return {"path": str(path), "sha256": actual, "bytes": size}
