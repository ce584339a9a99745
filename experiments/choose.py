"""Apply the study's selection rule to a finished grid and write its held-out estimate.

The rule (experiments/README.md, "The selection rule", written before the panel ran):

1. A candidate's score on a dataset is its paired difference from PCA (same seed),
   averaged over seeds and over the two scores that do not depend on Leiden's
   resolution: matched-k ARI and k-means ARI.
2. On each dataset the candidates are ranked by that score (1 = best); the rule picks
   the candidate with the lowest mean rank over the datasets it is given (ties: the
   higher mean score, then the name listed first).
3. The held-out estimate is leave-one-dataset-out: for each dataset, the rule picks on
   the other datasets, and the pick is judged on the one left out. It estimates what the
   rule's choice does on data it was not chosen on.

Reads the grid's results/<grid>/summary/metrics.tsv (written by the workflow) and
writes experiments/results/<grid>/selection.md and selection.tsv:

    .venv/bin/python experiments/choose.py panel
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCORES = ("matched_ari", "kmeans_ari")
BASELINES = ("pca", "vae", "scvi")  # compared with, never chosen


def paired(metrics: pd.DataFrame, against: str) -> pd.DataFrame:
    """Per dataset and method: mean over seeds of (method - ``against``) per score."""
    wide = metrics.set_index(["dataset", "seed", "method"])[list(SCORES)]
    base = wide.xs(against, level="method")
    diff = wide.sub(base, axis=0).dropna()
    return diff.groupby(["dataset", "method"]).mean()


def choose(score: pd.Series, datasets: list[str], order: list[str]) -> str:
    """The rule: the lowest mean rank over ``datasets`` (ties: higher mean, listed first)."""
    table = score.loc[datasets].unstack("method")[order]
    ranks = table.rank(axis=1, ascending=False, method="average")
    keys = pd.DataFrame({"rank": ranks.mean(), "score": -table.mean(), "at": range(len(order))})
    return keys.sort_values(["rank", "score", "at"]).index[0]


def held_out(metrics: pd.DataFrame, candidates: list[str]) -> tuple[pd.DataFrame, str]:
    vs = {name: paired(metrics, name) for name in BASELINES if name in set(metrics["method"])}
    score = vs["pca"].mean(axis=1)  # the rule's score: both ARIs, minus PCA's
    datasets = sorted(metrics["dataset"].unique())
    rows = []
    for left_out in datasets:
        pick = choose(score, [d for d in datasets if d != left_out], candidates)
        row = {"held_out": left_out, "chosen_on_the_others": pick}
        for baseline, diff in vs.items():
            for name in SCORES:
                row[f"{name} - {baseline}"] = diff.loc[(left_out, pick), name]
        rows.append(row)
    return pd.DataFrame(rows), choose(score, datasets, candidates)


def counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per comparison: held-out datasets won, and the mean difference."""
    columns = [c for c in table.columns if " - " in c]
    return pd.DataFrame(
        {
            "comparison": [f"chosen {c}" for c in columns],
            "held-out datasets won": [f"{(table[c] > 0).sum()} of {len(table)}" for c in columns],
            "mean difference": [round(table[c].mean(), 4) for c in columns],
        }
    )


def in_sample(metrics: pd.DataFrame, candidates: list[str]) -> pd.DataFrame:
    """Every method's mean over seeds per dataset, both scores (the grid's own numbers)."""
    means = metrics.groupby(["dataset", "method"])[list(SCORES)].mean().round(3)
    order = [m for m in ["pca", *[b for b in BASELINES if b != "pca"], *candidates]]
    order += sorted(set(metrics["method"]) - set(order))
    return means.unstack("dataset").reindex(order)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", help="the grid's name: reads results/<grid>/summary/")
    parser.add_argument("--results", type=Path, default=None, help="another results folder")
    args = parser.parse_args()
    source = args.results or ROOT / "results" / args.grid
    metrics_path = source / "summary" / "metrics.tsv"
    if not metrics_path.exists():
        raise SystemExit(f"{metrics_path} is missing: run `make -C experiments {args.grid}`")
    metrics = pd.read_csv(metrics_path, sep="\t")
    methods = list(dict.fromkeys(metrics["method"]))
    candidates = [m for m in methods if m not in BASELINES and not m.startswith("pca")]
    if "pca" not in methods or len(candidates) < 1:
        raise SystemExit("the grid needs `pca` and at least one candidate VAE method")
    table, chosen = held_out(metrics, candidates)
    out = ROOT / "experiments" / "results" / args.grid
    out.mkdir(parents=True, exist_ok=True)
    table.round(4).to_csv(out / "selection.tsv", sep="\t", index=False)
    seeds = sorted(int(seed) for seed in metrics["seed"].unique())
    text = [
        f"# Selection on `{args.grid}` (written by experiments/choose.py)",
        "",
        f"{metrics['dataset'].nunique()} datasets, seeds {seeds}, candidates "
        f"{', '.join(f'`{c}`' for c in candidates)}.",
        "",
        f"**The rule applied to every dataset chooses `{chosen}`.**",
        "",
        "## Held-out estimate (leave one dataset out)",
        "",
        "Each row: the candidate the rule picks on the other datasets, and its paired "
        "difference (mean over seeds) on the dataset left out.",
        "",
        table.round(3).to_markdown(index=False),
        "",
        counts(table).to_markdown(index=False),
        "",
        "## Every method, mean over seeds (in sample)",
        "",
        in_sample(metrics, candidates).to_markdown(),
        "",
    ]
    (out / "selection.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
