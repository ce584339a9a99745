"""The dispatch of scembed.sources (`load_dataset` and its SOURCES registry), the count and
label checks every import goes through, and the synthetic source."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.sparse as sp
import yaml
from conftest import LEVEL1, LEVEL2, N_CELLS, N_GENES, REPO, labelled_h5ad, write_zeisel

from scembed.checks import DataError, check_counts
from scembed.sources import SOURCES, load_dataset

# --------------------------------------------------------------------------- the registry


def test_every_source_of_the_config_schema_has_a_loader():
    schema = yaml.safe_load((REPO / "config" / "schema" / "config.schema.yaml").read_text())
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


# --------------------------------------------------------------------------- synthetic


def synthetic(seed):
    spec = {"source": "synthetic", "label_key": "cell_type", "n_cells": 150, "n_genes": 40}
    return load_dataset({**spec, "n_types": 3, "seed": seed}, {})


def test_synthetic_shape_counts_labels_and_seed():
    first, again, other = synthetic(0), synthetic(0), synthetic(1)
    assert first.shape == (150, 40)
    assert np.issubdtype(first.X.dtype, np.integer) and first.X.min() >= 0
    assert first.X.sum() > 0
    assert first.obs["cell_type"].nunique() == 3
    assert (first.X != again.X).nnz == 0
    assert list(first.obs["cell_type"]) == list(again.obs["cell_type"])
    assert (first.X != other.X).nnz > 0
    assert first.uns["provenance"]["seed"] == 0 and other.uns["provenance"]["seed"] == 1


def test_synthetic_type_sizes_fix_the_cells_of_each_type():
    """Zeisel's seven class sizes, as the ablation's `zeisel_like` dataset asks."""
    sizes = [939, 820, 399, 290, 235, 224, 98]
    spec = {"source": "synthetic", "label_key": "cell_type", "n_cells": 10, "n_genes": 30}
    adata = load_dataset({**spec, "n_types": 2, "seed": 0, "type_sizes": sizes}, {})
    assert adata.n_obs == sum(sizes)  # overrides n_cells and n_types
    counts = adata.obs["cell_type"].value_counts()
    assert sorted(counts, reverse=True) == sizes
    assert adata.uns["provenance"]["type_sizes"] == sizes


def test_synthetic_droplet_profile_is_sparse_like_droplet_data():
    """`profile: droplet`: CSR counts with droplet sparsity and library sizes, seeded,
    generated in chunks (here three) whose seams do not show."""
    from scembed.synthetic import simulate_droplet_counts

    spec = {"source": "synthetic", "label_key": "cell_type", "n_cells": 3000, "n_genes": 2000}
    spec.update(n_types=8, seed=0, profile="droplet", library_size=2500)
    adata = load_dataset(spec, {})
    X = adata.X
    assert sp.isspmatrix_csr(X) and X.dtype == np.int32 and adata.shape == (3000, 2000)
    assert 0.05 < X.nnz / (3000 * 2000) < 0.15  # droplet data: 5-15% non-zero
    library = np.asarray(X.sum(axis=1)).ravel()
    assert 1500 < np.median(library) < 3000 and library.std() > 500
    assert adata.obs["cell_type"].nunique() == 8
    assert adata.uns["provenance"]["profile"] == "droplet"
    chunked = simulate_droplet_counts(3000, 2000, 8, seed=0, library_size=2500, chunk_cells=1000)
    again = simulate_droplet_counts(3000, 2000, 8, seed=0, library_size=2500, chunk_cells=1000)
    assert (chunked.X != again.X).nnz == 0  # the same seed gives the same counts
    per_chunk = [chunked.X[i : i + 1000].nnz for i in range(0, 3000, 1000)]
    assert max(per_chunk) < 1.2 * min(per_chunk)  # no chunk differs from the others
    other = simulate_droplet_counts(3000, 2000, 8, seed=1, library_size=2500)
    assert (other.X != X).nnz > 0
