"""Benchmark: exact against approximate neighbours, the time, the recall and the ARI.

``cluster.knn_search: auto`` chooses exact (brute-force, scikit-learn) or approximate
(NN-descent, pynndescent) neighbours by the number of cells. This measures what that
choice trades, on the workflow's own path: ``synthetic`` droplet counts (2000 genes, 20
types) of each size, preprocessed with the schema's defaults, a 10-component PCA (the
schema's default), then for each search the kNN graph's time, the recall of the
approximate neighbours against the exact ones (on a seeded sample of 2000 cells),
and Leiden at resolution 1 (the workflow's defaults) on each graph: its ARI against the
types and against the other graph's clusters. Writes results/bench/knn.tsv.

    .venv/bin/python tools/bench_knn.py                      # 10^4, 3x10^4, 10^5 cells
    .venv/bin/python tools/bench_knn.py --cells 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

from scembed import numba_cache  # noqa: E402

numba_cache.enable()  # before pynndescent and umap declare their kernels
from scembed import cluster  # noqa: E402
from scembed.embedding import EMBEDDING_KEY  # noqa: E402
from scembed.leiden import leiden  # noqa: E402
from scembed.metrics import cluster_scores  # noqa: E402
from scembed.pca import pca_embedding  # noqa: E402
from scembed.preprocess import preprocess  # noqa: E402
from scembed.synthetic import simulate_droplet_counts  # noqa: E402


def schema_defaults(section: str) -> dict:

    from scembed.schema import load_schema

    schema = load_schema()
    top = schema["properties"][section]  # its own defaults win over the shared $defs
    shared = schema["$defs"][top["$ref"].split("/")[-1]]["properties"]
    defaults = {key: value["default"] for key, value in shared.items() if "default" in value}
    own = top.get("properties", {}).items()
    return {**defaults, **{key: value["default"] for key, value in own if "default" in value}}


def neighbour_sets(adata, cells: np.ndarray) -> list[set]:
    distances = adata.obsp["distances"].tocsr()
    return [set(distances.indices[distances.indptr[c] : distances.indptr[c + 1]]) for c in cells]


def measure(n_cells: int, seed: int = 0) -> list[dict]:
    counts = simulate_droplet_counts(n_cells, 2000, 20, seed=seed)
    pre = preprocess(counts, **{**schema_defaults("preprocess"), "split_seed": seed})
    train = (pre.obs["split"] == "train").to_numpy()
    pre.obsm[EMBEDDING_KEY] = pca_embedding(pre.X, train, 10, seed)
    knn = schema_defaults("cluster")
    cells = np.random.default_rng(seed).choice(pre.n_obs, min(2000, pre.n_obs), replace=False)
    graphs, rows = {}, []
    for search in ("exact", "approximate"):
        adata = pre.copy()
        start = time.perf_counter()
        cluster.neighbors_graph(adata, knn["n_neighbors"], seed, search)
        seconds = time.perf_counter() - start
        clusters = leiden(
            adata,
            1.0,
            seed,
            flavor=knn["leiden_flavor"],
            n_iterations=knn["leiden_n_iterations"],
            directed=knn["leiden_directed"],
        )
        graphs[search] = (neighbour_sets(adata, cells), clusters)
        rows.append(
            {
                "n_cells": pre.n_obs,
                "search": search,
                "graph_s": round(seconds, 1),
                "leiden_ari": round(cluster_scores(pre.obs["cell_type"], clusters)["ari"], 4),
                "n_clusters": int(clusters.nunique()),
            }
        )
        print(rows[-1], flush=True)
    exact, approximate = graphs["exact"], graphs["approximate"]
    recall = np.mean([len(a & e) / len(e) for a, e in zip(approximate[0], exact[0], strict=True)])
    agreement = cluster_scores(exact[1], approximate[1])["ari"]
    for row in rows:
        row["recall_vs_exact"] = 1.0 if row["search"] == "exact" else round(float(recall), 4)
        row["ari_between_graphs"] = round(agreement, 4)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--out", default=str(ROOT / "results/bench/knn.tsv"))
    parser.add_argument(
        "--doc", default=None, help="also write the table as Markdown here (docs/bench_knn.md)"
    )
    args = parser.parse_args()
    rows = [row for n_cells in args.cells for row in measure(n_cells)]
    table = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False)
    print(table.to_markdown(index=False))
    print(f"written {args.out}")
    if args.doc:
        Path(args.doc).write_text(markdown(table))
        print(f"written {args.doc}")
    return 0


def markdown(table: pd.DataFrame) -> str:
    """The table with what it measured, for the docs."""
    return "\n".join(
        [
            "# Exact against approximate neighbours",
            "",
            "Written by `tools/bench_knn.py --doc docs/bench_knn.md` on synthetic droplet counts"
            " (2000 genes, 20 types), preprocessed with the defaults, 10 PCA components."
            " Cells kept after preprocessing; `graph_s` is the kNN graph's time in one"
            " process: the approximate search's first graph includes numba compiling"
            " NN-descent (about 30-45 s, paid by every clustering job that uses it), the"
            " later rows do not; `recall_vs_exact`: the share of each sampled cell's exact"
            " neighbours that the approximate search found; `leiden_ari`: Leiden at"
            " resolution 1 (leidenalg to convergence) against the 20 simulated types;"
            " `ari_between_graphs`: the two graphs' Leiden clusters against each other.",
            "",
            table.to_markdown(index=False),
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
