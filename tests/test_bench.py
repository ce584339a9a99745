"""The benchmark's book-style loop is a fair opponent, and interleaving changes no result."""

import os

import numpy as np
import pandas as pd
import pytest
import torch
from bench_vae import BookVAE, book_epochs, interleaved, make_counts

from scembed.preprocess import split_cells
from scembed.vae.module import VAE
from scembed.vae.params import resolve_params
from scembed.vae.train import train_vae


def test_book_loss_equals_ours():
    """The textbook loss (torch.distributions, the two-case ZINB) and ours give the same
    value and gradients for the same network, batch and posterior sample."""
    x = torch.tensor(make_counts(60, 40, seed=0)[:50], dtype=torch.float32)
    size_factor = x.sum(1, keepdim=True) * x.sum(0, keepdim=True) / x.sum()
    torch.manual_seed(0)
    ours, book = VAE(40, n_hidden=16), BookVAE(40, n_hidden=16)
    book.load_state_dict(ours.state_dict())
    losses = []
    for model in (ours, book):
        torch.manual_seed(1)
        out = model.loss(x, size_factor)
        out.loss.backward()
        losses.append(out)
    torch.testing.assert_close(losses[0].loss, losses[1].loss, rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(losses[0].reconst_loss, losses[1].reconst_loss, rtol=1e-5, atol=1e-3)
    for (name, mine), theirs in zip(ours.named_parameters(), book.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-3, atol=1e-3, msg=name)


def test_interleaving_changes_neither_loop():
    """Each loop keeps its own random state: interleaved epochs equal solo runs."""
    counts = make_counts(400, 30, seed=0)
    split = split_cells(400, 0.1, 0.05, 42)
    params = resolve_params({"n_hidden": 16, "max_epochs": 2, "patience": 5, "device": "cpu"})
    runs = interleaved(counts, split, params, seed=3)
    solo_ours = train_vae(counts, split, params, 3, log=lambda message: None)
    solo_book = [validation for _, validation in book_epochs(counts, split, params, 3)]
    np.testing.assert_array_equal(runs["ours"][1], solo_ours.history["validation_loss"])
    np.testing.assert_array_equal(runs["book"][1], solo_book)
    assert len(runs["book"][0]) == len(runs["ours"][0]) == 2
    assert (runs["book"][0] > 0).all() and (runs["ours"][0] > 0).all()


def test_bench_scale_reads_the_workflows_benchmark_files(tmp_path):
    """tools/bench_scale.py: one row per rule and run from Snakemake's benchmark files,
    with the training's seconds per epoch and cells per second from its history."""
    import anndata as ad
    import pandas as pd
    from bench_scale import config, workflow_rows

    columns = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    runs = {
        "import_dataset/scale.tsv": (12.5, 900.0),
        "train_vae/scale/vae/seed0.tsv": (30.0, 1500.0),
        "cluster/scale/pca/seed0.tsv": (80.0, 700.0),
    }
    for name, (seconds, rss) in runs.items():
        path = tmp_path / "benchmarks" / name
        path.parent.mkdir(parents=True)
        path.write_text(columns + f"{seconds}\t0:00:12\t{rss}\t0\t0\t0\t0\t0\t0\t0\n")
    history = tmp_path / "scale/vae/seed0/history.tsv"
    history.parent.mkdir(parents=True)
    pd.DataFrame({"epoch": [1], "seconds": [8.5]}).to_csv(history, sep="\t", index=False)
    split = ["train"] * 8400 + ["validation"] * 1100 + ["test"] * 500
    ad.AnnData(
        obs=pd.DataFrame({"split": split}, index=[f"c{i}" for i in range(10_000)])
    ).write_h5ad(tmp_path / "scale/preprocessed.h5ad")
    rows = {row["stage"]: row for row in workflow_rows(10_000, tmp_path)}
    assert rows["import_dataset"]["seconds"] == 12.5
    assert rows["import_dataset"]["max_rss_mb"] == 900
    assert rows["cluster:scale/pca/seed0"]["seconds"] == 80.0
    training = rows["train_vae:scale/vae/seed0"]
    assert training["s_per_epoch"] == 8.5
    assert training["cells_per_s"] == round(8400 / 8.5)  # the training cells of the split
    settings = config(10_000, tmp_path)
    assert settings["datasets"]["scale"]["profile"] == "droplet"
    assert settings["methods"]["vae"]["max_epochs"] == 1


def test_bench_scale_reads_the_stages_each_job_logged(tmp_path):
    """tools/bench_scale.py: the stages a job logs through scembed.runtime.timed become
    rows of their own, so the table says where a rule's time goes."""
    from bench_scale import stage_rows

    log = tmp_path / "logs" / "cluster" / "scale" / "pca" / "seed0.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        "2026-12-04 06:00:01,123 INFO reading the embedding\n"
        "2026-12-04 06:00:31,456 INFO kNN graph of 1000000 cells: 310.2 s\n"
        "2026-12-04 06:01:02,789 INFO Leiden at resolution 1: 35.0 s\n"
        "2026-12-04 06:01:03,000 WARNING no Leiden resolution gave exactly 20 clusters: 3 s\n"
    )
    rows = stage_rows(10**6, tmp_path)
    assert [(row["stage"], row["seconds"]) for row in rows] == [
        ("cluster:scale/pca/seed0: kNN graph of 1000000 cells", 310.2),
        ("cluster:scale/pca/seed0: Leiden at resolution 1", 35.0),
    ]


def test_gpu_check_says_there_is_no_cuda_device(monkeypatch, capsys, tmp_path):
    import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "gpu.md")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("No CUDA device") and "make gpu-check" in out
    assert list(tmp_path.iterdir()) == []  # no report without CUDA


@pytest.fixture(scope="module")
def small_droplet():
    import gpu_measure

    return gpu_measure.droplet(400, 0, n_genes=60, n_types=3)


def test_gpu_check_measures_throughput_on_any_device(small_droplet, monkeypatch):
    """The GPU check's throughput rows, run here on the CPU: ours (resident and streamed
    counts, eager steps there) and SCVI's, a row per method and batch size that fits the
    training cells, timed over the steps after the warm-up."""
    import gpu_check
    import gpu_measure

    monkeypatch.setattr(gpu_measure, "STEPS", 5)
    data = small_droplet
    big = gpu_measure.tiled(data, 3, 0)
    assert big.counts.shape == (1200, 60) and big.counts.nnz == 3 * data.counts.nnz
    rows = list(gpu_check.throughput([data], ("cpu",), 0, batch_sizes=(32, 5000)))
    assert [(row["method"], row["batch_size"]) for row in rows] == [("improved", 32), ("scvi", 32)]
    ours, scvi = rows
    assert ours["steps"] == scvi["steps"] == 5 and ours["cells_per_s"] > 0 < scvi["cells_per_s"]
    assert (ours["step"], ours["counts"], ours["capture_s"]) == ("eager", "resident", 0.0)
    streamed = gpu_measure.Throughput(data).vae("cpu", 32, 0, resident=False)
    assert streamed["counts"] == "streamed" and streamed["steps"] == 5


def test_gpu_check_states_the_targets():
    import gpu_check

    rows = pd.DataFrame(
        [
            ("cuda", "big", "improved", 128, 350_000.0),
            ("cuda", "big", "improved", 2048, 900_000.0),
            ("cuda", "big", "scvi", 128, 7_000.0),
            ("cuda", "big", "improved, no graph", 128, 90_000.0),
            ("cpu", "big", "improved", 128, 20_000.0),
        ],
        columns=["device", "data", "method", "batch_size", "cells_per_s"],
    )
    assert gpu_check.targets(rows, "big") == [
        "- improved at batch_size 128, big: 350,000 cells/s (target 300,000): met",
        "- improved at the best batch size (2048), big: 900,000 cells/s (target 1,000,000): "
        "not met",
        "- 50.0x SCVI's cells/s at batch_size 128, big (target 40x): met",
    ]


def test_gpu_check_trainings_compare_devices_and_batch_sizes(small_droplet, monkeypatch):
    """The agreement and the batch-size study, here with the CPU in place of CUDA: the
    same seed on the same CPU gives the same embedding (all neighbours shared, ARI 1),
    and the study says whether a larger batch keeps the ARI and what it proposes."""
    import gpu_trainings
    from gpu_trainings import neighbour_agreement

    points = np.random.default_rng(0).normal(size=(300, 5))
    assert neighbour_agreement(points, points) == 1.0
    assert neighbour_agreement(points, points[::-1]) < 0.2
    monkeypatch.setattr(gpu_trainings, "SCVI_EPOCHS", 2)
    short = {"max_epochs": 4, "kl_warmup_epochs": 1}
    rows, lines = gpu_trainings.agreement(small_droplet, 0, ("cpu", "cpu"), short)
    assert list(rows["device"]) == ["cpu", "cpu", "cpu again", "cpu", "cpu"]
    assert lines[0].startswith("- improved, seed 0, cpu against cpu: 100.0% of the 15 nearest")
    assert "k-means ARI 1.000" in lines[0]
    assert lines[2].startswith("- improved, two runs on cpu with the same seed: the same losses")
    table, lines = gpu_trainings.batch_study(small_droplet, 0, "cpu", (32, 64), 2, short)
    assert list(table["batch_size"]) == [32, 64] and (table["epochs_mean"] == 4).all()
    assert lines[0].startswith("- batch_size 64: ") and lines[1].startswith("- proposal: ")


def test_bench_cluster_times_the_jobs_stages_on_a_seeded_embedding(capsys):
    """tools/bench_cluster.py's job: the clustering job's own code on a seeded blob
    embedding, reporting imports, the stages it logs, and the scores."""
    import json

    import bench_cluster

    points, labels, split = bench_cluster.blobs(300, 4, 3)
    again = bench_cluster.blobs(300, 4, 3)
    assert np.array_equal(points, again[0]) and set(labels) == {"0", "1", "2"}
    bench_cluster.job(300, 4, 3, [], "", 1)
    measured = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stages = dict(measured["stages"])
    assert {"kNN graph", "Leiden", "UMAP", "matched-k bisection", "k-means"} <= set(stages)
    assert measured["matched_ari"] > 0.9  # three well-separated blobs, three clusters


def test_bench_cluster_runs_the_job_on_a_saved_embedding(tmp_path, capsys):
    """--embedding: the job reads the workflow's embedding.h5ad (here the same blobs,
    so the same scores as on blobs); --threads: the kNN transfer's threads change no
    score; the default threads are the workflow's (one below 10^5 cells)."""
    import json

    import bench_cluster

    from scembed.resources import CLUSTER_THREADS, CLUSTER_THREADS_FROM_CELLS

    bench_cluster.blob_anndata(300, 4, 3).write_h5ad(tmp_path / "embedding.h5ad")
    runs = []
    for embedding, threads in (("", 1), (str(tmp_path / "embedding.h5ad"), 2)):
        bench_cluster.job(300, 4, 3, ["umap_max_cells=0"], embedding, threads)
        runs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert runs[0]["ari"] == runs[1]["ari"] and runs[0]["matched_ari"] == runs[1]["matched_ari"]
    assert bench_cluster.job_threads(300) == 1
    large = bench_cluster.job_threads(CLUSTER_THREADS_FROM_CELLS)
    assert large == min(CLUSTER_THREADS, os.cpu_count())


def test_bench_cluster_set_replaces_a_cluster_default_and_names_a_bad_key():
    import bench_cluster

    defaults = bench_cluster.cluster_params([])
    params = bench_cluster.cluster_params(["leiden_flavor=igraph", "umap_max_cells=0"])
    assert params["leiden_flavor"] == "igraph" and defaults["leiden_flavor"] == "auto"
    assert params["umap_max_cells"] == 0
    assert {k for k in defaults if params[k] != defaults[k]} == {"leiden_flavor", "umap_max_cells"}
    with pytest.raises(SystemExit, match="leiden_flavour.*leiden_flavor"):
        bench_cluster.cluster_params(["leiden_flavour=igraph"])


def test_compare_leiden_scores_each_setting_against_the_reference_over_seeds(tmp_path):
    """tools/compare_leiden.py: the job's code with the reference and a candidate Leiden
    setting on saved embeddings of two seeds; both find three well-separated blobs, their
    runs are timed, and the table per dataset gives the candidate's verdict."""
    import bench_cluster
    import compare_leiden
    import pandas as pd

    paths = []
    for seed in (0, 1):
        folder = tmp_path / "blobs" / "pca" / f"seed{seed}"
        folder.mkdir(parents=True)
        bench_cluster.blob_anndata(400, 4, 3).write_h5ad(folder / "embedding.h5ad")
        paths.append(str(folder / "embedding.h5ad"))
    out, doc = tmp_path / "leiden.tsv", tmp_path / "leiden.md"
    args = [*paths, "--settings", "igraph_2it", "--out", str(out), "--doc", str(doc)]
    assert compare_leiden.main(args) == 0
    table = pd.read_csv(out, sep="\t")
    assert list(table["seed"]) == [0, 1] and set(table["dataset"]) == {"blobs"}
    for name in ("leidenalg", "igraph_2it"):
        assert (table[f"{name}_leiden_s"] >= 0).all() and (table[f"{name}_bisection_s"] >= 0).all()
        assert (table[f"{name}_matched_ari"] > 0.9).all()
    text = doc.read_text()
    assert "- `igraph_2it`: passes" in text
    assert "igraph_2it_matched_ari_diff" in text and "| blobs " in text
    with pytest.raises(SystemExit):
        compare_leiden.main([*paths, "--settings", "louvain"])
    again = tmp_path / "again.md"  # the doc written again from the table, no clustering
    assert compare_leiden.main(["--from-table", "--out", str(out), "--doc", str(again)]) == 0
    assert again.read_text() == text
    assert "The workflow's default below 10^5 cells: `leidenalg_2it_warm`." in text
