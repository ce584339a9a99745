"""Which step of a failed run failed, and why, read from the files the run left.

A run is a list of :class:`Step` (each job's rule, the file it makes, its log). The
first missing output along a run's steps (import, preprocess, embedding, clustering) is
the step that failed, when its log was written during this run, or was never started;
its reason is the exception line of that log. :mod:`scembed.incomplete` writes the
report of a failed run from this.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MISSING_COLUMNS = ("dataset", "method", "seed", "rule", "status", "reason", "log")
NOT_STARTED = (
    "the run stopped before this job started (a failure elsewhere without --keep-going, "
    "Ctrl-C or a kill)"
)
WAITS_FOR_RUNS = "it needs every run's metrics.json"
ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit|Interrupt)\b(: .*)?$")


@dataclass(frozen=True)
class Step:
    """A job that makes a file a run or the summary needs: its rule, that file, its log."""

    rule: str
    output: str
    log: str


def last_error_line(log: str | os.PathLike) -> str:
    """The exception line of a job's log (the last line like ``SomeError: message``),
    else its last non-empty line; '' for an empty or unreadable log."""
    try:
        lines = [line.strip() for line in Path(log).read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    return (errors or lines or [""])[-1]


def step_state(step: Step, started: float, not_run: str = NOT_STARTED) -> tuple[str, str]:
    """("failed", its error line) when the step's log was written since ``started`` (the
    run's start, seconds since the epoch), else ("not run", ``not_run``)."""
    log = Path(step.log)
    if log.exists() and log.stat().st_mtime >= started:
        return "failed", last_error_line(log) or f"no error line in {step.log}"
    return "not run", not_run


def missing_runs(runs: dict[tuple[str, str, int], list[Step]], started: float) -> pd.DataFrame:
    """One row (``MISSING_COLUMNS``) per run whose last step's output is missing, naming
    the first step along the run whose output is missing; failures first."""
    rows = []
    for (dataset, method, seed), steps in runs.items():
        if Path(steps[-1].output).exists():
            continue
        step = next(step for step in steps if not Path(step.output).exists())
        status, reason = step_state(step, started)
        rows.append((dataset, method, seed, step.rule, status, reason, step.log))
    missing = pd.DataFrame(rows, columns=list(MISSING_COLUMNS))
    return missing.sort_values("status", key=lambda status: status != "failed", kind="stable")


def causes(missing: pd.DataFrame) -> list[tuple[list[str], str, str, str, str]]:
    """Missing runs grouped by cause: (run names, rule, status, reason, log), in order. A
    failure's log is part of its cause; steps that were not run group by rule alone
    (their logs are empty or old), so a stopped grid of 100 runs is a few sentences."""
    groups = {}
    for row in missing.itertuples(index=False):
        log = row.log if row.status == "failed" else ""
        key = (row.rule, row.status, row.reason, log)
        groups.setdefault(key, []).append(f"{row.dataset}/{row.method}/seed{row.seed}")
    return [(names, *key) for key, names in groups.items()]
