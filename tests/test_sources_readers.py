"""The readers of scembed.sources.readers: an h5ad file, 10x output, scanpy's pbmc68k."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from conftest import labelled_h5ad

from scembed.checks import DataError
from scembed.sources import load_dataset, read_pbmc68k

# --------------------------------------------------------------------------- h5ad, 10x


def test_h5ad_counts_in_x(tmp_path):
    counts = labelled_h5ad(tmp_path / "data.h5ad")
    spec = {"source": "h5ad", "label_key": "cell_type", "counts_layer": "X"}
    adata = load_dataset(spec, {"path": str(tmp_path / "data.h5ad")})
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    assert np.issubdtype(adata.X.dtype, np.integer)
    assert list(adata.obs["cell_type"].cat.categories) == ["t0", "t1", "t2"]


def test_h5ad_counts_layer(tmp_path):
    path = tmp_path / "data.h5ad"
    counts = labelled_h5ad(path, layer=True)
    spec = {"source": "h5ad", "label_key": "cell_type"}
    # X is log-normalised: read as counts, it is rejected
    with pytest.raises(DataError, match="not an integer.*counts_layer"):
        load_dataset({**spec, "counts_layer": "X"}, {"path": str(path)})
    adata = load_dataset({**spec, "counts_layer": "raw_counts"}, {"path": str(path)})
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    assert adata.uns["provenance"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DataError, match=r"no layer 'counts'; the layers are \['raw_counts'\]"):
        load_dataset({**spec, "counts_layer": "counts"}, {"path": str(path)})


def write_10x(folder: Path, counts: np.ndarray, barcodes: list[str], genes: list[str]) -> None:
    """A Cell Ranger v3 matrix folder (genes x cells matrix.mtx.gz, features, barcodes)."""
    folder.mkdir(parents=True)
    with gzip.open(folder / "matrix.mtx.gz", "wb") as handle:
        scipy.io.mmwrite(handle, sp.coo_matrix(counts.T), field="integer")
    features = "".join(f"ENSG{j:08d}\t{g}\tGene Expression\n" for j, g in enumerate(genes))
    with gzip.open(folder / "features.tsv.gz", "wt") as handle:
        handle.write(features)
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as handle:
        handle.write("".join(f"{b}\n" for b in barcodes))


@pytest.fixture
def tenx(tmp_path):
    rng = np.random.default_rng(2)
    counts = rng.poisson(1.5, size=(6, 5))
    barcodes = [f"{'ACGT'[i % 4] * 8}{'TG'[i % 2] * 8}-{i}" for i in range(6)]
    genes = ["Actb", "Gapdh", "Cd3e", "Ms4a1", "Lyz2"]
    write_10x(tmp_path / "filtered_feature_bc_matrix", counts, barcodes, genes)
    return tmp_path / "filtered_feature_bc_matrix", counts, barcodes, genes


def test_10x_matrix_folder_with_labels(tmp_path, tenx):
    folder, counts, barcodes, genes = tenx
    labels = tmp_path / "labels.tsv"
    # cell 1 is not in the table, cell 4 has an empty label, one barcode is not a cell
    labels.write_text(
        "barcode\tcell_type\tdonor\n"
        f"{barcodes[3]}\tB\td1\n"
        f"{barcodes[0]}\tT\td1\n"
        f"{barcodes[2]}\tT\td2\n"
        f"{barcodes[4]}\t\td2\n"
        f"{barcodes[5]}\tmono\td2\n"
        "AAAAAAAAAAAAAAAA-9\tB\td3\n"
    )
    spec = {"source": "10x", "label_key": "cell_type"}
    adata = load_dataset(spec, {"path": str(folder), "labels": str(labels)})
    kept = [0, 2, 3, 5]
    assert sorted(adata.obs_names) == sorted(barcodes[i] for i in kept)
    assert list(adata.var_names) == genes
    by_barcode = dict(zip(barcodes, counts, strict=True))
    for i, name in enumerate(adata.obs_names):
        np.testing.assert_array_equal(adata.X[i].toarray().ravel(), by_barcode[name])
    assert adata.obs.loc[barcodes[3], "cell_type"] == "B"
    assert adata.obs.loc[barcodes[5], "cell_type"] == "mono"
    assert "nan" not in adata.obs["cell_type"].cat.categories
    provenance = adata.uns["provenance"]
    assert provenance["labels"]["sha256"] == hashlib.sha256(labels.read_bytes()).hexdigest()


def test_10x_labels_without_shared_barcodes(tmp_path, tenx):
    folder, *_ = tenx
    labels = tmp_path / "labels.tsv"
    labels.write_text("barcode\tcell_type\nAAAA-1\tT\nCCCC-1\tB\n")
    spec = {"source": "10x", "label_key": "cell_type"}
    with pytest.raises(DataError, match="none of its barcodes") as err:
        load_dataset(spec, {"path": str(folder), "labels": str(labels)})
    assert "AAAA-1" in str(err.value) and "AAAAAAAATTTTTTTT-0" in str(err.value)


def test_10x_missing_label_column(tmp_path, tenx):
    folder, _, barcodes, _ = tenx
    labels = tmp_path / "labels.tsv"
    labels.write_text(f"barcode\tcelltype\n{barcodes[0]}\tT\n")
    spec = {"source": "10x", "label_key": "cell_type"}
    with pytest.raises(DataError, match=r"no label column 'cell_type'.*\['celltype'\]"):
        load_dataset(spec, {"path": str(folder), "labels": str(labels)})


# --------------------------------------------------------------------------- pbmc68k


def test_pbmc68k_counts_reproduce_scanpy_normalised_values():
    import scanpy as sc

    adata = read_pbmc68k()
    reference = sc.datasets.pbmc68k_reduced()
    assert adata.shape == (700, 765)
    counts = np.asarray(adata.X)
    np.testing.assert_array_equal(counts, np.rint(counts))
    assert counts.min() >= 0 and counts.max() > 100
    logged = reference.raw.X.toarray().astype(np.float64)
    library = reference.obs["n_counts"].to_numpy(dtype=np.float64)[:, None]
    renormalised = np.log1p(counts / library * 1e4)
    # raw.X is that value rounded to 3 decimals (error <= 5e-4) and stored as float32
    # (error < 1e-6 for values < 10). One count more or less moves it by more than
    # log((c + 1) / c) >= 1 / 260 for every count present here, far beyond the tolerance.
    assert logged.max() < 10
    np.testing.assert_allclose(renormalised, logged, rtol=0, atol=5e-4 + 1e-6)
    assert list(adata.obs_names) == list(reference.obs_names)
    assert list(adata.var_names) == list(reference.raw.var_names)
    # the counts are a subset of each cell's genes: never more than its library size
    assert (counts.sum(axis=1) <= library.ravel()).all()


def test_load_dataset_pbmc68k():
    adata = load_dataset({"source": "pbmc68k", "label_key": "bulk_labels"}, {})
    assert adata.shape == (700, 765)
    assert np.issubdtype(adata.X.dtype, np.integer)
    assert adata.obs["bulk_labels"].nunique() == 10
    assert adata.uns["provenance"]["source"] == "pbmc68k"
