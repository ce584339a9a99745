"""Benchmark: the two Leiden backends side by side on the workflow's own embeddings.

``leiden_flavor: leidenalg`` run to convergence on the directed graph is the book's
setting, which ``leiden_flavor: auto`` (the default) runs below 10^5 cells.
``leiden_flavor: igraph`` with ``leiden_n_iterations: 2`` and ``leiden_directed: false``
(scanpy's coming default, which ``auto`` runs from 10^5 cells) is much faster on large
graphs but gives other clusters. For
each embedding (an ``embedding.h5ad`` of a finished run) this runs the clustering job's
own code (``scembed.evaluate``, the UMAP skipped) with each setting on the same kNN graph
and prints the time of the Leiden run and of the matched-k bisection, the Leiden and
matched-k ARI against the labels, and the ARI between the two backends' Leiden clusters.
Writes results/bench/leiden.tsv, and with ``--doc`` the table as Markdown.

    .venv/bin/python tools/compare_leiden.py results/panel/*/pca/seed0/embedding.h5ad \
        --doc docs/leiden.md
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tools"))

from bench_cluster import SIZES, STAGE, cluster_params  # noqa: E402

LEIDENALG = ["leiden_flavor=leidenalg", "leiden_n_iterations=-1", "leiden_directed=true"]
IGRAPH = ["leiden_flavor=igraph", "leiden_n_iterations=2", "leiden_directed=false"]


def compare(path: Path, seed: int = 0) -> dict:
    """Both backends on one embedding: times, scores and their agreement."""
    import anndata as ad
    from sklearn.metrics import adjusted_rand_score

    from scembed.evaluate import evaluate_embedding

    stages: dict[str, float] = {}

    class Collect(logging.Handler):
        def emit(self, record):
            match = STAGE.match(record.getMessage())
            if match:
                stages[SIZES.sub("", match["stage"])] = float(match["seconds"])

    handler = Collect()
    logging.getLogger("scembed").addHandler(handler)
    logging.getLogger("scembed").setLevel(logging.INFO)
    adata = ad.read_h5ad(path)
    row = {"embedding": str(path), "n_cells": adata.n_obs}
    clusters = {}
    try:
        for name, overrides in (("leidenalg", LEIDENALG), ("igraph", IGRAPH)):
            stages.clear()
            data = adata.copy()
            scores = evaluate_embedding(
                data, seed, **cluster_params(overrides + ["umap_max_cells=0"])
            )
            clusters[name] = data.obs["leiden"].to_numpy()
            row |= {
                f"{name}_leiden_s": stages.get("Leiden"),
                f"{name}_bisection_s": stages.get("matched-k bisection"),
                f"{name}_ari": round(scores["ari"], 4),
                f"{name}_matched_ari": round(scores["matched_ari"], 4),
            }
    finally:
        logging.getLogger("scembed").removeHandler(handler)
    row["ari_between"] = round(adjusted_rand_score(clusters["leidenalg"], clusters["igraph"]), 4)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("embeddings", nargs="+", type=Path)
    parser.add_argument("--out", default=str(ROOT / "results/bench/leiden.tsv"))
    parser.add_argument("--doc", default=None, help="also write the table as Markdown here")
    args = parser.parse_args(argv)
    rows = []
    for path in args.embeddings:
        rows.append(compare(path))
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    table = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False)
    print(table.drop(columns="embedding").describe().loc[["mean"]].round(3).to_string())
    print(f"written to {args.out}")
    if args.doc:
        Path(args.doc).write_text(markdown(table))
        print(f"written to {args.doc}")
    return 0


def markdown(table: pd.DataFrame) -> str:
    """The table with a header saying how it was made, and the mean of each column."""
    shown = table.copy()
    shown.insert(0, "run", [_run_name(path) for path in shown.pop("embedding")])
    mean = shown.drop(columns="run").mean().round(3)
    shown.loc[len(shown)] = {"run": f"mean of {len(table)}", **mean.to_dict()}
    return "\n".join(
        [
            "# Leiden: leidenalg to convergence against igraph with 2 iterations",
            "",
            "Written by `tools/compare_leiden.py EMBEDDINGS --doc docs/leiden.md`: the "
            "clustering job's own code on each embedding with `leiden_flavor: leidenalg`, "
            "`leiden_n_iterations: -1`, `leiden_directed: true` (the book's setting, which "
            "`leiden_flavor: auto` runs below 10^5 cells) and with `igraph`, `2`, `false` "
            "(which it runs from there), on the same kNN graph (UMAP "
            "skipped). `*_leiden_s`: the Leiden run at resolution 1; `*_bisection_s`: the "
            "matched-k bisection; `*_ari`, `*_matched_ari`: against the labels; "
            "`ari_between`: the two backends' Leiden clusters against each other. Times "
            "on 2 cores beside other jobs; see scaling.md for 10^6 cells.",
            "",
            shown.to_markdown(index=False),
            "",
        ]
    )


def _run_name(path: str) -> str:
    """dataset/method/seed of a workflow's embedding path, else the path."""
    parts = Path(path).parts
    return "/".join(parts[-4:-1]) if len(parts) >= 4 else path


if __name__ == "__main__":
    sys.exit(main())
