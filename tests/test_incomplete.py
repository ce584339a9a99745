"""scembed.incomplete: the report of a failed run, read from the files the run left
(which step failed and why: test_diagnosis.py)."""

from __future__ import annotations

import json
import time

import pandas as pd
from test_diagnosis import TRACEBACK, run_steps, touch

from scembed.diagnosis import MISSING_COLUMNS, NOT_STARTED
from scembed.incomplete import (
    EFFECTS_PARTIAL,
    MISSING,
    PARTIAL,
    REPORT,
    Step,
    remove_report,
    write_report,
)
from scembed.summary import metrics_table


def metrics(dataset, method, seed, ari):
    return {
        "silhouette": 0.1,
        "ari": ari,
        "seed": seed,
        "method": method,
        "dataset": dataset,
        "n_cells": 10,
        "n_genes": 5,
        "n_labels": 2,
        "n_scored": 10,
        "kind": "pca",
    }


def test_report_names_the_failed_step_its_error_and_the_finished_runs(tmp_path):
    root, summary = tmp_path, tmp_path / "summary"
    keys = [("good", "pca", 0), ("good", "pca", 1), ("bad", "pca", 0)]
    runs = {key: run_steps(root, *key) for key in keys}
    started = time.time() - 60
    # good/pca/0 finished; good/pca/1 stopped before clustering (its log is from before
    # this run); bad failed in preprocess during this run
    touch(root / "good/raw.h5ad")
    touch(root / "good/pre.h5ad")
    touch(root / "good/pca/seed0/embedding.h5ad")
    touch(root / "good/pca/seed0/metrics.json", json.dumps(metrics("good", "pca", 0, 0.5)))
    touch(root / "good/pca/seed1/embedding.h5ad")
    touch(root / "logs/cluster/good/pca/seed1.log", "old\nValueError: old", mtime=started - 3600)
    touch(root / "bad/raw.h5ad")
    touch(root / "logs/preprocess/bad.log", TRACEBACK)
    summary_steps = [Step("summarize", f"{summary}/metrics.tsv", f"{root}/logs/summarize.log")]

    message = write_report(summary, runs, summary_steps, started, ["/x/snakemake.log"])

    missing = pd.read_csv(summary / MISSING, sep="\t")
    assert list(missing.columns) == list(MISSING_COLUMNS)
    rows = {(r.dataset, r.seed): r for r in missing.itertuples()}
    assert list(rows) == [("bad", 0), ("good", 1)]  # failures first
    bad, stopped = rows[("bad", 0)], rows[("good", 1)]
    assert (bad.rule, bad.status, bad.log) == (
        "preprocess",
        "failed",
        f"{root}/logs/preprocess/bad.log",
    )
    assert bad.reason.endswith("DataError: n_top_genes is 100 but the dataset has only 60 genes.")
    assert (stopped.rule, stopped.status, stopped.reason) == ("cluster", "not run", NOT_STARTED)

    partial = pd.read_csv(summary / PARTIAL, sep="\t")
    expected = metrics_table([root / "good/pca/seed0/metrics.json"])
    assert list(partial.columns) == list(expected.columns)  # metrics.tsv's columns and order
    assert list(partial.columns[:3]) == ["dataset", "method", "seed"]
    assert partial["ari"].tolist() == [0.5]

    report = (summary / REPORT).read_text()
    assert "2 of 3 runs have no metrics.json" in report
    assert "| bad | pca | 0 | preprocess | failed | scembed.checks.DataError: n_top_genes" in report
    assert "| summarize | not run | it needs every run's metrics.json |" in report
    assert "The 1 run that finished: `metrics.partial.tsv`" in report
    assert "/x/snakemake.log" in report

    assert message.startswith("Incomplete run: 2 of 3 runs have no metrics.json.")
    assert f"bad/pca/seed0: preprocess failed ({root}/logs/preprocess/bad.log): scembed" in message
    assert "good/pca/seed1: cluster not run: the run stopped before this job started" in message
    assert f"The metrics of the 1 run that finished: {summary / PARTIAL}." in message
    assert f"What is missing and why: {summary / REPORT}" in message
    assert not (summary / "metrics.tsv").exists()  # the declared output is never written

    # all runs there now: a failure in the summary stage alone, no partial table
    touch(root / "bad/pre.h5ad")
    for key in [("bad", "pca", 0), ("good", "pca", 1)]:
        touch(runs[key][-1].output, json.dumps(metrics(*key, 0.2)))
    touch(summary / "metrics.tsv")
    compare = Step("compare", f"{summary}/summary.md", f"{root}/logs/compare.log")
    touch(compare.log, "Traceback\nKeyError: 'ari'\n")
    message = write_report(summary, runs, [*summary_steps, compare], started)
    assert message.startswith(
        f"Incomplete summary: all 3 runs finished, but compare failed ({compare.log}): "
        "KeyError: 'ari'."
    )
    assert not (summary / PARTIAL).exists()
    assert pd.read_csv(summary / MISSING, sep="\t").empty

    touch(compare.output)  # nothing missing: the report goes
    assert write_report(summary, runs, [*summary_steps, compare], started) is None
    assert not (summary / REPORT).exists() and not (summary / MISSING).exists()


def test_an_interrupted_ablation_keeps_its_paired_effects_so_far(tmp_path):
    """effects.partial.md pairs each method with the config's baseline over the seeds
    both finished (here one of two for `vae`), says so, and goes once all runs exist."""
    root, summary = tmp_path, tmp_path / "summary"
    keys = [(m, s) for m in ("pca", "vae", "scvi") for s in (0, 1)]
    runs = {("d", m, s): run_steps(root, "d", m, s) for m, s in keys}
    started = time.time() - 60
    scores = {("pca", 0): 0.5, ("pca", 1): 0.6, ("vae", 0): 0.8}
    for (method, seed), ari in scores.items():
        touch(runs[("d", method, seed)][-1].output, json.dumps(metrics("d", method, seed, ari)))

    message = write_report(summary, runs, [], started, baseline="vae")
    text = (summary / EFFECTS_PARTIAL).read_text()
    assert text.startswith("> From the 3 runs of 6 that finished (metrics.partial.tsv).")
    assert "## d: difference from vae" in text
    assert "| pca | -0.300 0/1 |" in text  # 0.5 - 0.8 on seed 0, the only seed both ran
    assert "scvi" not in text  # no finished run: nothing to pair
    assert f"Their paired effects so far: {summary / EFFECTS_PARTIAL}." in message
    assert f"`{EFFECTS_PARTIAL}`" in (summary / REPORT).read_text()

    # the default baseline (auto: pca) pairs both seeds of nothing but seed 0 of vae
    write_report(summary, runs, [], started)
    assert "| vae | +0.300 1/1 |" in (summary / EFFECTS_PARTIAL).read_text()

    # the baseline has no finished run: no effects to show, and no stale file
    message = write_report(summary, runs, [], started, baseline="scvi")
    assert not (summary / EFFECTS_PARTIAL).exists()
    assert EFFECTS_PARTIAL not in message and (summary / PARTIAL).exists()

    write_report(summary, runs, [], started, baseline="vae")
    for method, seed in keys:  # every run there: the report and its files go
        touch(runs[("d", method, seed)][-1].output, json.dumps(metrics("d", method, seed, 0.1)))
    assert write_report(summary, runs, [], started, baseline="vae") is None
    assert not (summary / EFFECTS_PARTIAL).exists() and not (summary / PARTIAL).exists()


def test_partial_effects_of_dataset_variants(tmp_path):
    root, summary = tmp_path, tmp_path / "summary"
    runs = {(d, "pca", s): run_steps(root, d, "pca", s) for d in ("d", "d2") for s in (0, 1)}
    for dataset, seed, ari in (("d", 0, 0.5), ("d", 1, 0.4), ("d2", 0, 0.7)):
        touch(
            runs[(dataset, "pca", seed)][-1].output, json.dumps(metrics(dataset, "pca", seed, ari))
        )
    write_report(summary, runs, [], time.time(), variants={"d2": "d"})
    text = (summary / EFFECTS_PARTIAL).read_text()
    assert "## d2: difference from d (same method, same seed)" in text
    assert "| pca | +0.200 1/1 |" in text
    assert "difference from pca" not in text  # one method: no paired effects of methods


def test_remove_report_removes_only_its_files(tmp_path):
    for name in (REPORT, MISSING, PARTIAL, EFFECTS_PARTIAL, "metrics.tsv"):
        touch(tmp_path / name)
    removed = remove_report(tmp_path)
    assert sorted(path.name for path in removed) == sorted(
        [REPORT, MISSING, PARTIAL, EFFECTS_PARTIAL]
    )
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.tsv"]
    assert remove_report(tmp_path / "absent") == []


def test_a_stopped_grid_is_summed_up_in_one_sentence_per_step(tmp_path):
    """A grid stopped early (Ctrl-C, SIGTERM) leaves most runs not started: the log
    message groups them by the step they stopped at, naming ten runs and counting the rest,
    while each failure keeps its own log and error line."""
    root, summary = tmp_path, tmp_path / "summary"
    keys = [("d", f"m{m}", s) for m in range(8) for s in range(5)]  # 40 runs
    runs = {key: run_steps(root, *key) for key in keys}
    started = time.time() - 60
    touch(root / "d/raw.h5ad")
    touch(root / "d/pre.h5ad")
    for seed in (0, 1):  # finished
        touch(root / f"d/m0/seed{seed}/embedding.h5ad")
        touch(root / f"d/m0/seed{seed}/metrics.json", json.dumps(metrics("d", "m0", seed, 0.5)))
    for seed in (2, 3, 4):  # embedded, not clustered
        touch(root / f"d/m0/seed{seed}/embedding.h5ad")
    touch(root / "logs/embed/d/m1/seed0.log", TRACEBACK)  # failed during this run

    message = write_report(summary, runs, [], started)

    assert message.startswith("Incomplete run: 38 of 40 runs have no metrics.json.")
    assert message.count("not run: the run stopped before this job started") == 2
    assert "d/m0/seed2, d/m0/seed3, d/m0/seed4: cluster not run" in message
    assert "and 24 more: embed_pca not run" in message  # 34 not embedded, 10 named
    assert f"d/m1/seed0: embed_pca failed ({root}/logs/embed/d/m1/seed0.log)" in message
    assert len(message) < 1500, message
    missing = pd.read_csv(summary / MISSING, sep="\t")  # the table still lists every run
    assert len(missing) == 38 and missing["log"].nunique() == 38
