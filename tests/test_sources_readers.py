"""The readers of scembed.sources.readers: an h5ad file, 10x output, scanpy's pbmc68k; a
damaged file refused with the fix, and X normalised refused with where the counts are."""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
from conftest import labelled_h5ad, warnings_of

from scembed.checks import DataError
from scembed.sources import load_dataset, read_pbmc68k

H5AD = {"source": "h5ad", "label_key": "cell_type", "counts_layer": "X"}

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


def tenx_labels(tmp_path, barcodes, rows: list[str]) -> Path:
    """A labels TSV with a ``cell_type`` and a ``donor`` column: ``rows`` are
    "index<TAB>type<TAB>donor" with the index of a barcode of the ``tenx`` fixture."""
    lines = ["barcode\tcell_type\tdonor"]
    for row in rows:
        i, rest = row.split("\t", 1)
        lines.append(f"{barcodes[int(i)]}\t{rest}")
    path = tmp_path / "labels.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_10x_batches_from_a_column_of_the_labels(tmp_path, tenx, caplog):
    folder, _, barcodes, _ = tenx
    rows = ["0\tT\td1", "1\tB\td2", "2\tT\td2", "3\tB\td1", "5\tmono\td2"]
    labels = tenx_labels(tmp_path, barcodes, rows)
    spec = {"source": "10x", "label_key": "cell_type", "batch_key": "donor"}
    with caplog.at_level(logging.INFO):
        adata = load_dataset(spec, {"path": str(folder), "labels": str(labels)})
    assert adata.uns["batch_key"] == "donor"
    donors = dict(zip(adata.obs_names, adata.obs["donor"].astype(str), strict=True))
    assert donors == {barcodes[i]: d for i, d in [(0, "d1"), (1, "d2"), (2, "d2"), (3, "d1"),
                                                   (5, "d2")]}  # fmt: skip
    assert any("2 batches in 'donor'" in m for m in warnings_of(caplog))
    # without batch_key the donor column is not read
    plain = load_dataset({**spec, "batch_key": None}, {"path": str(folder), "labels": str(labels)})
    assert "donor" not in plain.obs and "batch_key" not in plain.uns


def test_10x_batch_column_missing_or_empty_names_the_labels_file(tmp_path, tenx):
    folder, _, barcodes, _ = tenx
    labels = tenx_labels(tmp_path, barcodes, ["0\tT\td1", "2\tB\t", "3\tB\td2"])
    spec = {"source": "10x", "label_key": "cell_type"}
    files = {"path": str(folder), "labels": str(labels)}
    with pytest.raises(DataError) as err:
        load_dataset({**spec, "batch_key": "sample"}, files)
    assert str(err.value).startswith(
        f"{labels}: there is no batch column 'sample'; the columns are ['cell_type', 'donor']"
    )
    with pytest.raises(DataError) as err:
        load_dataset({**spec, "batch_key": "donor"}, files)
    assert str(err.value).startswith(f"{labels}: 1 of 3 cells have no batch in the column 'donor'")


def test_10x_labels_of_a_value_per_cell_are_refused_on_the_cells_of_the_file(tmp_path, tenx):
    """The check counts the cells of the 10x file, not the rows of the table."""
    folder, _, barcodes, _ = tenx
    labels = tenx_labels(tmp_path, barcodes, [f"{i}\tcell{i}\td1" for i in range(6)])
    spec = {"source": "10x", "label_key": "cell_type"}
    with pytest.raises(DataError) as err:
        load_dataset(spec, {"path": str(folder), "labels": str(labels)})
    assert str(err.value).startswith(
        f"{labels}: the label column 'cell_type' holds 6 distinct values in 6 labelled cells"
    )


# --------------------------------------------------------------------------- damaged files


@pytest.fixture
def tenx_folder(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    barcodes = [f"{'ACGT'[i % 4] * 8}-{i}" for i in range(6)]
    folder = tmp_path / "filtered_feature_bc_matrix"
    write_10x(folder, rng.poisson(2.0, size=(6, 4)) + 1, barcodes, ["A", "B", "C", "D"])
    (tmp_path / "labels.tsv").write_text(
        "barcode\tcell_type\n" + "".join(f"{b}\tt{i % 2}\n" for i, b in enumerate(barcodes))
    )
    return folder


def load_10x(folder: Path):
    spec = {"source": "10x", "label_key": "cell_type"}
    return load_dataset(spec, {"path": str(folder), "labels": str(folder.parent / "labels.tsv")})


def test_10x_folder_reads_with_duplicated_gene_names_logged(tenx_folder, caplog):
    with gzip.open(tenx_folder / "features.tsv.gz", "wt") as handle:
        handle.write("".join(f"ENSG{j}\t{g}\tGene Expression\n" for j, g in enumerate("AABC")))
    with caplog.at_level(logging.INFO):
        adata = load_10x(tenx_folder)
    assert list(adata.var_names) == ["A", "A-1", "B", "C"]
    assert any("1 gene names occur more than once" in m for m in warnings_of(caplog))


def test_10x_folder_without_barcodes(tenx_folder):
    (tenx_folder / "barcodes.tsv.gz").unlink()
    with pytest.raises(DataError) as err:
        load_10x(tenx_folder)
    message = str(err.value)
    assert message.startswith(f"{tenx_folder}: the 10x matrix folder lacks barcodes.tsv.gz")
    assert "matrix.mtx.gz, features.tsv.gz, barcodes.tsv.gz" in message
    assert "Copy the whole filtered_feature_bc_matrix folder" in message


def test_10x_folder_with_a_garbage_matrix(tenx_folder):
    with gzip.open(tenx_folder / "matrix.mtx.gz", "wb") as handle:
        handle.write(b"this is not a matrix market file\n1 2 3\n")
    with pytest.raises(DataError) as err:
        load_10x(tenx_folder)
    message = str(err.value)
    assert message.startswith(f"{tenx_folder}: cannot be read as a 10x matrix folder")
    assert "copy it again from Cell Ranger's outs/ folder" in message


def test_10x_h5_truncated(tenx_folder):
    import h5py

    h5 = tenx_folder.parent / "filtered_feature_bc_matrix.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("matrix/data", data=np.arange(1000))
    h5.write_bytes(h5.read_bytes()[:600])  # cut short, as by an interrupted copy
    with pytest.raises(DataError, match=re.escape(f"{h5}: cannot be read as a 10x .h5 file")):
        load_10x(h5)
    text = tenx_folder.parent / "notes.txt"
    text.write_text("not 10x")
    with pytest.raises(DataError, match="needs a .h5 file or a matrix folder"):
        load_10x(text)


def test_h5ad_truncated(tmp_path):
    path = tmp_path / "cells.h5ad"
    labelled_h5ad(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError) as err:
        load_dataset(H5AD, {"path": str(path)})
    assert str(err.value).startswith(f"{path}: cannot be read as an AnnData file")
    assert "copy or write it again" in str(err.value)


# --------------------------------------------------------------------------- where the counts are


def normalised_h5ad(path: Path, where: str) -> tuple[np.ndarray, list[str]]:
    """An h5ad with log-normalised X (8 genes) and the integer counts in ``layers["counts"]``
    (``where="layer"``) or in ``.raw`` with two more genes (``where="raw"``)."""
    rng = np.random.default_rng(4)
    counts = rng.poisson(2.0, size=(20, 10)).astype(np.float32) + (np.arange(10) == 0)
    genes = [f"g{j}" for j in range(10)]
    obs = pd.DataFrame(
        {"cell_type": [f"t{i % 3}" for i in range(20)]}, [f"c{i}" for i in range(20)]
    )
    full = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))
    logged = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    if where == "raw":
        full.raw = full.copy()
        full = full[:, :8].copy()
        full.X = sp.csr_matrix(logged[:, :8])
    else:
        full.layers["counts"] = full.X.copy()
        full.X = sp.csr_matrix(logged)
    full.write_h5ad(path)
    return counts, genes


def test_normalised_x_names_the_layer_of_the_counts(tmp_path):
    path = tmp_path / "cells.h5ad"
    normalised_h5ad(path, "layer")
    with pytest.raises(DataError) as err:
        load_dataset(H5AD, {"path": str(path)})
    message = str(err.value)
    assert message.startswith(f"{path}: the counts must be non-negative integers")
    assert message.endswith(
        "X looks normalised or transformed; the integer counts are in layers['counts']: "
        "set `counts_layer: counts` for this dataset."
    )


def test_normalised_x_names_raw_and_counts_layer_raw_reads_it(tmp_path):
    path = tmp_path / "cells.h5ad"
    counts, genes = normalised_h5ad(path, "raw")
    with pytest.raises(DataError) as err:
        load_dataset(H5AD, {"path": str(path)})
    assert str(err.value).endswith(
        "the integer counts are in .raw.X: set `counts_layer: raw` for this dataset."
    )
    adata = load_dataset({**H5AD, "counts_layer": "raw"}, {"path": str(path)})
    assert list(adata.var_names) == genes  # .raw's ten genes, not X's eight
    np.testing.assert_array_equal(adata.X.toarray(), counts)


def test_counts_layer_raw_without_raw(tmp_path):
    path = tmp_path / "cells.h5ad"
    normalised_h5ad(path, "layer")
    with pytest.raises(DataError) as err:
        load_dataset({**H5AD, "counts_layer": "raw"}, {"path": str(path)})
    assert str(err.value) == (
        f"{path}: there is no layer 'raw' (`raw` reads .raw.X; this file has no .raw); the "
        "layers are ['counts']. Set `counts_layer` to one of them, or `X`."
    )


def test_normalised_x_without_counts_anywhere_keeps_the_general_fix(tmp_path):
    path = tmp_path / "cells.h5ad"
    normalised_h5ad(path, "layer")
    adata = ad.read_h5ad(path)
    del adata.layers["counts"]
    adata.write_h5ad(path)
    with pytest.raises(DataError, match="is not an integer. Point the dataset at raw UMI counts"):
        load_dataset(H5AD, {"path": str(path)})


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


def test_pbmc68k_batch_key_and_a_per_cell_label_column(caplog):
    """pbmc68k's obs columns: `phase` as a batch (three), `n_genes` (356 values in 700
    cells) refused as labels, naming bulk_labels, phase and louvain."""
    with caplog.at_level(logging.INFO):
        adata = load_dataset(
            {"source": "pbmc68k", "label_key": "bulk_labels", "batch_key": "phase"}, {}
        )
    assert adata.uns["batch_key"] == "phase"
    assert list(adata.obs["phase"].cat.categories) == ["G1", "G2M", "S"]
    with pytest.raises(DataError) as err:
        load_dataset({"source": "pbmc68k", "label_key": "n_genes"}, {})
    message = str(err.value)
    assert "the label column 'n_genes' holds 356 distinct values in 700 labelled cells" in message
    assert (
        "the columns that look like cell types are 'bulk_labels' (10 values), 'phase' "
        "(3 values), 'louvain' (11 values)." in message
    )
