"""scembed.diagnosis: which step of a run failed, and why, read from its files."""

from __future__ import annotations

import os
import time

import pandas as pd

from scembed.diagnosis import (
    MISSING_COLUMNS,
    NOT_STARTED,
    Step,
    causes,
    last_error_line,
    missing_runs,
)

TRACEBACK = """2026-01-01 10:00:00 INFO reading
Traceback (most recent call last):
  File "preprocess.py", line 26, in <module>
    raise DataError(
scembed.checks.DataError: n_top_genes is 100 but the dataset has only 60 genes.

"""


def test_last_error_line(tmp_path):
    log = tmp_path / "job.log"
    log.write_text(TRACEBACK)
    assert last_error_line(log) == (
        "scembed.checks.DataError: n_top_genes is 100 but the dataset has only 60 genes."
    )
    log.write_text("INFO started\nKilled\n\n")  # no exception line: the last line
    assert last_error_line(log) == "Killed"
    log.write_text("")
    assert last_error_line(log) == ""
    assert last_error_line(tmp_path / "absent.log") == ""


def run_steps(root, dataset, method, seed):
    """A run's steps as the workflow lists them (paths under ``root``)."""
    run = f"{dataset}/{method}/seed{seed}"
    return [
        Step("import_dataset", f"{root}/{dataset}/raw.h5ad", f"{root}/logs/import/{dataset}.log"),
        Step("preprocess", f"{root}/{dataset}/pre.h5ad", f"{root}/logs/preprocess/{dataset}.log"),
        Step("embed_pca", f"{root}/{run}/embedding.h5ad", f"{root}/logs/embed/{run}.log"),
        Step("cluster", f"{root}/{run}/metrics.json", f"{root}/logs/cluster/{run}.log"),
    ]


def touch(path, text="x", mtime=None):
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_missing_runs_name_the_first_missing_step_failures_first(tmp_path):
    """A run's first missing output is where it stopped: failed when its log was written
    during this run (its error line the reason), else not run; finished runs are left out."""
    started = time.time() - 60
    runs = {key: run_steps(tmp_path, *key) for key in [("a", "pca", 0), ("b", "pca", 0)]}
    runs[("c", "pca", 0)] = run_steps(tmp_path, "c", "pca", 0)
    for step in runs[("c", "pca", 0)]:
        touch(step.output)  # finished
    touch(tmp_path / "a/raw.h5ad")
    touch(tmp_path / "logs/preprocess/a.log", "old\nValueError: old", mtime=started - 3600)
    touch(tmp_path / "logs/import/b.log", TRACEBACK)
    missing = missing_runs(runs, started)
    assert list(missing.columns) == list(MISSING_COLUMNS)
    assert missing[["dataset", "rule", "status"]].values.tolist() == [
        ["b", "import_dataset", "failed"],
        ["a", "preprocess", "not run"],
    ]
    assert missing["reason"].tolist()[1] == NOT_STARTED
    assert missing["reason"].tolist()[0].startswith("scembed.checks.DataError: n_top_genes")
    grouped = causes(pd.concat([missing, missing.assign(dataset="d")]))
    assert [(names, rule) for names, rule, *_ in grouped] == [
        (["b/pca/seed0", "d/pca/seed0"], "import_dataset"),
        (["a/pca/seed0", "d/pca/seed0"], "preprocess"),
    ]
