"""After a failed run: what is missing and why, and the metrics of the runs that finished.

The summary rules stay strict (``summary/metrics.tsv`` and what follows it are written
only when every run exists), so a failed run writes no summary. The workflow's
``onerror`` hook calls ``write_report`` (also when the run is stopped with Ctrl-C or
SIGTERM), which writes files that no rule declares: ``incomplete.md`` (for people),
``missing.tsv`` (one row per missing run: the step that failed or was not run, and the
last error line of its log), ``metrics.partial.tsv`` (the finished runs, columns as in
metrics.tsv) and ``effects.partial.md`` (each method's paired effect against the
config's baseline over the seeds both finished, as in effects.md: an interrupted
ablation keeps its answer so far). ``onsuccess`` calls ``remove_report`` once the
summary is complete, so they never outlive a complete summary.

Which step of a run failed, and why, is read from the files (:mod:`scembed.diagnosis`);
this module writes what it found.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from scembed.compare import compare_methods, compare_variants
from scembed.diagnosis import (
    MISSING_COLUMNS,
    NOT_STARTED,
    WAITS_FOR_RUNS,
    Step,
    causes,
    missing_runs,
    step_state,
)
from scembed.runtime import atomic_path
from scembed.summary import metrics_table, write_metrics_table
from scembed.tables import effects_markdown, variants_markdown

REPORT = "incomplete.md"
MISSING = "missing.tsv"
PARTIAL = "metrics.partial.tsv"
EFFECTS_PARTIAL = "effects.partial.md"
REPORT_FILES = (REPORT, MISSING, PARTIAL, EFFECTS_PARTIAL)
MAX_NAMED = 10  # runs named in the one-line message; the report names them all


def write_report(
    summary_dir: str | os.PathLike,
    runs: dict[tuple[str, str, int], list[Step]],
    summary_steps: list[Step],
    started: float,
    snakemake_log: str | list[str] | None = None,
    baseline: str = "auto",
    variants: dict[str, str] | None = None,
) -> str | None:
    """Write ``incomplete.md``, ``missing.tsv`` and, when runs finished,
    ``metrics.partial.tsv`` and ``effects.partial.md`` (:func:`partial_effects_markdown`)
    into ``summary_dir``; return the message for the workflow's log. With nothing missing,
    remove an earlier report instead and return None.

    ``runs`` maps (dataset, method, seed) to the run's steps in order, the last one making
    its metrics.json; ``summary_steps`` are the jobs of the summary and the figures;
    ``started`` is the run's start (seconds since the epoch); ``baseline`` and
    ``variants`` are the config's ``baseline`` and each variant's ``variant_of``."""
    summary_dir = Path(summary_dir)
    missing = missing_runs(runs, started)
    finished = [steps[-1].output for steps in runs.values() if Path(steps[-1].output).exists()]
    not_run = WAITS_FOR_RUNS if len(missing) else NOT_STARTED
    absent = [
        (step, *step_state(step, started, not_run))
        for step in summary_steps
        if not Path(step.output).exists()
    ]
    if missing.empty and not absent:
        remove_report(summary_dir)
        return None

    partial, effects = summary_dir / PARTIAL, summary_dir / EFFECTS_PARTIAL
    text = None
    if finished and (len(missing) or not (summary_dir / "metrics.tsv").exists()):
        finished_metrics = metrics_table(finished)
        write_metrics_table(finished_metrics, partial)
        text = partial_effects_markdown(finished_metrics, len(runs), baseline, variants)
    else:
        partial.unlink(missing_ok=True)
    if text is None:
        effects.unlink(missing_ok=True)
    else:
        with atomic_path(effects) as tmp, open(tmp, "w") as handle:
            handle.write(text)
    with atomic_path(summary_dir / MISSING) as tmp:
        missing.to_csv(tmp, sep="\t", index=False)
    present = [step.output for step in summary_steps if Path(step.output).exists()]
    text = report_markdown(
        missing,
        len(runs),
        len(finished),
        partial.exists(),
        absent,
        present,
        snakemake_log,
        effects.exists(),
    )
    with atomic_path(summary_dir / REPORT) as tmp, open(tmp, "w") as handle:
        handle.write(text)
    return log_message(missing, len(runs), len(finished), absent, summary_dir)


def partial_effects_markdown(
    metrics, n_runs: int, baseline: str = "auto", variants: dict[str, str] | None = None
) -> str | None:
    """effects.partial.md: effects.md's paired effects (and dataset variants) computed on
    the ``metrics`` of the runs that finished, out of ``n_runs``, each paired over the
    seeds both finished; None when nothing can be paired (the baseline has no finished
    run, or no other method shares a seed with it, and no variant pairs)."""
    try:
        comparison = compare_methods(metrics, baseline)
    except ValueError:  # the baseline named in the config has not finished a run yet
        comparison = None
    has_effects = comparison is not None and comparison["diff_mean"].notna().any()
    varied = compare_variants(metrics, variants or {})
    if not has_effects and varied.empty:
        return None
    lines = [
        f"> From the {runs(len(metrics))} of {n_runs} that finished (metrics.partial.tsv). "
        "Each difference is paired over the seeds that both finished (the number after "
        "the slash), so it can change when the rest have run; effects.md replaces this "
        "file once every run exists.",
        "",
    ]
    if has_effects:
        lines.append(effects_markdown(comparison))
    if not varied.empty:
        lines.append(variants_markdown(varied))
    return "\n".join(lines)


def remove_report(summary_dir: str | os.PathLike) -> list[Path]:
    """Remove the files of an earlier incomplete run; return those that existed."""
    removed = []
    for name in REPORT_FILES:
        path = Path(summary_dir) / name
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


def describe(rule: str, status: str, reason: str, log: str) -> str:
    """'rule failed (log): error line', or 'rule not run: why'."""
    if status == "failed":
        return f"{rule} failed ({log}): {reason}"
    return f"{rule} not run: {reason}"


def runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def sentence(text: str) -> str:
    """``text`` ending with one full stop."""
    return text if text.endswith(".") else text + "."


def log_message(missing, n_runs: int, n_finished: int, absent, summary_dir: Path) -> str:
    """The workflow log's message: which runs are missing, why, and where to look."""
    if len(missing):
        parts = [f"Incomplete run: {len(missing)} of {runs(n_runs)} have no metrics.json."]
        for names, rule, status, reason, log in causes(missing):
            more = len(names) - MAX_NAMED
            shown = ", ".join(names[:MAX_NAMED]) + (f" and {more} more" if more > 0 else "")
            parts.append(sentence(f"{shown}: {describe(rule, status, reason, log)}"))
        parts.append("No summary is written until every run exists.")
    else:
        step, status, reason = absent[0]
        parts = [
            f"Incomplete summary: all {runs(n_runs)} finished, but "
            + sentence(describe(step.rule, status, reason, step.log))
        ]
    if (summary_dir / PARTIAL).exists():
        parts.append(
            f"The metrics of the {runs(n_finished)} that finished: {summary_dir / PARTIAL}."
        )
    if (summary_dir / EFFECTS_PARTIAL).exists():
        parts.append(f"Their paired effects so far: {summary_dir / EFFECTS_PARTIAL}.")
    parts.append(
        f"What is missing and why: {summary_dir / REPORT} (table: {summary_dir / MISSING}). "
        "Fix the cause and run the same command again: finished runs are kept."
    )
    return " ".join(parts)


def cell(text) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def report_markdown(
    missing, n_runs, n_finished, partial, absent, present, snakemake_log, effects=False
) -> str:
    """incomplete.md: what the failed run left missing, why, and what to do."""
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    lines = [
        "# Incomplete run",
        "",
        f"The run that ended at {when} did not finish: "
        + (
            f"{len(missing)} of {runs(n_runs)} have no metrics.json. The summary files "
            "(metrics.tsv, comparison.tsv, summary.md, effects.md, the figures, "
            "provenance.json) are written only when every run exists."
            if len(missing)
            else f"all {runs(n_runs)} finished, but some summary files were not made."
        ),
        "",
    ]
    if present and len(missing):
        lines += [
            "These summary files are from an earlier run and leave out the missing runs: "
            + ", ".join(f"`{path}`" for path in present)
            + ".",
            "",
        ]
    if partial:
        lines += [
            f"The {runs(n_finished)} that finished: `{PARTIAL}` (same columns as metrics.tsv).",
            "",
        ]
    if effects:
        lines += [
            f"Their paired effects against the baseline, over the seeds that finished: "
            f"`{EFFECTS_PARTIAL}`.",
            "",
        ]
    if len(missing):
        lines += [
            "## Missing runs",
            "",
            "| " + " | ".join(MISSING_COLUMNS) + " |",
            "|" + "---|" * len(MISSING_COLUMNS),
        ]
        lines += [
            "| " + " | ".join(cell(value) for value in row) + " |"
            for row in missing.itertuples(index=False)
        ]
        lines.append("")
    if absent:
        lines += ["## Summary files not made", "", "| rule | status | reason | log | files |"]
        lines.append("|---|---|---|---|---|")
        jobs = {}
        for step, status, reason in absent:
            jobs.setdefault((step.rule, status, reason, step.log), []).append(step.output)
        lines += [
            f"| {rule} | {status} | {cell(reason)} | {cell(log)} | "
            + ", ".join(cell(path) for path in files)
            + " |"
            for (rule, status, reason, log), files in jobs.items()
        ]
        lines.append("")
    lines += [
        "Fix the cause named in each log, then run the same command again: the runs that "
        f"finished are kept. The next complete run removes this file, `{MISSING}`, "
        f"`{PARTIAL}` and `{EFFECTS_PARTIAL}`.",
    ]
    if snakemake_log:
        if not isinstance(snakemake_log, str):  # Snakemake 9 passes a list of log files
            snakemake_log = ", ".join(map(str, snakemake_log))
        lines += ["", f"Snakemake's log of the run: {snakemake_log}"]
    return "\n".join(lines) + "\n"
