"""The metrics table of many runs: ``summary/metrics.tsv`` (every run) and, after a failed
run, ``summary/metrics.partial.tsv`` (the runs that finished), with the same columns."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from scembed.integration import INTEGRATION_COLUMNS
from scembed.metrics import METRIC_NAMES, RUN_COLUMNS
from scembed.runtime import atomic_path

RUN_KEYS = ["dataset", "method", "seed"]


def metrics_table(
    paths: Iterable[str | os.PathLike], integration: Iterable[str | os.PathLike] = ()
) -> pd.DataFrame:
    """One row per run's metrics.json: the run columns, the metrics, then the rest; then,
    when there are ``integration`` tables (the runs of datasets with a batch), their
    INTEGRATION_COLUMNS (empty for runs without one). No integration table, no column."""
    table = pd.DataFrame([json.loads(Path(path).read_text()) for path in paths])
    if table.empty:
        return table
    first = [c for c in (*RUN_COLUMNS, *METRIC_NAMES) if c in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    scores = integration_table(integration)
    if not scores.empty:
        table = table.merge(scores, on=RUN_KEYS, how="left", validate="one_to_one")
    return table.sort_values(RUN_KEYS)


def integration_table(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """The runs' integration.tsv, one row each: the run keys and INTEGRATION_COLUMNS
    (``n_batches`` as a nullable integer, so that a run without a batch leaves it empty)."""
    names = {"dataset": str, "method": str}  # a dataset named 1 stays the string "1"
    tables = [pd.read_csv(path, sep="\t", dtype=names) for path in paths]
    if not tables:
        return pd.DataFrame()
    table = pd.concat(tables, ignore_index=True)[[*RUN_KEYS, *INTEGRATION_COLUMNS]]
    return table.astype({"n_batches": "Int64"})


def write_metrics_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the table as TSV (four decimals), atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
