"""The dispatch of scembed.sources (`load_dataset` and its SOURCES registry): Zeisel read
through it, and the label column every import checks, named with the columns there are.

The count checks are tested in test_checks.py, the synthetic source in test_synthetic.py."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import LEVEL1, LEVEL2, N_CELLS, N_GENES, labelled_h5ad, write_zeisel

from scembed.checks import DataError
from scembed.schema import load_schema
from scembed.sources import SOURCES, load_dataset

# --------------------------------------------------------------------------- the registry


def test_every_source_of_the_config_schema_has_a_loader():
    schema = load_schema()
    assert set(schema["$defs"]["dataset"]["properties"]["source"]["enum"]) == set(SOURCES)


def test_an_unknown_source_names_the_known_ones():
    with pytest.raises(DataError, match="unknown source 'zeisel'") as err:
        load_dataset({"source": "zeisel", "label_key": "level1class"}, {})
    assert all(source in str(err.value) for source in SOURCES)
    assert "`source`" in str(err.value)


# --------------------------------------------------------------------------- Zeisel


@pytest.mark.parametrize(
    ("label_key", "classes"), [("level1class", LEVEL1), ("level2class", LEVEL2)]
)
def test_load_dataset_zeisel(tmp_path, label_key, classes):
    data = write_zeisel(tmp_path / "expression.txt")
    spec = {"source": "zeisel2015", "label_key": label_key}
    adata = load_dataset(spec, {"path": str(data["path"])})
    assert sp.issparse(adata.X) and np.issubdtype(adata.X.dtype, np.integer)
    np.testing.assert_array_equal(adata.X.toarray(), data["counts"])
    # the gene-cluster column is dropped, not read as a thirteenth cell
    assert adata.shape == (N_CELLS, N_GENES)
    assert adata.uns["label_key"] == label_key
    assert adata.obs[label_key].dtype == "category"
    assert set(adata.obs[label_key].cat.categories) == set(classes)
    expected = data["level1"] if label_key == "level1class" else data["level2"]
    assert list(adata.obs[label_key]) == expected
    provenance = adata.uns["provenance"]
    assert provenance["source"] == "zeisel2015"
    assert provenance["sha256"] == hashlib.sha256(data["path"].read_bytes()).hexdigest()
    assert provenance["bytes"] == data["path"].stat().st_size


def test_load_dataset_zeisel_pinned_sha256(tmp_path):
    data = write_zeisel(tmp_path / "expression.txt")
    good = hashlib.sha256(data["path"].read_bytes()).hexdigest()
    spec = {"source": "zeisel2015", "label_key": "level1class"}
    load_dataset({**spec, "sha256": good.upper()}, {"path": str(data["path"])})
    with pytest.raises(DataError, match="does not match the pinned sha256"):
        load_dataset({**spec, "sha256": "0" * 64}, {"path": str(data["path"])})


# --------------------------------------------------------------------------- labels


def test_missing_label_zeisel_lists_columns(tmp_path):
    data = write_zeisel(tmp_path / "expression.txt")
    with pytest.raises(DataError, match="no label column 'celltype'") as err:
        load_dataset({"source": "zeisel2015", "label_key": "celltype"}, {"path": str(data["path"])})
    for column in ("tissue", "level1class", "level2class"):
        assert repr(column) in str(err.value)


def test_missing_label_h5ad_lists_columns(tmp_path):
    labelled_h5ad(tmp_path / "data.h5ad")
    spec = {"source": "h5ad", "label_key": "celltype", "counts_layer": "X"}
    with pytest.raises(DataError) as err:
        load_dataset(spec, {"path": str(tmp_path / "data.h5ad")})
    assert "no label column 'celltype'" in str(err.value)
    assert "['cell_type', 'batch']" in str(err.value)


def test_zeisel_batch_key_reads_a_row_of_its_cell_metadata(tmp_path):
    """The Zeisel file's per-cell rows (tissue, sex, age...) are obs columns: `tissue`
    is a batch of two; `age` (21 days for every cell here) a single batch."""
    data = write_zeisel(tmp_path / "expression.txt")
    spec = {"source": "zeisel2015", "label_key": "level1class", "batch_key": "tissue"}
    adata = load_dataset(spec, {"path": str(data["path"])})
    assert adata.uns["batch_key"] == "tissue"
    expected = ["sscortex" if i % 2 else "ca1hippocampus" for i in range(N_CELLS)]
    assert list(adata.obs["tissue"]) == expected
    single = load_dataset({**spec, "batch_key": "age"}, {"path": str(data["path"])})
    assert "batch_key" not in single.uns
    with pytest.raises(DataError, match=r"no batch column 'plate'; the columns are \['tissue'"):
        load_dataset({**spec, "batch_key": "plate"}, {"path": str(data["path"])})
