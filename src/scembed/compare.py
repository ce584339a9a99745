"""Methods compared across seeds: spread, and paired differences against the baseline and
between a dataset variant and the dataset it varies.

The statistics only; their Markdown (summary.md, effects.md) is :mod:`scembed.tables`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scembed.integration import INTEGRATION_METRICS
from scembed.metrics import METRIC_NAMES

N_BOOTSTRAP = 10_000


PAIRED_COLUMNS = ("diff_mean", "diff_ci_low", "diff_ci_high", "wins", "ties", "paired_seeds")
EFFECT_METRICS = ("matched_ari", "kmeans_ari", "ari", "nmi", "knn_accuracy", *INTEGRATION_METRICS)
"""The scores of the paired-effects table and figure (effects.md, paired_effects.png); the
integration scores only where a dataset has them (a batch)."""


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


def paired_difference(values: pd.Series, reference: pd.Series) -> dict:
    """The PAIRED_COLUMNS of ``values`` minus ``reference`` (two series indexed by seed)
    over the seeds both have: mean difference, its 95% bootstrap CI over seeds
    (:func:`paired_bootstrap`), the seeds where ``values`` is higher (wins) or equal
    (ties), and the seeds paired. The mean is NaN when no seed pairs."""
    diffs = (values - reference).dropna().to_numpy()
    low, high = paired_bootstrap(diffs)
    return {
        "diff_mean": diffs.mean() if len(diffs) else float("nan"),
        "diff_ci_low": low,
        "diff_ci_high": high,
        "wins": int((diffs > 0).sum()),
        "ties": int((diffs == 0).sum()),
        "paired_seeds": len(diffs),
    }


def compared_metrics(runs: pd.DataFrame) -> list[str]:
    """The scores of one dataset's runs that comparison.tsv holds: every METRIC_NAMES
    column, then the integration scores when the dataset has them (not all empty: a
    dataset without a batch in a config with one has empty integration columns). All of
    them are higher-is-better, as the paired wins count them."""
    scores = [m for m in METRIC_NAMES if m in runs.columns]
    return scores + [m for m in INTEGRATION_METRICS if m in runs and runs[m].notna().any()]


def compare_methods(metrics: pd.DataFrame, baseline: str = "auto") -> pd.DataFrame:
    """Per dataset, metric (:func:`compared_metrics`) and method: mean, sd, range, and the
    paired difference against the baseline (:func:`pick_baseline` of ``baseline``) over
    the seeds both ran (mean, 95% bootstrap CI, wins, ties). The paired columns are
    always there; they are empty for the baseline itself and everywhere when there is no
    baseline."""
    baseline = pick_baseline(metrics, baseline)
    rows = []
    for dataset, runs in metrics.groupby("dataset", sort=False):
        for metric in compared_metrics(runs):
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
                    row.update(paired_difference(wide[method], wide[baseline]))
                rows.append(row)
    columns = ["dataset", "metric", "method", "n_seeds", "mean", "sd", "min", "max", "baseline"]
    return pd.DataFrame(rows).reindex(columns=[*columns, *PAIRED_COLUMNS])


def paired_effects(comparison: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``comparison`` with a paired difference, on the EFFECT_METRICS only, in
    their order (datasets and methods keep theirs)."""
    rows = comparison[comparison["metric"].isin(EFFECT_METRICS)].dropna(subset=["diff_mean"])
    order = rows["metric"].map({metric: i for i, metric in enumerate(EFFECT_METRICS)})
    return rows.iloc[np.argsort(order.to_numpy(), kind="stable")]


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
                paired = paired_difference(here[method], there[method])
                if not paired["paired_seeds"]:
                    continue
                rows.append(
                    {
                        "dataset": variant,
                        "variant_of": parent,
                        "metric": metric,
                        "method": method,
                        "mean": here[method].dropna().mean(),
                        "parent_mean": there[method].dropna().mean(),
                        **paired,
                    }
                )
    return pd.DataFrame(rows).reindex(columns=list(VARIANT_COLUMNS))


def runs_baseline(comparison: pd.DataFrame, dataset: str) -> str | None:
    """The baseline the comparison of ``dataset`` used, or None."""
    values = comparison.loc[comparison["dataset"] == dataset, "baseline"].dropna()
    return str(values.iloc[0]) if len(values) else None


def median_ari_seed(runs: pd.DataFrame) -> int:
    """Seed of the run whose ARI is the median of its method's runs (the lower middle)."""
    ordered = runs.sort_values(["ari", "seed"]).reset_index(drop=True)
    return int(ordered.loc[(len(ordered) - 1) // 2, "seed"])
