"""Readers of every source, the count and label checks, and the mirror download."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from conftest import (
    LEVEL1,
    LEVEL2,
    N_CELLS,
    N_GENES,
    closed_port_url,
    labelled_h5ad,
    serve,
    write_zeisel,
    zeisel_example,
    zeisel_text,
)

from scembed.checks import DataError, check_counts
from scembed.sources import (
    ZEISEL_FIELDS,
    download,
    load_dataset,
    read_pbmc68k,
    read_zeisel,
    zeisel_layout_ok,
)

# --------------------------------------------------------------------------- helpers


def cut_in_gene_rows(text: str) -> str:
    """The file cut in the middle of a gene row, a few counts into it."""
    start = text.index("\nGene20\t") + 1
    return text[: start + len("Gene20\t3\t1\t2")]


# --------------------------------------------------------------------------- Zeisel


def test_read_zeisel_transposes_counts_and_keeps_metadata(tmp_path):
    data = write_zeisel(tmp_path / "expression.txt")
    adata = read_zeisel(data["path"])
    assert adata.shape == (N_CELLS, N_GENES)
    np.testing.assert_array_equal(np.asarray(adata.X), data["counts"])
    assert list(adata.obs_names) == data["cell_ids"]
    assert list(adata.var_names) == data["genes"]
    assert list(adata.obs["level1class"]) == data["level1"]
    assert list(adata.obs["level2class"]) == data["level2"]
    # every metadata field but cell_id (the obs names) is a column
    assert list(adata.obs.columns) == [f for f in ZEISEL_FIELDS if f != "cell_id"]
    assert list(adata.obs["age"].unique()) == ["21"]


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


def test_zeisel_wrong_field_names(tmp_path):
    counts, cell_ids, level1, level2, genes = zeisel_example()
    fields = list(ZEISEL_FIELDS)
    fields[8] = "class"
    path = tmp_path / "expression.txt"
    path.write_text(zeisel_text(counts, cell_ids, level1, level2, genes, fields=fields))
    with pytest.raises(DataError, match="not the Zeisel 2015 expression file") as err:
        read_zeisel(path)
    assert "'class'" in str(err.value) and "'level1class'" in str(err.value)


def test_zeisel_gene_row_cut_short(tmp_path):
    path = tmp_path / "expression.txt"
    path.write_text(cut_in_gene_rows(zeisel_text(*zeisel_example())))
    with pytest.raises(DataError, match="truncated") as err:
        read_zeisel(path)
    assert "Gene20" in str(err.value)
    with pytest.raises(DataError, match="truncated"):
        zeisel_layout_ok(path)


def test_zeisel_gene_rows_missing(tmp_path):
    text = zeisel_text(*zeisel_example())
    path = tmp_path / "expression.txt"
    path.write_text(text[: text.index("\nGene0\t") + 1])  # metadata and separator only
    with pytest.raises(DataError, match="no gene rows.*truncated"):
        read_zeisel(path)


def test_zeisel_cut_in_metadata(tmp_path):
    text = zeisel_text(*zeisel_example())
    path = tmp_path / "expression.txt"
    path.write_text(text[: text.index("\tcell_id\t")])
    with pytest.raises(DataError, match="not the Zeisel 2015 expression file"):
        read_zeisel(path)


def test_zeisel_non_numeric_count(tmp_path):
    counts, *rest = zeisel_example()
    text = zeisel_text(counts, *rest)
    row = "\t".join(["Gene5", "6", *(str(int(c)) for c in counts[5])])
    assert row in text
    path = tmp_path / "expression.txt"
    bad = "\t".join(["Gene5", "6", "1", "n/a", *(str(int(c)) for c in counts[5, 2:])])
    path.write_text(text.replace(row, bad))
    with pytest.raises(DataError, match="not numbers") as err:
        read_zeisel(path)
    assert "'n/a' in gene row 'Gene5' (line 17) for cell '1772071015_C01'" in str(err.value)


def test_zeisel_gene_symbols_that_look_like_missing_values(tmp_path):
    counts, cell_ids, level1, level2, genes = zeisel_example()
    genes[3], genes[4] = "NA", "nan"
    path = tmp_path / "expression.txt"
    path.write_text(zeisel_text(counts, cell_ids, level1, level2, genes))
    adata = read_zeisel(path)
    assert list(adata.var_names) == genes
    np.testing.assert_array_equal(np.asarray(adata.X), counts.T)


def test_zeisel_fractional_count_rejected_on_import(tmp_path):
    counts, *rest = zeisel_example()
    text = zeisel_text(counts, *rest)
    row = "\t".join(["Gene7", "1", *(str(int(c)) for c in counts[7])])
    bad = "\t".join(["Gene7", "1", "2.5", *(str(int(c)) for c in counts[7, 1:])])
    path = tmp_path / "expression.txt"
    path.write_text(text.replace(row, bad))
    with pytest.raises(DataError, match="not an integer") as err:
        load_dataset({"source": "zeisel2015", "label_key": "level1class"}, {"path": str(path)})
    assert "2.5" in str(err.value) and "cell 0, gene 7" in str(err.value)
    assert str(path) in str(err.value)


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


# --------------------------------------------------------------------------- download


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


PATIENCE = {"stall_timeout": 10, "min_speed": 0, "retries": 0, "retry_delay": 0}


def test_download_falls_back_to_the_second_mirror(tmp_path):
    body = zeisel_text(*zeisel_example()).encode()
    dest = tmp_path / "download" / "expression.txt"
    with serve({"/zeisel.txt": (body, None)}) as base:
        urls = [f"{base}/missing.txt", closed_port_url(), f"{base}/zeisel.txt"]
        provenance = download(urls, dest, verify=zeisel_layout_ok, **PATIENCE)
    assert dest.read_bytes() == body
    assert provenance["url"] == urls[2]
    assert provenance["sha256"] == hashlib.sha256(body).hexdigest()
    assert provenance["bytes"] == len(body)
    assert leftovers(dest.parent) == ["expression.txt"]


def test_download_accepts_the_pinned_checksum(tmp_path):
    body = zeisel_text(*zeisel_example()).encode()
    dest = tmp_path / "expression.txt"
    with serve({"/zeisel.txt": (body, None)}) as base:
        sha = hashlib.sha256(body).hexdigest()
        assert download([f"{base}/zeisel.txt"], dest, sha256=sha, **PATIENCE)["sha256"] == sha


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        ("short_length", "IncompleteRead|truncated"),  # Content-Length > body
        ("cut_rows", "truncated"),  # correct Content-Length, body cut in a gene row
        ("bad_checksum", "does not match the pinned"),
    ],
)
def test_download_rejects_incomplete_or_wrong_files(tmp_path, route, reason):
    body = zeisel_text(*zeisel_example()).encode()
    cut = cut_in_gene_rows(body.decode()).encode()
    routes = {
        "/short_length": (body[: len(body) // 2], len(body)),
        "/cut_rows": (cut, None),
        "/bad_checksum": (body, None),
    }
    dest = tmp_path / "expression.txt"
    sha256 = "ab" * 32 if route == "bad_checksum" else None
    with serve(routes) as base, pytest.raises(DataError) as err:
        download([f"{base}/{route}"], dest, sha256=sha256, verify=zeisel_layout_ok, **PATIENCE)
    assert f"{base}/{route}" in str(err.value)
    assert any(re.search(reason, line) for line in str(err.value).splitlines())
    assert not dest.exists()
    assert leftovers(tmp_path) == []  # no .part file left behind


def test_download_all_mirrors_fail(tmp_path):
    dest = tmp_path / "data" / "expression.txt"
    refused = closed_port_url()
    with serve({}) as base:
        urls = [f"{base}/a/expression.txt", refused]
        with pytest.raises(DataError) as err:
            download(urls, dest, verify=zeisel_layout_ok, **PATIENCE)
    message = str(err.value)
    lines = message.splitlines()
    assert any(urls[0] in line and "404" in line for line in lines)
    assert any(refused in line and "refused" in line.lower() for line in lines)
    assert "path: /where/you/saved/it" in message
    assert not dest.exists() and leftovers(dest.parent) == []


def test_check_counts_reports_the_first_value_whatever_its_problem():
    X = bad_counts(np.nan, row=2, col=3)
    X[1, 1] = -3.0  # a negative value before the NaN in cell order
    for matrix in (X, sp.csr_matrix(X)):
        with pytest.raises(DataError, match=r"value -3\.0 at cell 1, gene 1 is negative"):
            check_counts(matrix, "x")
