"""Checks of the data, shared by the sources, preprocessing and the VAE: the counts, the
labels and the cells a run needs.

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


def check_labels(obs: pd.DataFrame, label_key: str, where: str) -> None:
    """Fail unless ``obs`` has the label column (listing the columns that exist) with at
    least two distinct labels."""
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
    values = obs[label_key][labelled(obs[label_key])].astype(str).unique()
    if len(values) < 2:
        raise DataError(
            f"{where}: the label column {label_key!r} holds a single value ({values[0]!r}): "
            "ARI, NMI and every other score against one label mean nothing. Set "
            "`label_key` to a column with at least two cell types."
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
