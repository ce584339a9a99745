"""Methods compared across seeds: spread, paired differences against the baseline, headline."""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = (
    "ari",
    "nmi",
    "ami",
    "n_clusters",
    "matched_ari",
    "matched_nmi",
    "kmeans_ari",
    "kmeans_nmi",
    "silhouette",
    "knn_accuracy",
)
N_BOOTSTRAP = 10_000


def pick_baseline(metrics: pd.DataFrame) -> str | None:
    """The method named ``pca``, else the first method of kind pca, else None."""
    methods = list(dict.fromkeys(metrics["method"]))
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


def compare_methods(metrics: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Per dataset, metric and method: mean, sd, range, and the paired difference against
    ``baseline`` over the seeds both ran (mean, 95% bootstrap CI, wins, ties)."""
    baseline = baseline if baseline is not None else pick_baseline(metrics)
    rows = []
    for dataset, runs in metrics.groupby("dataset", sort=False):
        for metric in [m for m in METRICS if m in runs.columns]:
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
    return pd.DataFrame(rows)


def _mean_sd(values: pd.Series) -> str:
    if len(values) > 1:
        return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
    return f"{values.mean():.3f}"


def headline_markdown(metrics: pd.DataFrame, comparison: pd.DataFrame) -> str:
    """The table a reader pastes into a paper, per dataset, and the paired verdicts."""
    lines = ["# Headline results", ""]
    for dataset, runs in metrics.groupby("dataset", sort=False):
        n_labels = int(runs["n_labels"].iloc[0])
        lines += [
            f"## {dataset} ({int(runs['n_cells'].iloc[0])} cells, {n_labels} labels)",
            "",
            "| method | seeds | ARI (Leiden, res. 1.0) | clusters | matched-k ARI "
            "| k-means ARI | NMI | kNN accuracy |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for method, group in runs.groupby("method", sort=False):
            lines.append(
                f"| {method} | {len(group)} | {_mean_sd(group['ari'])} "
                f"| {group['n_clusters'].mean():.1f} | {_mean_sd(group['matched_ari'])} "
                f"| {_mean_sd(group['kmeans_ari'])} | {_mean_sd(group['nmi'])} "
                f"| {_mean_sd(group['knn_accuracy'])} |"
            )
        lines.append("")
        paired = comparison[
            (comparison["dataset"] == dataset)
            & (comparison["metric"].isin(["ari", "matched_ari", "kmeans_ari"]))
        ]
        if "diff_mean" not in paired:
            paired = paired.iloc[:0]
        for row in paired.dropna(subset=["diff_mean"]).itertuples():
            lines.append(
                f"- {row.method} vs {row.baseline}, {row.metric}: difference "
                f"{row.diff_mean:+.3f} (95% bootstrap CI {row.diff_ci_low:+.3f} to "
                f"{row.diff_ci_high:+.3f}), better in {int(row.wins)} of "
                f"{int(row.paired_seeds)} seeds"
            )
        lines.append("")
    lines.append(
        "Mean ± standard deviation over seeds. Matched-k: Leiden with the resolution "
        "bisected to as many clusters as labels. The CI resamples seeds (paired)."
    )
    return "\n".join(lines) + "\n"


def median_ari_seed(runs: pd.DataFrame) -> int:
    """Seed of the run whose ARI is the median of its method's runs (the lower middle)."""
    ordered = runs.sort_values(["ari", "seed"]).reset_index(drop=True)
    return int(ordered.loc[(len(ordered) - 1) // 2, "seed"])
