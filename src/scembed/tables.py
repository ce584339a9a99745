"""Markdown of the comparison: the headline table (summary.md), the paired effects
against the baseline and the dataset variants (effects.md).

The numbers are those of :mod:`scembed.compare`; this module only lays them out.
"""

from __future__ import annotations

import pandas as pd

from scembed.compare import EFFECT_METRICS, paired_effects, runs_baseline
from scembed.integration import INTEGRATION_METRICS, LABELS, with_aggregates
from scembed.metrics import METRICS


def _mean_sd(values: pd.Series) -> str:
    if len(values) > 1:
        return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
    return f"{values.mean():.3f}"


def headline_markdown(metrics: pd.DataFrame, comparison: pd.DataFrame) -> str:
    """The table a reader pastes into a paper, per dataset, and the paired verdicts."""
    lines = ["# Headline results", ""]
    for dataset, runs in metrics.groupby("dataset", sort=False):
        n_labels, n_cells = int(runs["n_labels"].iloc[0]), int(runs["n_cells"].iloc[0])
        n_scored = int(runs["n_scored"].iloc[0]) if "n_scored" in runs else n_cells
        scored = "" if n_scored == n_cells else f", {n_scored} of them labelled and scored"
        resolutions = sorted(set(runs["resolution"])) if "resolution" in runs else [1.0]
        resolution = ", ".join(str(float(r)) for r in resolutions)
        shown = [m for m in METRICS if m.headline and m.name in runs]
        header = [m.headline.format(resolution=resolution) for m in shown]
        lines += [
            f"## {dataset} ({n_cells} cells{scored}, {n_labels} labels)",
            "",
            "| " + " | ".join(["method", "seeds", *header]) + " |",
            "|" + "---|" * (2 + len(shown)),
        ]
        for method, group in runs.groupby("method", sort=False):
            cells = [
                f"{group[m.name].mean():.1f}" if m.count else _mean_sd(group[m.name]) for m in shown
            ]
            lines.append("| " + " | ".join([method, str(len(group)), *cells]) + " |")
        lines.append("")
        paired = comparison[
            (comparison["dataset"] == dataset)
            & (comparison["metric"].isin(["ari", "matched_ari", "kmeans_ari"]))
        ]
        paired = paired.dropna(subset=["diff_mean"])
        for row in paired.itertuples():
            ci = (
                f" (95% bootstrap CI {row.diff_ci_low:+.3f} to {row.diff_ci_high:+.3f})"
                if row.paired_seeds > 1
                else ""
            )
            lines.append(
                f"- {row.method} vs {row.baseline}, {row.metric}: difference "
                f"{row.diff_mean:+.3f}{ci}, better in {int(row.wins)} of "
                f"{int(row.paired_seeds)} seeds"
            )
        if paired.empty:
            baseline = runs_baseline(comparison, dataset)
            why = f"only the baseline {baseline} ran" if baseline else "no baseline method"
            lines.append(f"- no paired comparison: {why} (see `baseline` in the config).")
        lines.append("")
        lines += integration_markdown(runs)
    lines.append(
        "Mean ± standard deviation over seeds. Matched-k: Leiden with the resolution "
        "bisected to as many clusters as labels. The CI resamples seeds (paired)."
    )
    if any(datasets_with_integration(metrics)):
        lines.append(INTEGRATION_NOTE)
    return "\n".join(lines) + "\n"


INTEGRATION_NOTE = (
    "\nIntegration scores (scIB, Luecken et al. 2022), 0 worst to 1 best: iLISI and batch "
    "ASW for batch mixing, cLISI and isolated-label ASW for label conservation. Batch "
    "mixing is the mean of iLISI and batch ASW; bio conservation the mean of matched-k "
    "ARI and NMI, the label ASW ((silhouette + 1) / 2), cLISI and isolated-label ASW "
    "(the trade-off figure: summary/{dataset}/integration.png)."
)


def datasets_with_integration(metrics: pd.DataFrame) -> list[str]:
    """The datasets of ``metrics`` with integration scores (a batch)."""
    if "ilisi" not in metrics:
        return []
    scored = metrics[metrics[list(INTEGRATION_METRICS)].notna().any(axis=1)]
    return list(dict.fromkeys(scored["dataset"]))


def integration_markdown(runs: pd.DataFrame) -> list[str]:
    """Lines of one dataset's integration table (mean ± sd over seeds of each score and
    of the two means of the trade-off figure), or none when it has no batch."""
    if not datasets_with_integration(runs):
        return []
    runs = with_aggregates(runs)
    columns = [*INTEGRATION_METRICS, "batch_mixing", "bio_conservation"]
    n_batches = ", ".join(str(int(n)) for n in sorted(set(runs["n_batches"].dropna())))
    lines = [
        f"### Integration ({n_batches} batches)",
        "",
        "| " + " | ".join(["method", "seeds", *(LABELS[c] for c in columns)]) + " |",
        "|" + "---|" * (2 + len(columns)),
    ]
    for method, group in runs.groupby("method", sort=False):
        values = [group[c].dropna() for c in columns]
        cells = [_mean_sd(v) if len(v) else "n/a" for v in values]
        lines.append("| " + " | ".join([method, str(len(group)), *cells]) + " |")
    return [*lines, ""]


def effects_markdown(comparison: pd.DataFrame) -> str:
    """Per dataset, one row per method: its paired difference from the baseline on each
    EFFECT_METRICS score, as ``mean [CI low, CI high] wins/seeds``; ``*`` marks a CI
    that excludes 0."""
    effects = paired_effects(comparison)
    lines = ["# Paired effects against the baseline", ""]
    if effects.empty:
        lines.append("No paired comparison: no baseline method ran (see `baseline`).")
        return "\n".join(lines) + "\n"
    for dataset, rows in effects.groupby("dataset", sort=False):
        title = f"{dataset}: difference from {rows['baseline'].iloc[0]}"
        lines += _effects_section(title, rows)
    lines.append(
        "Mean paired difference over seeds (method minus baseline, same seed), its 95% "
        "bootstrap CI over seeds (* when it excludes 0), and the seeds the method won."
    )
    return "\n".join(lines) + "\n"


def _effects_section(title: str, rows: pd.DataFrame) -> list[str]:
    """Markdown lines of one table: a row per method, a column per EFFECT_METRICS score
    present in ``rows`` (paired-difference rows of one dataset or variant)."""
    metrics = [m for m in EFFECT_METRICS if m in set(rows["metric"])]
    lines = [
        f"## {title}",
        "",
        "| " + " | ".join(["method", *metrics]) + " |",
        "|" + "---|" * (1 + len(metrics)),
    ]
    for method, group in rows.groupby("method", sort=False):
        by_metric = group.set_index("metric")
        cells = [_effect_cell(by_metric.loc[metric]) for metric in metrics]
        lines.append("| " + " | ".join([method, *cells]) + " |")
    return [*lines, ""]


def _effect_cell(row) -> str:
    """``mean [CI low, CI high] wins/seeds`` of one paired difference (``*``: the CI
    excludes 0; no CI from one seed)."""
    if row["paired_seeds"] > 1:
        sure = "*" if row["diff_ci_low"] > 0 or row["diff_ci_high"] < 0 else ""
        ci = f" [{row['diff_ci_low']:+.3f}, {row['diff_ci_high']:+.3f}]{sure}"
    else:
        ci = ""
    return f"{row['diff_mean']:+.3f}{ci} {int(row['wins'])}/{int(row['paired_seeds'])}"


def variants_markdown(variants: pd.DataFrame) -> str:
    """Per dataset variant, one row per method: its paired difference from the same
    method on the dataset it varies, on each EFFECT_METRICS score (as effects_markdown)."""
    if variants.empty:
        return ""
    lines = ["# Dataset variants against the dataset they vary", ""]
    for (variant, parent), rows in variants.groupby(["dataset", "variant_of"], sort=False):
        lines += _effects_section(
            f"{variant}: difference from {parent} (same method, same seed)", rows
        )
    lines.append(
        "Mean paired difference over seeds (the method on the variant minus the same "
        "method on the dataset it varies, same seed), its 95% bootstrap CI (* when it "
        "excludes 0), and the seeds the variant won."
    )
    return "\n".join(lines) + "\n"
