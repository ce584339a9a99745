"""Methods compared across seeds: spread, paired differences against the baseline, headline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scembed.metrics import METRIC_NAMES, METRICS

N_BOOTSTRAP = 10_000


PAIRED_COLUMNS = ("diff_mean", "diff_ci_low", "diff_ci_high", "wins", "ties", "paired_seeds")
EFFECT_METRICS = ("matched_ari", "kmeans_ari", "ari", "nmi", "knn_accuracy")
"""The scores of the paired-effects table and figure (effects.md, paired_effects.png)."""


def pick_baseline(metrics: pd.DataFrame, setting: str = "auto") -> str | None:
    """The method the others are compared against, or None for no paired comparison.

    ``setting`` is the config's ``baseline``: a method name, ``none``, or ``auto`` (the
    method named ``pca``, else the first method of kind pca, else none).
    """
    methods = list(dict.fromkeys(metrics["method"]))
    if setting == "none":
        return None
    if setting != "auto":
        if setting not in methods:
            raise ValueError(
                f"baseline {setting!r} is not one of the methods that ran {methods}; set "
                "`baseline` to one of them, `auto` or `none`."
            )
        return setting
    if "pca" in methods:
        return "pca"
    pcas = metrics.loc[metrics["kind"] == "pca", "method"]
    return pcas.iloc[0] if len(pcas) else None


def paired_bootstrap(diffs: np.ndarray, seed: int = 0, level: float = 0.95) -> tuple:
    """Percentile bootstrap CI of the mean of paired differences, resampling seeds."""
    diffs = np.asarray(diffs, dtype=float)
    if len(diffs) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(N_BOOTSTRAP, len(diffs)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def compare_methods(metrics: pd.DataFrame, baseline: str = "auto") -> pd.DataFrame:
    """Per dataset, metric and method: mean, sd, range, and the paired difference against
    the baseline (:func:`pick_baseline` of ``baseline``) over the seeds both ran (mean,
    95% bootstrap CI, wins, ties). The paired columns are always there; they are empty
    for the baseline itself and everywhere when there is no baseline."""
    baseline = pick_baseline(metrics, baseline)
    rows = []
    for dataset, runs in metrics.groupby("dataset", sort=False):
        for metric in [m for m in METRIC_NAMES if m in runs.columns]:
            wide = runs.pivot(index="seed", columns="method", values=metric).astype(float)
            for method in dict.fromkeys(runs["method"]):
                values = wide[method].dropna()
                row = {
                    "dataset": dataset,
                    "metric": metric,
                    "method": method,
                    "n_seeds": len(values),
                    "mean": values.mean(),
                    "sd": values.std(ddof=1) if len(values) > 1 else float("nan"),
                    "min": values.min(),
                    "max": values.max(),
                    "baseline": baseline,
                }
                if baseline in wide and method != baseline:
                    diffs = (wide[method] - wide[baseline]).dropna().to_numpy()
                    low, high = paired_bootstrap(diffs)
                    row.update(
                        diff_mean=diffs.mean() if len(diffs) else float("nan"),
                        diff_ci_low=low,
                        diff_ci_high=high,
                        wins=int((diffs > 0).sum()),
                        ties=int((diffs == 0).sum()),
                        paired_seeds=len(diffs),
                    )
                rows.append(row)
    columns = ["dataset", "metric", "method", "n_seeds", "mean", "sd", "min", "max", "baseline"]
    return pd.DataFrame(rows).reindex(columns=[*columns, *PAIRED_COLUMNS])


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
    lines.append(
        "Mean ± standard deviation over seeds. Matched-k: Leiden with the resolution "
        "bisected to as many clusters as labels. The CI resamples seeds (paired)."
    )
    return "\n".join(lines) + "\n"


def paired_effects(comparison: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``comparison`` with a paired difference, on the EFFECT_METRICS only, in
    their order (datasets and methods keep theirs)."""
    rows = comparison[comparison["metric"].isin(EFFECT_METRICS)].dropna(subset=["diff_mean"])
    order = rows["metric"].map({metric: i for i, metric in enumerate(EFFECT_METRICS)})
    return rows.iloc[np.argsort(order.to_numpy(), kind="stable")]


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


VARIANT_COLUMNS = (
    "dataset",
    "variant_of",
    "metric",
    "method",
    "mean",
    "parent_mean",
    *PAIRED_COLUMNS,
)


def compare_variants(metrics: pd.DataFrame, variants: dict[str, str]) -> pd.DataFrame:
    """Per dataset variant (``variants``: its name -> the dataset it varies, the config's
    ``variant_of``), EFFECT_METRICS score and method run on both: the variant's score
    minus the same method's on the dataset it varies, paired by seed (mean, 95%
    bootstrap CI, wins, ties). Measures a change of the data's options (the gene
    selection, say) the way :func:`compare_methods` measures a change of method."""
    rows = []
    for variant, parent in variants.items():
        runs = metrics[metrics["dataset"] == variant]
        base = metrics[metrics["dataset"] == parent]
        for metric in [m for m in EFFECT_METRICS if m in metrics.columns]:
            here = runs.pivot(index="seed", columns="method", values=metric).astype(float)
            there = base.pivot(index="seed", columns="method", values=metric).astype(float)
            for method in [m for m in dict.fromkeys(runs["method"]) if m in there]:
                diffs = (here[method] - there[method]).dropna().to_numpy()
                if not len(diffs):
                    continue
                low, high = paired_bootstrap(diffs)
                rows.append(
                    {
                        "dataset": variant,
                        "variant_of": parent,
                        "metric": metric,
                        "method": method,
                        "mean": here[method].dropna().mean(),
                        "parent_mean": there[method].dropna().mean(),
                        "diff_mean": diffs.mean(),
                        "diff_ci_low": low,
                        "diff_ci_high": high,
                        "wins": int((diffs > 0).sum()),
                        "ties": int((diffs == 0).sum()),
                        "paired_seeds": len(diffs),
                    }
                )
    return pd.DataFrame(rows).reindex(columns=list(VARIANT_COLUMNS))


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


def runs_baseline(comparison: pd.DataFrame, dataset: str) -> str | None:
    """The baseline the comparison of ``dataset`` used, or None."""
    values = comparison.loc[comparison["dataset"] == dataset, "baseline"].dropna()
    return str(values.iloc[0]) if len(values) else None


def median_ari_seed(runs: pd.DataFrame) -> int:
    """Seed of the run whose ARI is the median of its method's runs (the lower middle)."""
    ordered = runs.sort_values(["ari", "seed"]).reset_index(drop=True)
    return int(ordered.loc[(len(ordered) - 1) // 2, "seed"])
