"""The metrics table of many runs: ``summary/metrics.tsv`` (every run) and, after a failed
run, ``summary/metrics.partial.tsv`` (the runs that finished), with the same columns."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from scembed.metrics import METRIC_NAMES, RUN_COLUMNS
from scembed.runtime import atomic_path


def metrics_table(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per run's metrics.json: the run columns, the metrics, then the rest."""
    table = pd.DataFrame([json.loads(Path(path).read_text()) for path in paths])
    if table.empty:
        return table
    first = [c for c in (*RUN_COLUMNS, *METRIC_NAMES) if c in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    return table.sort_values(["dataset", "method", "seed"])


def write_metrics_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the table as TSV (four decimals), atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
