"""Inputs refused or repaired through Snakemake: config-time refusals before any job
(too few cells, a repeated seed, a mistyped dataset, a Python without scvi-tools), and a
real run on paths with spaces and accents, duplicated genes and empty cells."""

from __future__ import annotations

import subprocess
import sys

import anndata as ad
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import REPO, h5ad_config, synthetic_config, write_config

from scembed.versions import missing_scvi_message, scvi_available

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


@pytest.mark.skipif(
    not scvi_available(), reason="scvi-tools is not installed (make venv installs it)"
)
@pytest.mark.workflow
def test_a_missing_scvi_fails_before_any_job(tmp_path):
    """Where scvi-tools cannot be imported, a config naming kind: scvi stops at once."""
    assert scvi_available()
    config = synthetic_config(methods={"pca": {"kind": "pca"}, "mine": {"kind": "scvi"}})
    configfile = write_config(tmp_path / "config.yaml", config)
    blocked = (  # this Python cannot import scvi, as if it were not installed
        "import sys; sys.modules['scvi'] = None; from snakemake.cli import main; main()"
    )
    args = ["-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(tmp_path), "-n"]
    cmd = [sys.executable, "-c", blocked, *args, "--configfile", str(configfile)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode != 0
    assert missing_scvi_message(["mine"]) in " ".join((result.stdout + result.stderr).split())
    assert not (tmp_path / "results").exists()
