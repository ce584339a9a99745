"""Bad input (issue 13): each refused before work starts where it can, with a message
naming the input, the problem and the fix; or, where the input is usable, repaired
with a line in the log (duplicated names, empty cells)."""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import h5ad_config, labelled_h5ad, schema_defaults, short_params, synthetic_config
from test_sources_readers import write_10x

from scembed.checks import DataError
from scembed.preprocess import preprocess, split_cells
from scembed.sources import finish, load_dataset

PREPROCESS = schema_defaults("preprocess")
H5AD = {"source": "h5ad", "label_key": "cell_type", "counts_layer": "X"}


def counts_adata(counts, cells=None, genes=None, labels=None) -> ad.AnnData:
    """AnnData of integer ``counts`` with a ``cell_type`` column (three types)."""
    n_cells, n_genes = counts.shape
    obs = pd.DataFrame(
        {"cell_type": labels if labels is not None else [f"t{i % 3}" for i in range(n_cells)]},
        index=cells if cells is not None else [f"c{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=genes if genes is not None else [f"g{j}" for j in range(n_genes)])
    return ad.AnnData(X=sp.csr_matrix(np.asarray(counts, dtype=np.int32)), obs=obs, var=var)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "scembed.sources"]


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


def test_preprocess_never_normalises_a_cell_of_total_zero():
    """A cell whose counts all lie outside the kept genes is dropped even with min_genes 0,
    so normalize_total never divides by zero; X stays finite."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(60, 12))
    counts[:, 10:] = 0
    counts[:5, :10] = 0
    counts[:5, 10] = 1  # these five cells: counts only in a low-variance gene, not kept
    raw = finish(counts_adata(counts), "cell_type", "cells.h5ad", {})
    params = {**PREPROCESS, "n_top_genes": 10, "min_genes": 0}
    adata = preprocess(raw, **params)
    assert adata.uns["preprocess"]["cells_dropped"] == 5
    assert adata.n_obs == 55 and np.isfinite(adata.X.toarray()).all()
    assert (np.asarray(adata.layers["counts"].sum(axis=1)).ravel() > 0).all()


def test_vae_trains_finite_on_kept_genes_without_counts(one_thread):
    """Genes without any count among the kept genes (n_top_genes above the genes seen)
    give a finite loss and embedding with the book's size factor."""
    from scembed.vae.train import train_vae

    rng = np.random.default_rng(1)
    counts = rng.poisson(2.0, size=(120, 20))
    counts[:, :4] = 0
    split = split_cells(120, 0.2, 0.0, 0)
    result = train_vae(counts, split, short_params(batch_size=20), seed=0, log=lambda _: None)
    assert np.isfinite(result.latent).all()
    assert np.isfinite(result.history[["train_loss", "validation_loss"]].to_numpy()).all()


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


# --------------------------------------------------------------------------- labels


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


# --------------------------------------------------------------------------- through Snakemake

CONFIG_TIME = {
    # reported: "15 cells with n_neighbors: 20 run to the end without a word"
    "15 cells, 20 neighbours": (
        {
            "datasets": {
                "tiny": {
                    "source": "synthetic",
                    "n_cells": 15,
                    "n_genes": 50,
                    "n_types": 3,
                    "preprocess": {"n_top_genes": 40, "min_genes": 0},
                }
            },
            "methods": {"pca": {"kind": "pca", "n_components": 5}},
            "seeds": [0],
        },
        "datasets.tiny: 15 cells, but cluster.n_neighbors is 20",
    ),
    "repeated seed": (
        synthetic_config(seeds=[0, 1, 0]),
        "seeds [0, 1, 0] lists 0 more than once",
    ),
    "only_datasets with a typo": (
        synthetic_config(only_datasets=["synthetc"]),
        "only_datasets names 'synthetc', not a dataset of the config. Choose from synthetic",
    ),
}


@pytest.mark.workflow
@pytest.mark.parametrize("case", list(CONFIG_TIME))
def test_config_time_refusals_before_any_job(run_workflow, tmp_path, case):
    config, message = CONFIG_TIME[case]
    result = run_workflow(config, "--cores", "1")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output
    assert "ValidationError" not in output  # our message, not the schema's dump
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_paths_with_spaces_and_accents_duplicated_genes_and_empty_cells(run_workflow, tmp_path):
    """A real run (pca, one seed, up to the metrics table) on an h5ad under "my data
    ü/cells é.h5ad" into a results_dir with a space and an accent; the import log names
    the repairs."""
    from scembed.synthetic import simulate_counts

    adata = simulate_counts(300, 100, 3, seed=2)
    adata.var_names = [f"g{j}" for j in range(97)] + ["g1", "g2", "g1"]
    counts = adata.X.toarray()
    counts[[5, 6, 7]] = 0  # three cells without any count
    adata.X = sp.csr_matrix(counts)
    folder = tmp_path / "my data ü"
    folder.mkdir()
    adata.write_h5ad(folder / "cells é.h5ad")
    pca = {"pca": {"kind": "pca", "n_components": 5}}
    config = h5ad_config("my data ü/cells é.h5ad", pca, results_dir="out dir/résultats")
    target = "out dir/résultats/summary/metrics.tsv"
    result = run_workflow(config, "--cores", "2", target, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "out dir" / "résultats"
    metrics = pd.read_csv(out / "summary" / "metrics.tsv", sep="\t")
    assert list(metrics["method"]) == ["pca"] and metrics["n_cells"].iloc[0] <= 297
    raw = ad.read_h5ad(out / "mine" / "raw.h5ad")
    assert raw.n_obs == 297 and raw.var_names.is_unique
    assert list(raw.var_names[-3:]) == ["g1-1", "g2-1", "g1-2"]
    log = (out / "logs" / "import_dataset" / "mine.log").read_text()
    assert "cells é.h5ad: 2 gene names occur more than once (3 extra copies" in log
    assert "dropped 3 of 300 cells without any count (e.g. ['cell5', 'cell6', 'cell7'])" in log
