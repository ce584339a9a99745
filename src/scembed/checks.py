"""Checks of the data, shared by the sources, preprocessing and the VAE: the counts, the
labels, the batches and the cells a run needs.

:class:`DataError` is input data that cannot be used as it is; every message names the
problem and the fix. The checks of a config and its plan (before any job) are in
:mod:`scembed.config_checks`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


class DataError(ValueError):
    """Input data that cannot be used as it is; the message names the problem and the fix."""


RAW_COUNTS_FIX = (
    "Point the dataset at raw UMI counts (for an h5ad file, set `counts_layer` to the layer "
    "that holds them)."
)
_CHECK_ROWS = 4096  # rows per chunk when checking dense counts (bounded extra memory)


def check_counts(X, where: str, fix: str = RAW_COUNTS_FIX) -> None:
    """Fail unless ``X`` holds finite, non-negative integers; name the first bad value.

    "First" is in cell (row-major) order, whatever the matrix layout; ``fix`` ends the
    message with what the user should do.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X)  # X.data of CSC/COO is not in cell order
        bad = np.flatnonzero(_bad_counts(X.data))
        if not bad.size:
            return
        k = int(bad[0])
        row, col = int(np.searchsorted(X.indptr, k, side="right") - 1), int(X.indices[k])
        value = X.data[k].item()
    else:
        X = np.asarray(X)
        for start in range(0, X.shape[0], _CHECK_ROWS):
            bad = np.argwhere(_bad_counts(X[start : start + _CHECK_ROWS]))
            if bad.size:
                row, col = start + int(bad[0][0]), int(bad[0][1])
                value = X[row, col].item()
                break
        else:
            return
    if not np.isfinite(value):
        problem = "is not finite"
    elif value < 0:
        problem = "is negative"
    else:
        problem = "is not an integer"
    raise DataError(
        f"{where}: the counts must be non-negative integers, but the value {value!r} at "
        f"cell {row}, gene {col} {problem}. {fix}"
    )


def _bad_counts(values: np.ndarray) -> np.ndarray:
    if np.issubdtype(values.dtype, np.integer) or values.dtype == bool:
        return values < 0
    if not np.issubdtype(values.dtype, np.floating):
        raise DataError(f"the counts must be numbers, not {values.dtype}.")
    return ~np.isfinite(values) | (values < 0) | (values != np.round(values))


def check_label_column(obs: pd.DataFrame, label_key: str, where: str) -> None:
    """Fail unless ``obs`` has the label column (listing the columns that exist) and it
    holds at least one label."""
    if label_key not in obs.columns:
        raise DataError(
            f"{where}: there is no label column {label_key!r}; the columns are "
            f"{list(map(str, obs.columns))}. Set `label_key` to one of them."
        )
    if not labelled(obs[label_key]).any():
        raise DataError(
            f"{where}: the label column {label_key!r} has no labels (every value is missing "
            "or empty). Set `label_key` to a column that holds the cell types."
        )


def check_labels(obs: pd.DataFrame, label_key: str, where: str) -> None:
    """Fail unless ``obs`` has the label column (listing the columns that exist) with at
    least two distinct labels, and not one label per cell (:func:`per_cell`)."""
    check_label_column(obs, label_key, where)
    values = obs[label_key][labelled(obs[label_key])].astype(str)
    distinct = values.unique()
    if len(distinct) < 2:
        raise DataError(
            f"{where}: the label column {label_key!r} holds a single value ({distinct[0]!r}): "
            "ARI, NMI and every other score against one label mean nothing. Set "
            "`label_key` to a column with at least two cell types."
        )
    if per_cell(len(distinct), len(values)):
        raise DataError(
            f"{where}: the label column {label_key!r} holds {len(distinct)} distinct values "
            f"in {len(values)} labelled cells (e.g. {list(distinct[:3])}): a value per cell, "
            "like a barcode or cell id, not cell types; the scores need several cells of "
            f"each type. Set `label_key` to a column of cell types; "
            f"{describe_candidates(label_columns(obs, exclude=label_key))}."
        )


MAX_TYPES = 100
"""The most distinct values of a column that :func:`label_columns` proposes as labels."""
PER_CELL_MIN_LABELS = 50


def per_cell(n_labels: int, n_cells: int) -> bool:
    """Whether ``n_labels`` distinct values in ``n_cells`` labelled cells are a value per
    cell (barcodes, cell ids) rather than cell types: as many values as cells, or more
    than 50 values and more than half as many as cells. Real cell-type columns (up to a
    few hundred types in 10^4 cells and more) never come near it."""
    return n_labels >= n_cells or (n_labels > PER_CELL_MIN_LABELS and 2 * n_labels > n_cells)


def label_columns(obs: pd.DataFrame, exclude: str | None = None) -> list[tuple[str, int]]:
    """(name, distinct values) of the columns of ``obs`` that look like cell types: text,
    categories or integers with 2 to :data:`MAX_TYPES` distinct values, not one per cell."""
    found = []
    for name in obs.columns:
        column = obs[name]
        if name == exclude or pd.api.types.is_bool_dtype(column):
            continue
        if pd.api.types.is_float_dtype(column) or pd.api.types.is_complex_dtype(column):
            continue  # measurements (n_counts, percent_mito, scores), not types
        values = column[labelled(column)].astype(str)
        n_values = values.nunique()
        if 2 <= n_values <= MAX_TYPES and not per_cell(n_values, len(values)):
            found.append((str(name), int(n_values)))
    return found


def describe_candidates(columns: list[tuple[str, int]], what: str = "cell types") -> str:
    """The candidate label (or batch) columns for a message."""
    if not columns:
        return (
            f"no column here has 2 to {MAX_TYPES} distinct values, as a column of {what} "
            f"would: add the {what} to the file"
        )
    listed = ", ".join(f"{name!r} ({n} values)" for name, n in columns)
    return f"the columns that look like {what} are {listed}"


def check_batches(obs: pd.DataFrame, batch_key: str, label_key: str, where: str) -> None:
    """Fail unless ``obs`` has the batch column (listing the columns that exist), other
    than the label column, with a batch for every cell."""
    if batch_key == label_key:
        raise DataError(
            f"{where}: `batch_key` and `label_key` both name the column {batch_key!r}: the "
            "batch must be another column than the cell types (a sample, donor, plate or "
            "run). Set `batch_key` to that column, or remove `batch_key`."
        )
    if batch_key not in obs.columns:
        raise DataError(
            f"{where}: there is no batch column {batch_key!r}; the columns are "
            f"{list(map(str, obs.columns))}. Set `batch_key` to one of them, or remove "
            "`batch_key` from the dataset to run without batches."
        )
    missing = ~labelled(obs[batch_key])
    if missing.any():
        raise DataError(
            f"{where}: {int(missing.sum())} of {len(missing)} cells have no batch in the "
            f"column {batch_key!r} (missing or empty, e.g. cells "
            f"{list(map(str, obs.index[missing][:3]))}): every cell needs one. Fill them "
            "in (a batch of their own, such as 'unknown', is a batch like any other) or "
            "drop those cells from the file."
        )
    values = obs[batch_key].astype(str)
    n_batches = values.nunique()
    if per_cell(n_batches, len(values)):
        others = [c for c in label_columns(obs, exclude=batch_key) if c[0] != label_key]
        raise DataError(
            f"{where}: the batch column {batch_key!r} holds {n_batches} distinct values in "
            f"{len(values)} cells (e.g. {list(values.unique()[:3])}): a value per cell, like "
            "a barcode or cell id, not batches; Harmony, the VAE's batch covariate and the "
            "integration scores need several cells in each batch. Set `batch_key` to a "
            f"column of samples, donors, plates or runs; "
            f"{describe_candidates(others, 'batches')}."
        )


def labelled(labels: pd.Series) -> np.ndarray:
    """True for the cells that have a label: not missing (NaN/None) and not blank."""
    blank = labels.astype(str).str.strip() == ""
    return (labels.notna() & ~blank).to_numpy()


def normalise_labels(labels: pd.Series) -> pd.Categorical:
    """Labels as strings in a categorical; a missing or blank label stays missing (NaN),
    so that an unlabelled cell is never scored as a cell type named "nan"."""
    return pd.Categorical(labels.astype(str).where(labelled(labels)).to_numpy())


# --------------------------------------------------------------------------- cell counts

MIN_CELLS = 10  # preprocess refuses to go on with fewer kept cells


def split_sizes(n_cells: int, validation_fraction: float, test_fraction: float) -> dict:
    """Cells of each split for ``n_cells`` cells (the arithmetic of ``split_cells``)."""
    n_validation = int(round(validation_fraction * n_cells))
    n_test = int(round(test_fraction * n_cells))
    return {
        "train": n_cells - n_validation - n_test,
        "validation": n_validation,
        "test": n_test,
    }
