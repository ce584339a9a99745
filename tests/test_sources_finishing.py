"""The steps every reader's output goes through (scembed.sources.finishing): duplicated
names made unique, cells without counts dropped, the label column checked and kept as
strings; each repair with a line in the log."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import labelled_h5ad, warnings_of
from test_sources_readers import H5AD

from scembed.checks import DataError
from scembed.sources import finish, load_dataset


def counts_adata(counts, cells=None, genes=None, labels=None) -> ad.AnnData:
    """AnnData of integer ``counts`` with a ``cell_type`` column (three types)."""
    n_cells, n_genes = counts.shape
    obs = pd.DataFrame(
        {"cell_type": labels if labels is not None else [f"t{i % 3}" for i in range(n_cells)]},
        index=cells if cells is not None else [f"c{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=genes if genes is not None else [f"g{j}" for j in range(n_genes)])
    return ad.AnnData(X=sp.csr_matrix(np.asarray(counts, dtype=np.int32)), obs=obs, var=var)


# --------------------------------------------------------------------------- names


def test_duplicated_gene_and_cell_names_are_made_unique_with_a_log_line(caplog):
    counts = np.arange(1, 31).reshape(6, 5)
    genes = ["Actb", "Gapdh", "Actb", "Cd3e", "Actb"]
    cells = ["AAA", "CCC", "AAA", "GGG", "TTT", "CCC"]
    with caplog.at_level(logging.INFO):
        adata = finish(counts_adata(counts, cells, genes), "cell_type", "cells.h5ad", {})
    assert list(adata.var_names) == ["Actb", "Gapdh", "Actb-1", "Cd3e", "Actb-2"]
    assert list(adata.obs_names) == ["AAA", "CCC", "AAA-1", "GGG", "TTT", "CCC-1"]
    np.testing.assert_array_equal(adata.X.toarray(), counts)  # nothing merged or lost
    messages = warnings_of(caplog)
    assert any(
        m.startswith("cells.h5ad: 1 gene names occur more than once (2 extra copies")
        and "['Actb']" in m
        for m in messages
    ), messages
    assert any("2 cell names occur more than once (2 extra copies" in m for m in messages)
    assert any("['AAA', 'CCC']" in m for m in messages)


def test_unique_names_leave_the_log_quiet(caplog):
    with caplog.at_level(logging.INFO):
        finish(counts_adata(np.ones((6, 4))), "cell_type", "cells.h5ad", {})
    assert not any("more than once" in m for m in warnings_of(caplog))


# --------------------------------------------------------------------------- empty cells, genes


def test_cells_without_counts_are_dropped_and_genes_without_counts_kept(caplog):
    counts = np.ones((9, 4), dtype=int)
    counts[[2, 5], :] = 0  # two empty cells
    counts[:, 1] = 0  # a gene never seen
    with caplog.at_level(logging.INFO):
        adata = finish(counts_adata(counts), "cell_type", "cells.h5ad", {})
    assert list(adata.obs_names) == ["c0", "c1", "c3", "c4", "c6", "c7", "c8"]
    assert adata.n_vars == 4
    messages = warnings_of(caplog)
    assert "cells.h5ad: dropped 2 of 9 cells without any count (e.g. ['c2', 'c5'])" in messages
    assert any("1 of 4 genes have no count in any cell; kept" in m for m in messages)


def test_a_matrix_without_any_count_is_refused():
    with pytest.raises(DataError) as err:
        finish(counts_adata(np.zeros((6, 4))), "cell_type", "cells.h5ad", {})
    message = str(err.value)
    assert message.startswith("cells.h5ad: every one of the 6 cells (4 genes) has zero counts")
    assert "`counts_layer`" in message


def test_empty_cells_that_held_a_type_leave_one_type_refused():
    counts = np.ones((6, 4), dtype=int)
    counts[[1, 4], :] = 0
    labels = ["B", "T", "B", "B", "T", "B"]  # every T cell is empty
    with pytest.raises(DataError, match="holds a single value \\('B'\\)"):
        finish(counts_adata(counts, labels=labels), "cell_type", "cells.h5ad", {})


# --------------------------------------------------------------------------- labels


def test_import_keeps_missing_labels_missing():
    rng = np.random.default_rng(0)
    labels = np.array(["t0", "t1", "t2"] * 100, dtype=object)
    labels[:30] = np.nan
    labels[30:35] = "  "  # blank counts as missing too
    obs = pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(300)])
    counts = sp.csr_matrix(rng.poisson(1.0, size=(300, 20)).astype(np.int32))
    adata = finish(ad.AnnData(X=counts, obs=obs), "cell_type", "test", {})
    column = adata.obs["cell_type"]
    assert list(column.cat.categories) == ["t0", "t1", "t2"]  # no "nan" type
    assert column.isna().sum() == 35


def test_a_label_column_with_no_label_at_all_is_refused():
    from scembed.checks import DataError

    obs = pd.DataFrame({"cell_type": [np.nan] * 5 + [""] * 5}, index=[f"c{i}" for i in range(10)])
    counts = sp.csr_matrix(np.ones((10, 3), dtype=np.int32))
    with pytest.raises(DataError, match="has no labels"):
        finish(ad.AnnData(X=counts, obs=obs), "cell_type", "test", {})


def test_a_label_column_with_a_single_value_is_refused():
    """One type (missing labels aside) gives ARI/NMI that mean nothing (issue 13)."""
    from scembed.checks import DataError

    obs = pd.DataFrame({"cell_type": ["B"] * 8 + [np.nan] * 2}, index=[f"c{i}" for i in range(10)])
    counts = sp.csr_matrix(np.ones((10, 3), dtype=np.int32))
    with pytest.raises(DataError, match="holds a single value \\('B'\\).*at least two"):
        finish(ad.AnnData(X=counts, obs=obs), "cell_type", "cells.h5ad", {})
    obs.iloc[0, 0] = 7  # numeric labels count as strings: two types now
    finish(ad.AnnData(X=counts, obs=obs.astype(object)), "cell_type", "cells.h5ad", {})


def test_numeric_label_column_is_read_as_strings(tmp_path):
    path = tmp_path / "cells.h5ad"
    labelled_h5ad(path)
    adata = ad.read_h5ad(path)
    adata.obs["cluster_id"] = np.arange(adata.n_obs) % 3  # int64 labels 0, 1, 2
    adata.write_h5ad(path)
    imported = load_dataset({**H5AD, "label_key": "cluster_id"}, {"path": str(path)})
    column = imported.obs["cluster_id"]
    assert list(column.cat.categories) == ["0", "1", "2"]
    assert list(column[:4]) == ["0", "1", "2", "0"]


def test_a_label_column_of_cell_ids_is_refused_at_import_naming_the_type_columns(tmp_path):
    """A barcode column chosen as labels used to run every embedding and then die in the
    clustering's silhouette ("Number of labels is 300"); the import refuses it."""
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {
            "barcode": [f"ACGT{i:04d}-1" for i in range(300)],
            "cell_type": [f"t{i % 3}" for i in range(300)],
            "sample": [f"s{i % 2}" for i in range(300)],
            "n_counts": rng.random(300),
        },
        index=[f"c{i}" for i in range(300)],
    )
    counts = sp.csr_matrix(rng.poisson(1.0, size=(300, 20)).astype(np.int32) + 1)
    path = tmp_path / "cells.h5ad"
    ad.AnnData(X=counts, obs=obs).write_h5ad(path)
    with pytest.raises(DataError) as err:
        load_dataset({**H5AD, "label_key": "barcode"}, {"path": str(path)})
    message = str(err.value)
    assert message.startswith(
        f"{path}: the label column 'barcode' holds 300 distinct values in 300 labelled cells"
    )
    assert "'cell_type' (3 values), 'sample' (2 values)" in message
    assert "n_counts" not in message
    load_dataset({**H5AD, "label_key": "cell_type"}, {"path": str(path)})


def test_a_label_column_of_mostly_distinct_values_is_refused():
    """More than 50 labels and more than half as many as cells: ids with a few repeats."""
    labels = [f"id{i % 120}" for i in range(200)]
    with pytest.raises(DataError, match="holds 120 distinct values in 200 labelled cells"):
        finish(counts_adata(np.ones((200, 4)), labels=labels), "cell_type", "cells.h5ad", {})


# --------------------------------------------------------------------------- batches


def batch_adata(batches, labels=None) -> ad.AnnData:
    """counts_adata of one count per gene with a ``sample`` column of ``batches``."""
    adata = counts_adata(np.ones((len(batches), 4)), labels=labels)
    adata.obs["sample"] = batches
    return adata


def test_a_batch_column_is_kept_as_strings_and_named_in_uns(caplog):
    batches = [1, 1, 1, 2, 2, 2, 3, 3, 3, 1, 1, 1]  # plate numbers; labels t0, t1, t2, t0...
    with caplog.at_level(logging.INFO):
        adata = finish(batch_adata(batches), "cell_type", "cells.h5ad", {}, batch_key="sample")
    assert adata.uns["batch_key"] == "sample"
    column = adata.obs["sample"]
    assert column.dtype == "category" and list(column.cat.categories) == ["1", "2", "3"]
    assert list(column[2:5]) == ["1", "2", "2"]
    messages = warnings_of(caplog)
    assert "cells.h5ad: 3 batches in 'sample' (cells: {'1': 6, '2': 3, '3': 3})" in messages
    assert not any("confounded" in m for m in messages)  # every type in every batch


def test_without_a_batch_key_nothing_about_batches_changes(caplog):
    with caplog.at_level(logging.INFO):
        adata = finish(batch_adata([1, 2] * 6), "cell_type", "cells.h5ad", {})
    assert "batch_key" not in adata.uns
    assert adata.obs["sample"].dtype == np.int64  # as read, not turned into batches
    assert not any("batch" in m for m in warnings_of(caplog))


def test_a_single_batch_is_accepted_without_batch_key_and_said(caplog):
    with caplog.at_level(logging.INFO):
        adata = finish(batch_adata([7] * 12), "cell_type", "cells.h5ad", {}, batch_key="sample")
    assert "batch_key" not in adata.uns
    assert adata.obs["sample"].dtype == np.int64  # left as it is
    assert (
        "cells.h5ad: the batch column 'sample' holds a single batch ('7'): the integration "
        "(batch) scores are skipped and uns['batch_key'] is not set"
    ) in warnings_of(caplog)


def test_a_batch_left_alone_by_empty_cells_is_a_single_batch(caplog):
    counts = np.ones((12, 4), dtype=int)
    counts[6:] = 0  # every cell of batch b is empty
    adata = counts_adata(counts)
    adata.obs["sample"] = ["a"] * 6 + ["b"] * 6
    with caplog.at_level(logging.INFO):
        adata = finish(adata, "cell_type", "cells.h5ad", {}, batch_key="sample")
    assert "batch_key" not in adata.uns
    assert any("holds a single batch ('a')" in m for m in warnings_of(caplog))


def test_cells_without_a_batch_are_refused_with_their_number():
    batches = ["a", "b", None, "a", "", "b"] * 2
    with pytest.raises(DataError) as err:
        finish(batch_adata(batches), "cell_type", "cells.h5ad", {}, batch_key="sample")
    assert str(err.value).startswith(
        "cells.h5ad: 4 of 12 cells have no batch in the column 'sample' (missing or empty"
    )


def test_a_missing_batch_column_names_the_columns_there_are(tmp_path):
    path = tmp_path / "data.h5ad"
    labelled_h5ad(path)
    with pytest.raises(DataError) as err:
        load_dataset({**H5AD, "batch_key": "donor"}, {"path": str(path)})
    assert "there is no batch column 'donor'; the columns are ['cell_type', 'batch']" in str(
        err.value
    )


def test_batches_confounded_with_the_labels_are_warned_of(caplog):
    labels = ["B", "T", "NK"] * 10
    batches = ["b1" if label == "B" else "b2" for label in labels]  # B cells only in b1
    with caplog.at_level(logging.INFO):
        adata = finish(
            batch_adata(batches, labels=labels), "cell_type", "cells.h5ad", {}, batch_key="sample"
        )
    assert adata.uns["batch_key"] == "sample"  # a warning, not a refusal
    confounded = [m for m in warnings_of(caplog) if "are confounded" in m]
    assert len(confounded) == 1
    assert confounded[0].startswith(
        "cells.h5ad: the batch 'sample' and the labels 'cell_type' are confounded (Cramér's V 1.00"
    )
