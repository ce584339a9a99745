"""Benchmark: Leiden settings side by side on the workflow's own embeddings.

The reference is the book's setting (``leiden_flavor: leidenalg``, run to convergence on
the directed graph). Each candidate setting is run on the same kNN graph of each
embedding (an ``embedding.h5ad`` of a finished run: its labels, the schema's
``n_neighbors`` and ``knn_search``, the run's seed), with the clustering job's own code
(``scembed.cluster``): the Leiden run at the configured resolution and the matched-k
bisection, timed, each scored against the labels (ARI). Per dataset and method the
seeds are averaged; a candidate **passes** when its mean over those rows drops by at most
``--tolerance`` (0.01) from the reference and no row drops by more than the reference's
seed standard deviation there, on both the Leiden ARI and the matched-k ARI.

Writes results/bench/leiden.tsv (one row per embedding) and, with ``--doc``, the table
per dataset and method with the verdicts as Markdown:

    .venv/bin/python tools/compare_leiden.py \\
        results/panel/*/{pca,vae_improved}/seed*/embedding.h5ad --doc docs/leiden.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from bench_cluster import cluster_params  # noqa: E402

from scembed import numba_cache  # noqa: E402

SETTINGS = {  # name: (flavor, n_iterations, directed, the bisection's warm start)
    "leidenalg": ("leidenalg", -1, True, False),  # the book's: the reference
    "leidenalg_2it": ("leidenalg", 2, True, False),
    "leidenalg_2it_warm": ("leidenalg", 2, True, True),
    "leidenalg_1it": ("leidenalg", 1, True, False),
    "igraph": ("igraph", -1, False, False),
    "igraph_2it": ("igraph", 2, False, False),  # scanpy's coming default
}
REFERENCE = "leidenalg"
SCORES = ("ari", "matched_ari")


def compare(path: Path, names: list[str]) -> dict:
    """Every setting in ``names`` on the kNN graph of one embedding: times and scores."""
    import anndata as ad
    from sklearn.metrics import adjusted_rand_score

    from scembed.cluster import neighbors_graph
    from scembed.leiden import LeidenGraph, leiden_matched

    params = cluster_params([])
    adata = ad.read_h5ad(path)
    seed = int(adata.uns["embedding"].get("seed", 0)) if "embedding" in adata.uns else 0
    label_key = adata.uns["label_key"]
    scored = adata.obs[label_key].notna().to_numpy()
    labels = adata.obs[label_key].astype(str).to_numpy()[scored]
    neighbors_graph(adata, params["n_neighbors"], seed, params["knn_search"])
    row = {"embedding": str(path), **_run_parts(path), "n_cells": adata.n_obs}
    for name in names:
        flavor, n_iterations, directed, warm = SETTINGS[name]
        kwargs = {"flavor": flavor, "n_iterations": n_iterations, "directed": directed}
        start = time.perf_counter()
        graph = LeidenGraph.of(adata, seed, **kwargs)  # both runs' graph, as in the job
        clusters = pd.Series(graph.clusters(params["resolution"]), index=adata.obs_names)
        middle = time.perf_counter()
        matched = leiden_matched(
            adata,
            len(set(labels)),
            seed,
            params["bisection_max_steps"],
            known={float(params["resolution"]): clusters},
            warm_start=warm,
            graph=graph,
        )
        end = time.perf_counter()
        del graph
        row |= {
            f"{name}_leiden_s": round(middle - start, 2),
            f"{name}_bisection_s": round(end - middle, 2),
            f"{name}_ari": adjusted_rand_score(labels, clusters.to_numpy()[scored]),
            f"{name}_matched_ari": adjusted_rand_score(
                labels, matched["clusters"].to_numpy()[scored]
            ),
        }
    return row


def _run_parts(path: Path) -> dict:
    """dataset, method and seed of a workflow's embedding path (…/d/m/seedN/embedding.h5ad)."""
    parts = Path(path).parts
    if len(parts) >= 4 and parts[-2].startswith("seed"):
        return {"dataset": parts[-4], "method": parts[-3], "seed": int(parts[-2][4:])}
    return {"dataset": str(path), "method": "", "seed": 0}


def per_dataset(table: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Per dataset and method: the reference's mean and seed sd of each score, and each
    candidate's mean paired difference from it (same embedding, same graph)."""
    rows = []
    for (dataset, method), runs in table.groupby(["dataset", "method"], sort=True):
        row = {"dataset": dataset, "method": method, "seeds": len(runs)}
        for score in SCORES:
            reference = runs[f"{REFERENCE}_{score}"]
            row[f"{score}"] = reference.mean()
            row[f"{score}_sd"] = reference.std(ddof=1) if len(runs) > 1 else np.nan
            for name in names:
                if name != REFERENCE:
                    row[f"{name}_{score}_diff"] = (runs[f"{name}_{score}"] - reference).mean()
        for name in names:
            row[f"{name}_s"] = (runs[f"{name}_leiden_s"] + runs[f"{name}_bisection_s"]).mean()
        rows.append(row)
    return pd.DataFrame(rows)


def verdicts(summary: pd.DataFrame, names: list[str], tolerance: float) -> dict[str, str]:
    """Per candidate: passes, or which rule it breaks (mean drop, or rows below their sd)."""
    out = {}
    for name in names:
        if name == REFERENCE:
            continue
        problems = []
        for score in SCORES:
            diffs = summary[f"{name}_{score}_diff"]
            if diffs.mean() < -tolerance:
                problems.append(f"{score} mean {diffs.mean():+.3f}")
            below = summary[diffs < -summary[f"{score}_sd"].fillna(0)]
            for _, bad in below.iterrows():
                problems.append(
                    f"{bad['dataset']}/{bad['method']} {score} {bad[f'{name}_{score}_diff']:+.3f}"
                    f" (sd {bad[f'{score}_sd']:.3f})"
                )
        out[name] = "passes" if not problems else "fails: " + "; ".join(problems)
    return out


def workflow_setting() -> str | None:
    """The setting the workflow runs below 10^5 cells with the schema's defaults (the
    matched-k bisection is always warm-started), or None when none of SETTINGS is it."""
    params = cluster_params([])
    flavor = "leidenalg" if params["leiden_flavor"] == "auto" else params["leiden_flavor"]
    default = (flavor, params["leiden_n_iterations"], params["leiden_directed"], True)
    return next((name for name, value in SETTINGS.items() if value == default), None)


def markdown(table: pd.DataFrame, names: list[str], tolerance: float) -> str:
    """The per-dataset table, its means and the verdicts, with how it was made."""
    summary = per_dataset(table, names)
    means = summary.drop(columns=["dataset", "method"]).mean()
    shown = pd.concat(
        [summary, pd.DataFrame([{"dataset": "mean", "method": "", **means.to_dict()}])]
    )
    shown["seeds"] = shown["seeds"].round().astype(int)
    settings = ", ".join(
        f"`{name}` ({flavor}, "
        f"{'to convergence' if it < 0 else f'{it} iterations'}, "
        f"{'directed' if directed else 'undirected'}"
        f"{', bisection warm-started' if warm else ''})"
        for name, (flavor, it, directed, warm) in SETTINGS.items()
        if name in names
    )
    lines = [
        "# Leiden settings on the development panel",
        "",
        "Written by `tools/compare_leiden.py EMBEDDINGS --doc docs/leiden.md` on "
        f"{len(table)} embeddings of the workflow (`make -C experiments panel` with 5 "
        "seeds, methods `pca` and `vae_improved`). Settings: "
        f"{settings}; `{REFERENCE}` is the reference (the book's). Each runs on the same kNN "
        "graph (the schema's `n_neighbors` and `knn_search`, the run's seed): Leiden at "
        "resolution 1 (`ari`) and the matched-k bisection (`matched_ari`), against the "
        "labels. Per dataset and method, over the seeds: the reference's mean and seed sd, "
        "each candidate's mean paired difference (`*_diff`), and the seconds of Leiden "
        "plus bisection (`*_s`, 2 cores, beside other jobs).",
        "",
        f"The workflow's default below 10^5 cells: `{workflow_setting()}`.",
        "",
        f"A candidate passes when its mean difference is at least -{tolerance} and no row "
        "drops by more than the reference's seed sd, on both scores:",
        "",
        *[
            f"- `{name}`: {verdict}"
            for name, verdict in verdicts(summary, names, tolerance).items()
        ],
        "",
        shown.round(3).to_markdown(index=False),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("embeddings", nargs="*", type=Path)
    parser.add_argument(
        "--settings",
        default=",".join(SETTINGS),
        help=f"comma-separated, among {list(SETTINGS)} (the reference is always run)",
    )
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--out", default=str(ROOT / "results/bench/leiden.tsv"))
    parser.add_argument("--doc", default=None, help="also write the table as Markdown here")
    parser.add_argument(
        "--from-table",
        action="store_true",
        help="write --doc from the --out table of an earlier run instead of clustering",
    )
    args = parser.parse_args(argv)
    numba_cache.enable()  # before the clustering's imports declare numba kernels
    names = [REFERENCE] + [n for n in args.settings.split(",") if n and n != REFERENCE]
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; choose among {list(SETTINGS)}")
    if args.from_table:
        table = pd.read_csv(args.out, sep="\t")
        names = [name for name in SETTINGS if f"{name}_ari" in table.columns]
    else:
        rows = []
        for path in args.embeddings:
            rows.append(compare(path, names))
            shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}
            print({k: v for k, v in shown.items() if k != "embedding"}, flush=True)
        table = pd.DataFrame(rows)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, sep="\t", index=False)
        print(f"written to {args.out}")
    text = markdown(table, names, args.tolerance)
    print(text)
    if args.doc:
        Path(args.doc).write_text(text)
        print(f"written to {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
