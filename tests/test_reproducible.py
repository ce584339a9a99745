"""The same config and seed give the same numbers whatever the machine's core count.

Without `compute_threads` (with `compute_threads: {train: 0, cluster: 0}`, the old
behaviour) this run's Leiden ARI was 0.147 on one core and 0.169 on two.

A training job's torch threads and the NN-descent graph's numba threads are fixed by
`compute_threads`, not by `--cores` or the cores numba sees: the run of a 1-core machine
(`--cores 1`, numba and OpenMP limited to one thread) and of this one (`--cores 2`)
write the same metrics.tsv.
"""

from __future__ import annotations

import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import snakemake, write_config

pytestmark = pytest.mark.workflow

CONFIG = {
    "datasets": {
        "drop": {
            "source": "synthetic",
            "profile": "droplet",
            "n_cells": 3000,
            "n_genes": 300,
            "n_types": 5,
            "preprocess": {"n_top_genes": 200, "min_genes": 10},
        }
    },
    # one training job and one clustering job on NN-descent (knn_search: approximate)
    "methods": {
        "vae_improved": {
            "kind": "vae",
            "preset": "improved",
            "max_epochs": 12,
            "kl_warmup_epochs": 4,
        }
    },
    "baseline": "none",
    "seeds": [0],
    "cluster": {"knn_search": "approximate", "umap_max_cells": 0},
}
ONE_CORE = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run(workdir, cores: int, env: dict) -> pd.DataFrame:
    workdir.mkdir()
    configfile = write_config(workdir / "config.yaml", {**CONFIG, "results_dir": "results"})
    target = "results/summary/metrics.tsv"
    result = snakemake(
        workdir, target, "--cores", str(cores), "--configfile", str(configfile), env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return pd.read_csv(workdir / target, sep="\t")


def test_metrics_are_the_same_on_one_core_and_on_two(tmp_path):
    one = run(tmp_path / "one", 1, {**os.environ, **ONE_CORE})
    two = run(tmp_path / "two", 2, {k: v for k, v in os.environ.items() if k not in ONE_CORE})
    logs = tmp_path / "two" / "results" / "logs"
    assert "torch computes on 1 thread(s)" in next((logs / "train_vae").rglob("*.log")).read_text()
    assert "compute threads: 1" in next((logs / "cluster").rglob("*.log")).read_text()
    assert len(one) == 1 and one.loc[0, "matched_ari"] > 0.1  # a real clustering, scored
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    # beyond metrics.tsv's 4 decimals: the embedding and every cell's clusters
    folder = "results/drop/vae_improved/seed0"
    embeddings = [ad.read_h5ad(tmp_path / d / folder / "embedding.h5ad") for d in ("one", "two")]
    np.testing.assert_array_equal(embeddings[0].obsm["X_emb"], embeddings[1].obsm["X_emb"])
    clusters = [(tmp_path / d / folder / "clusters.tsv").read_bytes() for d in ("one", "two")]
    assert clusters[0] == clusters[1]
