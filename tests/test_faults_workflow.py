"""Faults through the workflow: a failing dataset with --keep-going, and two runs at once."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pandas as pd
import pytest
from conftest import REPO, SNAKEMAKE, snakemake, write_config

pytestmark = pytest.mark.workflow


def tiny(n_top_genes: int) -> dict:
    """A synthetic dataset small enough that each job takes seconds."""
    return {
        "source": "synthetic",
        "n_cells": 200,
        "n_genes": 60,
        "n_types": 3,
        "seed": 0,
        "preprocess": {"n_top_genes": n_top_genes, "min_genes": 5},
    }


def tiny_config(**datasets) -> dict:
    return {
        "datasets": datasets,
        "methods": {"pca": {"kind": "pca", "n_components": 5}},
        "seeds": [0],
        "cluster": {"umap_max_cells": 0},
    }


def run(workdir, config, *args):
    configfile = write_config(workdir / "run.yaml", config)
    return snakemake(workdir, "--configfile", str(configfile), "--cores", "2", *args, timeout=300)


def test_keep_going_finishes_the_other_dataset_and_says_what_is_missing(tmp_path):
    """`bad` fails in preprocess (more genes asked for than it has): `good` still runs to
    its metrics, the run fails, no summary is written, and summary/incomplete.md,
    missing.tsv and metrics.partial.tsv say which runs are missing and why. Fixed, the
    same command completes the summary and removes them."""
    results, summary = tmp_path / "results", tmp_path / "results" / "summary"
    config = tiny_config(good=tiny(50), bad=tiny(100))
    config["methods"]["pca3"] = {"kind": "pca", "n_components": 3}
    failed = run(tmp_path, config, "--keep-going")
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output
    assert "At least one job did not complete successfully" in output  # Snakemake's error
    assert (results / "good/pca/seed0/metrics.json").exists()
    assert not (results / "bad/preprocessed.h5ad").exists()
    assert not (summary / "metrics.tsv").exists()  # nothing partial under a declared name

    missing = pd.read_csv(summary / "missing.tsv", sep="\t")
    assert missing[["dataset", "method", "seed", "rule", "status"]].values.tolist() == [
        ["bad", "pca", 0, "preprocess", "failed"],
        ["bad", "pca3", 0, "preprocess", "failed"],
    ]
    reason = "n_top_genes is 100 but the dataset has only 60 genes"
    assert reason in missing.loc[0, "reason"]
    assert missing.loc[0, "log"] == "results/logs/preprocess/bad.log"
    partial = pd.read_csv(summary / "metrics.partial.tsv", sep="\t")
    assert partial[["dataset", "method", "seed"]].values.tolist() == [
        ["good", "pca", 0],
        ["good", "pca3", 0],
    ]
    effects = (summary / "effects.partial.md").read_text()  # pca3 against pca (baseline auto)
    assert "## good: difference from pca" in effects and "| pca3 |" in effects
    diff = partial.set_index("method")["matched_ari"].diff().iloc[-1]  # the first column
    assert f"| pca3 | {diff:+.3f} " in effects
    report = (summary / "incomplete.md").read_text()
    assert "2 of 4 runs have no metrics.json" in report and reason in report
    assert (
        "Incomplete run: 2 of 4 runs have no metrics.json. bad/pca/seed0, bad/pca3/seed0: "
        "preprocess failed (results/logs/preprocess/bad.log): scembed.checks.DataError: " + reason
    ) in output
    assert "Their paired effects so far: results/summary/effects.partial.md." in output
    assert "What is missing and why: results/summary/incomplete.md" in output

    fixed = run(tmp_path, tiny_config(good=tiny(50), bad=tiny(60)), "--keep-going")
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-3000:]
    metrics = pd.read_csv(summary / "metrics.tsv", sep="\t")
    assert metrics[["dataset", "method"]].values.tolist() == [["bad", "pca"], ["good", "pca"]]
    assert list(metrics.columns) == list(partial.columns)  # the partial table's columns
    assert (summary / "summary.md").exists() and (summary / "bad" / "metrics.png").exists()
    for name in ("incomplete.md", "missing.tsv", "metrics.partial.tsv", "effects.partial.md"):
        assert not (summary / name).exists(), name
    assert "The summary is complete: removed results/summary/incomplete.md" in fixed.stderr


def test_a_second_run_in_the_same_directory_is_refused(tmp_path):
    """While a run holds the directory's lock, a second one exits with Snakemake's lock
    message and touches nothing; the first finishes with a complete, valid summary.

    Both run as the README says, with profiles/local: its `rerun-incomplete` makes the
    second run reach the lock check even while a job of the first is writing (without
    it, Snakemake refuses earlier, calling that job's output incomplete)."""
    configfile = write_config(tmp_path / "run.yaml", tiny_config(only=tiny(50)))
    args = ["-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(tmp_path)]
    args += ["--profile", str(REPO / "profiles" / "local"), "--configfile", str(configfile)]
    args += ["--cores", "1"]
    first = subprocess.Popen(
        [*SNAKEMAKE, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        locks = tmp_path / ".snakemake" / "locks"
        deadline = time.time() + 120
        while not (locks.is_dir() and any(locks.iterdir())):
            assert first.poll() is None, first.stdout.read().decode()
            assert time.time() < deadline, "the first run took no lock within 2 minutes"
            time.sleep(0.2)
        second = snakemake(tmp_path, *args[4:], timeout=300)
        assert first.poll() is None, "the first run ended before the second one started"
        output_first = first.communicate(timeout=300)[0].decode()
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode != 0
    assert "Error: Directory cannot be locked." in second.stdout + second.stderr
    assert first.returncode == 0, output_first[-3000:]
    metrics = pd.read_csv(tmp_path / "results" / "summary" / "metrics.tsv", sep="\t")
    assert metrics[["dataset", "method", "seed"]].values.tolist() == [["only", "pca", 0]]
    assert metrics["ari"].between(-1, 1).all()
    assert not (tmp_path / "results" / "summary" / "incomplete.md").exists()
    assert not (locks.exists() and any(locks.iterdir()))  # the first run released its lock


def test_each_embedding_is_clustered_before_the_next_one_starts(tmp_path):
    """The cluster rule's priority: with one core the jobs alternate embed, cluster,
    embed, cluster, so a grid stopped at any point has finished runs to report (without
    it the scheduler takes the embeddings first, their input being the larger)."""
    config = tiny_config(only=tiny(50))
    config["seeds"] = [0, 1, 2]
    configfile = write_config(tmp_path / "run.yaml", config)
    targets = [f"results/only/pca/seed{seed}/metrics.json" for seed in (0, 1, 2)]
    result = snakemake(tmp_path, *targets, "--configfile", str(configfile), "--cores", "1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    started = re.findall(r"^(?:local)?rule (embed_pca|cluster):", output, flags=re.M)
    assert started == ["embed_pca", "cluster"] * 3, output[-3000:]


def test_training_jobs_run_side_by_side_without_a_gpu_and_take_turns_on_one(tmp_path):
    """profiles/local alone: without a GPU a training job asks for no `gpu` unit, so two
    one-thread jobs start together on two cores; where the machine has an NVIDIA GPU
    (here: CUDA_VISIBLE_DEVICES names one) each asks for the profile's one unit and they
    take turns on it."""
    config = tiny_config(only=tiny(50))
    config["methods"] = {"vae": {"kind": "vae", "max_epochs": 2}}  # device: auto
    config["seeds"] = [0, 1]
    configfile = write_config(tmp_path / "run.yaml", config)
    targets = [f"results/only/vae/seed{seed}/embedding.h5ad" for seed in (0, 1)]
    profile = ["--profile", str(REPO / "profiles" / "local"), "--cores", "2"]

    def training_events(gpus: str):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpus}
        args = [*targets, *profile, "--configfile", str(configfile)]
        result = snakemake(tmp_path, *args, env=env)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        pattern = r"^(?:local)?rule (train_vae):|^Finished jobid: \d+ \(Rule: (train_vae)\)"
        events = re.finditer(pattern, output, flags=re.M)
        return ["start" if event.group(1) else "end" for event in events]

    assert training_events("") == ["start", "start", "end", "end"]
    for target in targets:
        (tmp_path / target).unlink()
    assert training_events("0") == ["start", "end", "start", "end"]
