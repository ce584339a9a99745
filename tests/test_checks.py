"""Checks of the data (scembed.checks): the counts' check, labels kept missing, the split's
arithmetic.

The label column checks are tested through the import (test_sources_finishing.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scembed.checks import DataError, check_counts, labelled, normalise_labels, split_sizes
from scembed.preprocess import split_cells

# --------------------------------------------------------------------------- check_counts


def bad_counts(value, row=2, col=3):
    X = np.arange(20, dtype=np.float64).reshape(4, 5) % 4  # zeros, some explicit
    X[row, col] = value
    return X


@pytest.mark.parametrize(
    ("value", "problem"),
    [(0.5, "is not an integer"), (-2.0, "is negative"), (np.nan, "is not finite"),
     (np.inf, "is not finite"), (-np.inf, "is not finite")],
)  # fmt: skip
@pytest.mark.parametrize("layout", ["dense", "csr", "csc", "coo"])
def test_check_counts_names_file_value_and_position(value, problem, layout):
    X = bad_counts(value)
    X = {"dense": np.asarray, "csr": sp.csr_matrix, "csc": sp.csc_matrix}.get(
        layout, sp.coo_matrix
    )(X)
    with pytest.raises(DataError) as err:
        check_counts(X, "/data/counts.h5ad")
    message = str(err.value)
    assert message.startswith("/data/counts.h5ad: ")
    assert f"value {float(value)!r} at cell 2, gene 3 {problem}" in message


def test_check_counts_reports_the_first_offending_value():
    X = bad_counts(1.5, row=3, col=0)
    X[1, 4] = 7.25  # comes first in row-major (cell) order
    for matrix in (X, sp.csr_matrix(X), sp.csc_matrix(X)):
        with pytest.raises(DataError, match=r"value 7\.25 at cell 1, gene 4"):
            check_counts(matrix, "x")


def test_check_counts_accepts_integer_counts():
    X = np.arange(20).reshape(4, 5)
    check_counts(X, "x")
    check_counts(sp.csr_matrix(X.astype(np.float32)), "x")
    check_counts(sp.csr_matrix((3, 3)), "empty")


def test_check_counts_reports_the_first_value_whatever_its_problem():
    X = bad_counts(np.nan, row=2, col=3)
    X[1, 1] = -3.0  # a negative value before the NaN in cell order
    for matrix in (X, sp.csr_matrix(X)):
        with pytest.raises(DataError, match=r"value -3\.0 at cell 1, gene 1 is negative"):
            check_counts(matrix, "x")


# --------------------------------------------------------------------------- labels, split


def test_labelled_and_normalise_labels_keep_missing_and_blank_labels_missing():
    labels = pd.Series(["B", np.nan, "  ", "", 7, None, "a"], dtype=object)
    assert labelled(labels).tolist() == [True, False, False, False, True, False, True]
    normalised = normalise_labels(labels)
    assert list(normalised.categories) == ["7", "B", "a"]  # no "nan" or "None" type
    assert pd.isna(normalised).tolist() == [False, True, True, True, False, True, False]


def test_split_sizes_are_those_of_the_split():
    for n, v, t in [(15, 0.1, 0.05), (600, 0.1, 0.05), (11, 0.3, 0.2), (1000, 0.5, 0.5)]:
        split = split_cells(n, v, t, 0)
        assert split_sizes(n, v, t) == {k: int((split == k).sum()) for k in split_sizes(n, v, t)}
