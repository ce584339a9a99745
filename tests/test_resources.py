"""Requests that follow the data (scembed.resources; rules/common.smk mem_mb and
cluster_threads)."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import REPO, snakemake, synthetic_config, write_config

from scembed.resources import (
    CLUSTER_THREADS,
    CLUSTER_THREADS_FROM_CELLS,
    MEM_MODEL,
    cluster_threads,
    data_mb,
    job_mem_mb,
    n_obs,
    synthetic_mb,
)


def counts_file(path, n_cells: int) -> float:
    """An h5ad of n_cells x 100 CSR counts; returns the MB of its matrices."""
    X = sp.random(n_cells, 100, density=0.2, format="csr", random_state=0, dtype=np.float32)
    ad.AnnData(X=X).write_h5ad(path, compression="gzip")
    return (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**20


def test_data_mb_reads_the_uncompressed_matrices_from_the_header(tmp_path):
    small, large = tmp_path / "small.h5ad", tmp_path / "large.h5ad"
    expected_small, expected_large = counts_file(small, 1000), counts_file(large, 20000)
    assert expected_small <= data_mb(small) < expected_small + 0.5  # + obs/var names
    assert expected_large <= data_mb(large) < expected_large + 1.5
    assert data_mb(large) > large.stat().st_size / 2**20  # not the gzipped size on disk
    assert data_mb(tmp_path / "missing.h5ad") == 0.0  # before the file exists
    empty = ad.AnnData(obs={"a": ["x", "y"]})  # X absent, null datasets in obsm/uns
    empty.uns["nothing"] = None
    empty.write_h5ad(tmp_path / "empty.h5ad")
    assert 0 <= data_mb(tmp_path / "empty.h5ad") < 0.1
    (tmp_path / "broken.h5ad").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert data_mb(tmp_path / "broken.h5ad") >= 0.0
    (tmp_path / "text.txt").write_text("x" * 2**20)
    assert data_mb(tmp_path / "text.txt") == 1.0


def test_requests_grow_with_the_data_and_the_attempt(tmp_path):
    small, large = tmp_path / "small.h5ad", tmp_path / "large.h5ad"
    counts_file(small, 1000)
    counts_file(large, 50000)
    for rule, (fixed, per_mb) in MEM_MODEL.items():
        assert job_mem_mb(rule, []) == fixed
        assert job_mem_mb(rule, [small]) < job_mem_mb(rule, [large])
        assert job_mem_mb(rule, [large], attempt=2) == 2 * job_mem_mb(rule, [large])
        assert job_mem_mb(rule, [large]) == int(fixed + per_mb * data_mb(large))


def test_a_million_synthetic_cells_ask_for_gigabytes():
    atlas = {"source": "synthetic", "n_cells": 10**6, "n_genes": 2000, "profile": "droplet"}
    assert 2000 < synthetic_mb(atlas) < 2600  # ~12% non-zero x 8 bytes
    assert job_mem_mb("import_dataset", [], dataset=atlas) > 4000  # the profile default
    small = {**atlas, "n_cells": 1000}
    assert job_mem_mb("import_dataset", [], dataset=small) < 2000


@pytest.mark.workflow
def test_slurm_dry_run_requests_memory_by_data_size(tmp_path):
    """Through Snakemake and the Slurm profile: the import of 10^6 droplet cells asks for
    more than the profile's 4 GB default, a small dataset for less."""
    config = synthetic_config(methods={"pca": {"kind": "pca"}}, seeds=[0])
    config["datasets"]["atlas"] = {
        "source": "synthetic",
        "profile": "droplet",
        "n_cells": 10**6,
        "n_genes": 2000,
    }
    path = write_config(tmp_path / "config.yaml", config)
    done = snakemake(
        tmp_path,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--dry-run",
        "--configfile",
        str(path),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    requests = {
        name: int(mem)
        for name, mem in re.findall(
            r"rule import_dataset:.*?wildcards: dataset=(\w+).*?mem_mb=(\d+)",
            done.stdout + done.stderr,
            flags=re.S,
        )
    }
    assert requests["atlas"] > 4000, requests  # above the profile default
    assert min(requests.values()) < 4000, requests


def embedding_file(path, n_cells: int):
    """An h5ad of ``n_cells`` cells with a 2-dimensional embedding and no X."""
    adata = ad.AnnData(obs={"cell": np.arange(n_cells).astype(str)})
    adata.obsm["X_emb"] = np.zeros((n_cells, 2), dtype=np.float32)
    adata.write_h5ad(path)
    return path


def test_cluster_threads_follow_the_cells_in_the_embedding(tmp_path):
    small = embedding_file(tmp_path / "small.h5ad", 700)
    large = embedding_file(tmp_path / "large.h5ad", CLUSTER_THREADS_FROM_CELLS)
    assert n_obs(small) == 700 and n_obs(large) == CLUSTER_THREADS_FROM_CELLS
    assert cluster_threads(small) == 1  # fixed cost: one core each, jobs side by side
    assert cluster_threads(large) == CLUSTER_THREADS > 1
    assert n_obs(tmp_path / "missing.h5ad") == 0  # before the file exists
    assert cluster_threads(tmp_path / "missing.h5ad") == 1
    (tmp_path / "broken.h5ad").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert n_obs(tmp_path / "broken.h5ad") == 0


@pytest.mark.workflow
def test_a_large_embedding_gets_a_clustering_job_with_threads(tmp_path):
    """Through Snakemake: the clustering job of an embedding of 10^5 cells asks for
    CLUSTER_THREADS threads (Slurm's --cpus-per-task), that of a small one for one."""
    config = synthetic_config(methods={"pca": {"kind": "pca"}}, seeds=[0])
    config["datasets"]["atlas"] = dict(config["datasets"]["synthetic"])
    config["results_dir"] = "results"
    path = write_config(tmp_path / "config.yaml", config)
    targets = []
    for name, n_cells in (("atlas", CLUSTER_THREADS_FROM_CELLS), ("synthetic", 700)):
        run = tmp_path / "results" / name / "pca" / "seed0"
        run.mkdir(parents=True)
        embedding_file(run / "embedding.h5ad", n_cells)
        targets.append(f"results/{name}/pca/seed0/metrics.json")
    done = snakemake(
        tmp_path,
        *targets,
        "--dry-run",
        "--cores",
        "8",
        "--allowed-rules",
        "cluster",  # the embeddings above are the inputs: nothing upstream reruns
        "--configfile",
        str(path),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    threads = {}  # Snakemake prints a job's threads when there are more than one
    for job in (done.stdout + done.stderr).split("rule cluster:")[1:]:
        dataset = re.search(r"wildcards: dataset=(\w+)", job)[1]
        count = re.search(r"^\s+threads: (\d+)$", job.split("resources:")[0], flags=re.M)
        threads[dataset] = count[1] if count else "1"
    assert threads == {"atlas": str(CLUSTER_THREADS), "synthetic": "1"}, done.stdout


def test_local_gpus_follow_cuda_visible_devices(monkeypatch):
    from scembed.resources import local_gpus

    for visible, expected in (("", 0), ("-1", 0), ("0", 1), ("0,1", 2), ("GPU-1a2b, GPU-3c4d", 2)):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert local_gpus() == expected, visible


def test_a_training_job_asks_for_a_gpu_only_where_it_trains_on_one(monkeypatch):
    from scembed import resources
    from scembed.resources import gpu_request, gpu_units

    assert gpu_units("auto", 1) == 1 and gpu_units("cuda:1", 2) == 1
    assert gpu_units("auto", 0) == 0  # CPU training: jobs side by side on the cores
    assert gpu_units("cpu", 4) == 0
    # the rule's default: this machine's GPUs, looked up once per process
    resources._local_gpus_once.cache_clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert gpu_request("auto") == 1 and gpu_request("cpu") == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_request("auto") == 1  # not looked up again
    resources._local_gpus_once.cache_clear()
    assert gpu_request("auto") == 0
    resources._local_gpus_once.cache_clear()
