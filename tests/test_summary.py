"""The metrics table of many runs (scembed.summary): every run's metrics.json, and the
integration scores of the runs of datasets with a batch."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scembed.integration import INTEGRATION_COLUMNS, integration_row
from scembed.summary import integration_table, metrics_table, write_metrics_table


def write_runs(folder: Path, datasets=("b", "d"), methods=("pca", "vae"), seeds=(0, 1)):
    """A metrics.json per run (in an order the table must sort), and their paths."""
    paths = []
    for dataset in datasets:
        for method in reversed(methods):
            for seed in seeds:
                run = {"dataset": dataset, "method": method, "seed": seed, "kind": "pca"}
                run |= {"n_cells": 50, "n_genes": 20, "n_labels": 3, "n_scored": 50}
                run |= {"ari": 0.5 + 0.01 * seed, "nmi": 0.6, "device": "cpu"}
                path = folder / f"{dataset}_{method}_{seed}.json"
                path.write_text(json.dumps(run))
                paths.append(path)
    return paths


def write_integration(folder: Path, dataset="b", methods=("pca", "vae"), seeds=(0, 1)):
    """An integration.tsv per run of ``dataset`` (iLISI 0.1 x seed + 0.2), their paths."""
    paths = []
    for method in methods:
        for seed in seeds:
            scores = {"n_batches": 3, "ilisi": 0.2 + 0.1 * seed, "batch_asw": 0.9}
            scores |= {"clisi": 0.95, "isolated_label_asw": 0.7, "n_isolated_labels": 2}
            path = folder / f"{dataset}_{method}_{seed}.integration.tsv"
            integration_row(dataset, method, seed, "batch", scores).to_csv(
                path, sep="\t", index=False
            )
            paths.append(path)
    return paths


def test_without_integration_tables_the_table_is_unchanged(tmp_path):
    paths = write_runs(tmp_path)
    table = metrics_table(paths)
    assert not set(INTEGRATION_COLUMNS) & set(table.columns)
    run_columns = ["dataset", "method", "seed", "n_cells", "n_genes", "n_labels", "n_scored"]
    assert list(table.columns[:7]) == run_columns
    write_metrics_table(table, tmp_path / "plain.tsv")
    write_metrics_table(metrics_table(paths, []), tmp_path / "empty.tsv")
    assert (tmp_path / "plain.tsv").read_bytes() == (tmp_path / "empty.tsv").read_bytes()
    header = (tmp_path / "plain.tsv").read_text().splitlines()[0].split("\t")
    assert not set(INTEGRATION_COLUMNS) & set(header)


def test_integration_scores_join_their_runs_and_only_theirs(tmp_path):
    paths = write_runs(tmp_path)
    plain = metrics_table(paths)
    table = metrics_table(paths, write_integration(tmp_path))
    assert list(table.columns) == [*plain.columns, *INTEGRATION_COLUMNS]  # appended
    pd.testing.assert_frame_equal(table[plain.columns], plain)  # nothing else moves
    runs = table.set_index(["dataset", "method", "seed"])
    assert runs.loc[("b", "vae", 1), "ilisi"] == pytest.approx(0.3)
    assert runs.loc[("b", "pca", 0), "n_batches"] == 3
    assert runs.loc["d", list(INTEGRATION_COLUMNS)].isna().all().all()  # no batch
    write_metrics_table(table, tmp_path / "metrics.tsv")
    lines = (tmp_path / "metrics.tsv").read_text().splitlines()
    assert lines[0].endswith("\tn_batches\tilisi\tbatch_asw\tclisi\tisolated_label_asw")
    assert lines[1].endswith("\t3\t0.2000\t0.9000\t0.9500\t0.7000")  # b / pca / 0
    assert lines[-1].endswith("\t\t\t\t\t")  # d / vae / 1: empty, not 0 or NaN


def test_integration_table_keeps_dataset_names_as_text(tmp_path):
    paths = write_integration(tmp_path, dataset="1")
    table = integration_table(paths)
    assert table["dataset"].tolist() == ["1"] * 4
    assert list(table.columns) == ["dataset", "method", "seed", *INTEGRATION_COLUMNS]
    assert integration_table([]).empty
