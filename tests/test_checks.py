"""Checks of the data (scembed.checks): the counts' check, labels kept missing, the rule
that tells a column of a value per cell from cell types, the batch column, the split's
arithmetic.

The label and batch checks are tested through the import too (test_sources_finishing.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scembed.checks import (
    DataError,
    check_batches,
    check_counts,
    check_labels,
    label_columns,
    labelled,
    normalise_labels,
    per_cell,
    split_sizes,
)
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


# --------------------------------------------------------------------------- a value per cell


@pytest.mark.parametrize(
    ("n_labels", "n_cells", "expected"),
    [
        (2, 2, True),  # two cells, two values: one per cell
        (300, 300, True),  # barcodes
        (51, 100, True),  # more than 50 values, more than half the cells
        (356, 700, True),  # pbmc68k's n_genes column
        (50, 60, False),  # few values: types, however few cells
        (51, 102, False),  # exactly half the cells
        (7, 3005, False),  # Zeisel's level1class
        (47, 3005, False),  # Zeisel's level2class
        (400, 10_000, False),  # a fine atlas annotation
        (3000, 1_000_000, False),
    ],
)
def test_per_cell_tells_a_value_per_cell_from_cell_types(n_labels, n_cells, expected):
    assert per_cell(n_labels, n_cells) is expected


def test_a_fine_annotation_of_many_types_passes_check_labels():
    """400 types in 20,000 cells (an atlas' finest level) are cell types, not cell ids."""
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"cell_type": [f"type{t}" for t in rng.integers(0, 400, 20_000)]})
    check_labels(obs, "cell_type", "atlas.h5ad")


def test_label_columns_are_text_categories_or_integers_of_a_few_values():
    n = 300
    obs = pd.DataFrame(
        {
            "barcode": [f"AAC{i:05d}" for i in range(n)],  # one per cell
            "cell_type": pd.Categorical([f"t{i % 5}" for i in range(n)]),
            "leiden": np.arange(n) % 12,  # integer clusters
            "n_counts": np.arange(n) % 4 * 1.5,  # a measurement, even with few values
            "is_doublet": np.arange(n) % 2 == 0,
            "constant": ["x"] * n,
            "fine": [f"f{i % 150}" for i in range(n)],  # more than MAX_TYPES values
            "sparse": [f"s{i % 3}" if i < 10 else None for i in range(n)],  # missing aside
        }
    )
    assert label_columns(obs) == [("cell_type", 5), ("leiden", 12), ("sparse", 3)]
    assert label_columns(obs, exclude="cell_type") == [("leiden", 12), ("sparse", 3)]


def test_a_label_column_of_a_value_per_cell_names_the_columns_of_cell_types():
    obs = pd.DataFrame(
        {
            "cell_id": [f"cell{i}" for i in range(40)],
            "annotation": [f"t{i % 4}" for i in range(40)],
            "n_counts": np.linspace(100.0, 900.0, 40),
        }
    )
    with pytest.raises(DataError) as err:
        check_labels(obs, "cell_id", "cells.h5ad")
    message = str(err.value)
    assert message.startswith(
        "cells.h5ad: the label column 'cell_id' holds 40 distinct values in 40 labelled cells"
    )
    assert "['cell0', 'cell1', 'cell2']" in message and "barcode or cell id" in message
    assert "Set `label_key` to a column of cell types" in message
    assert "the columns that look like cell types are 'annotation' (4 values)." in message
    assert "n_counts" not in message


def test_a_value_per_cell_without_any_candidate_column_says_so():
    obs = pd.DataFrame({"cell_id": [f"c{i}" for i in range(30)], "umi": np.arange(30) * 2.0})
    with pytest.raises(DataError, match="no column here has 2 to 100 distinct values"):
        check_labels(obs, "cell_id", "x")


# --------------------------------------------------------------------------- the batch column


def test_check_batches_names_the_columns_when_the_batch_column_is_missing():
    obs = pd.DataFrame({"cell_type": ["a", "b"], "sample": ["s1", "s2"]})
    with pytest.raises(DataError) as err:
        check_batches(obs, "donor", "cell_type", "cells.h5ad")
    assert str(err.value) == (
        "cells.h5ad: there is no batch column 'donor'; the columns are ['cell_type', "
        "'sample']. Set `batch_key` to one of them, or remove `batch_key` from the dataset "
        "to run without batches."
    )


def test_check_batches_refuses_cells_without_a_batch_with_their_number():
    obs = pd.DataFrame(
        {"cell_type": ["a", "b"] * 5, "sample": ["s1", None, "s2", " ", "s1", np.nan] + ["s2"] * 4},
        index=[f"c{i}" for i in range(10)],
    )
    with pytest.raises(DataError) as err:
        check_batches(obs, "sample", "cell_type", "cells.h5ad")
    message = str(err.value)
    assert message.startswith("cells.h5ad: 3 of 10 cells have no batch in the column 'sample'")
    assert "['c1', 'c3', 'c5']" in message and "every cell needs one" in message
    obs.loc[["c1", "c3", "c5"], "sample"] = "unknown"
    check_batches(obs, "sample", "cell_type", "cells.h5ad")


def test_check_batches_refuses_a_column_with_a_value_per_cell_and_names_the_batch_columns():
    """A barcode column picked as batch_key would run Harmony on one-cell batches and a
    VAE with a one-hot as wide as the data; the only message was a confounding warning."""
    n = 200
    obs = pd.DataFrame(
        {
            "cell_type": np.repeat(["B", "T", "NK", "mono"], n // 4),
            "barcode": [f"AAAC{i:05d}-1" for i in range(n)],
            "donor": np.tile(["d1", "d2", "d3"], n)[:n],
            "n_counts": np.arange(n, dtype=float),
        }
    )
    with pytest.raises(DataError) as err:
        check_batches(obs, "barcode", "cell_type", "cells.h5ad")
    message = str(err.value)
    assert message.startswith(
        "cells.h5ad: the batch column 'barcode' holds 200 distinct values in 200 cells"
    )
    assert "a value per cell, like a barcode" in message
    assert "the columns that look like batches are 'donor' (3 values)." in message
    assert "cell_type" not in message.split("Set `batch_key`")[1]  # the labels are no batch
    check_batches(obs, "donor", "cell_type", "cells.h5ad")


def test_check_batches_refuses_the_label_column_as_batch():
    obs = pd.DataFrame({"cell_type": ["a", "b"]})
    with pytest.raises(DataError, match="`batch_key` and `label_key` both name the column"):
        check_batches(obs, "cell_type", "cell_type", "x")
