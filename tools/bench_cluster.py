"""Benchmark: a clustering job's fixed cost and its stages, each run in a fresh process.

The clustering job (rule ``cluster``) reads an embedding, builds the kNN graph, runs
Leiden, the matched-k bisection, k-means, the UMAP and the scores. Much of its time on
small data is fixed cost: starting Python, importing scanpy, and numba compiling the
kernels of pynndescent and umap-learn, which the workflow caches on disk
(``scembed.numba_cache``). This runs the job's own code (``scembed.evaluate``) on a
seeded Gaussian-blob embedding (``--dims`` dimensions, ``--types`` blobs) of each size in
a fresh Python process, first with an empty numba cache (cold: what the first job on a
machine pays), then with the cache it filled (warm: every later job), and prints per run
the whole process's wall time, the imports, and the stages the job logs (kNN graph,
Leiden, UMAP, matched-k bisection, k-means, scores). Writes results/bench/cluster.tsv.

    .venv/bin/python tools/bench_cluster.py                       # 700 and 10^4 cells
    .venv/bin/python tools/bench_cluster.py --cells 1000000 --warm-only
    .venv/bin/python tools/bench_cluster.py --cells 1000000 --warm-only --set leiden_flavor=igraph
    .venv/bin/python tools/bench_cluster.py --embedding results/d/pca/seed0/embedding.h5ad

``--set KEY=VALUE`` replaces a ``cluster`` key's default (the schema's) in the job.
``--embedding`` clusters a saved embedding (the workflow's ``embedding.h5ad``, with its
labels and split) instead of blobs. The job runs on as many threads as the workflow
gives it (``scembed.resources.cluster_threads``, at most this machine's cores) with
Snakemake's thread variables (``OMP_NUM_THREADS``, ...); ``--threads`` sets another number.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STAGE = re.compile(r"^(?P<stage>.+): (?P<seconds>\d+(?:\.\d+)?) s$")
SIZES = re.compile(r" of \d+ cells| at resolution \S+")  # one column per stage, any size


def blobs(n_cells: int, dims: int, types: int, seed: int = 0):
    """A seeded embedding of ``types`` Gaussian blobs with its labels and a split."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(types, size=n_cells)
    centres = rng.normal(scale=4.0, size=(types, dims))
    points = (centres[labels] + rng.normal(size=(n_cells, dims))).astype(np.float32)
    split = np.where(rng.random(n_cells) < 0.9, "train", "test")
    return points, labels.astype(str), split


def blob_anndata(n_cells: int, dims: int, types: int):
    """The blobs as the workflow's embedding.h5ad holds an embedding: ``obsm["X_emb"]``,
    ``obs["label"]`` (named by ``uns["label_key"]``) and ``obs["split"]``."""
    import anndata as ad

    from scembed.embedding import EMBEDDING_KEY

    points, labels, split = blobs(n_cells, dims, types)
    adata = ad.AnnData(obs=pd.DataFrame({"label": labels, "split": split}))
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    adata.obsm[EMBEDDING_KEY] = points
    adata.uns["label_key"] = "label"
    return adata


def schema_default(section: str) -> dict:
    """The schema's defaults of a top-level section: the one home of the defaults."""

    from scembed.schema import load_schema

    schema = load_schema()
    keys = schema["properties"][section]["properties"]
    return {key: spec["default"] for key, spec in keys.items()}


def cluster_params(overrides: list[str]) -> dict:
    """The schema's ``cluster`` defaults, with ``KEY=VALUE`` overrides (YAML values)."""
    import yaml

    params = schema_default("cluster")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in params:
            raise SystemExit(
                f"--set {item!r}: give KEY=VALUE with a cluster key of {sorted(params)}"
            )
        params[key] = yaml.safe_load(value)
    return params


def job(
    n_cells: int, dims: int, types: int, overrides: list[str], embedding: str, threads: int
) -> None:
    """The clustering job's work in this fresh process, on blobs or on ``embedding``
    (a path, or "" for blobs); prints its stages as JSON."""
    start = time.perf_counter()
    from scembed.threads import compute_threads, pin_numba_threads

    # as the workflow's job: numba's threads fixed before anything imports numba
    computing = compute_threads(schema_default("compute_threads")["cluster"], threads)
    pin_numba_threads(computing)
    from scembed import numba_cache

    numba_cache.enable()  # as the job: the kernels in the folder of SCEMBED_NUMBA_CACHE
    import anndata as ad

    from scembed.evaluate import evaluate_embedding

    imported = time.perf_counter()
    stages = []

    class Collect(logging.Handler):
        def emit(self, record):
            match = STAGE.match(record.getMessage())
            if match:
                stages.append((SIZES.sub("", match["stage"]), float(match["seconds"])))
                print(f"  {record.getMessage()}", file=sys.stderr, flush=True)  # as it happens

    logging.getLogger("scembed").addHandler(Collect())
    logging.getLogger("scembed").setLevel(logging.INFO)
    adata = ad.read_h5ad(embedding) if embedding else blob_anndata(n_cells, dims, types)
    read = time.perf_counter()
    scores = evaluate_embedding(
        adata, 0, threads=threads, compute_threads=computing, **cluster_params(overrides)
    )
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "imports": imported - start,
                "read": read - imported,
                "work": done - read,
                "stages": stages,
                "ari": scores["ari"],
                "matched_ari": scores["matched_ari"],
            }
        )
    )


def job_threads(n_cells: int) -> int:
    """The threads the workflow gives a clustering job of ``n_cells`` cells, at most this
    machine's cores."""
    from scembed.resources import cluster_threads_of_cells

    return min(cluster_threads_of_cells(n_cells), os.cpu_count() or 1)


def run(
    n_cells: int,
    dims: int,
    types: int,
    cache: str,
    overrides: list[str],
    embedding: str = "",
    threads: int = 1,
) -> dict:
    """One job in a fresh process with the numba cache ``cache``; its times."""
    start = time.perf_counter()
    sets = [arg for item in overrides for arg in ("--set", item)]
    # what Snakemake sets for a job of `threads` threads (snakemake.shell)
    thread_vars = ("OMP", "GOTO", "OPENBLAS", "MKL", "NUMEXPR")
    env = {f"{name}_NUM_THREADS": str(threads) for name in thread_vars}
    env["VECLIB_MAXIMUM_THREADS"] = str(threads)
    done = subprocess.run(  # the job's stages go to this terminal as they finish
        [
            sys.executable,
            __file__,
            "--job",
            str(n_cells),
            str(dims),
            str(types),
            "--embedding",
            embedding,
            "--threads",
            str(threads),
            *sets,
        ],
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        env={**os.environ, **env, "SCEMBED_NUMBA_CACHE": cache},
    )
    total = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the clustering job of {n_cells} cells failed (its output is above)")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return {"total": total, **measured}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[700, 10_000])
    parser.add_argument("--dims", type=int, default=10)
    parser.add_argument("--types", type=int, default=10)
    parser.add_argument("--warm-only", action="store_true", help="use the workflow's cache")
    parser.add_argument("--out", default=str(ROOT / "results/bench/cluster.tsv"))
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a cluster key's value"
    )
    parser.add_argument(
        "--embedding", default="", help="a saved embedding.h5ad to cluster instead of blobs"
    )
    parser.add_argument("--threads", type=int, help="the job's threads (default: the workflow's)")
    parser.add_argument("--job", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cluster_params(args.set)  # a bad key fails here, before any job
    if args.job:
        job(*args.job, args.set, args.embedding, args.threads or 1)
        return 0
    if args.embedding:
        if not Path(args.embedding).is_file():
            raise SystemExit(f"--embedding {args.embedding}: no such file")
        from scembed.resources import n_obs

        args.cells = [n_obs(args.embedding)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="scembed-numba-") as empty:
        for n_cells in args.cells:
            threads = args.threads or job_threads(n_cells)
            caches = {"warm": ""} if args.warm_only else {"cold": empty, "warm": empty}
            for state, cache in caches.items():
                measured = run(
                    n_cells, args.dims, args.types, cache, args.set, args.embedding, threads
                )
                fixed = measured["total"] - sum(seconds for _, seconds in measured["stages"])
                row = {
                    "n_cells": n_cells,
                    "embedding": args.embedding or f"blobs ({args.dims} dimensions)",
                    "threads": threads,
                    "cache": state,
                    "settings": " ".join(args.set),
                    "total_s": round(measured["total"], 1),
                    "imports_s": round(measured["imports"], 1),
                    "read_s": round(measured["read"], 1),
                    "fixed_s": round(fixed, 1),
                    **{stage: seconds for stage, seconds in measured["stages"]},
                    "ari": round(measured["ari"], 4),
                    "matched_ari": round(measured["matched_ari"], 4),
                }
                rows.append(row)
                print(
                    f"{n_cells:>9,} cells, {threads} thread{'s' * (threads > 1)}, {state} cache: "
                    f"{row['total_s']} s in all "
                    f"(imports {row['imports_s']} s; outside the logged stages "
                    f"{row['fixed_s']} s); "
                    + ", ".join(f"{s} {v:.1f} s" for s, v in measured["stages"]),
                    flush=True,
                )
            for path in Path(empty).iterdir():  # the next size starts cold again
                shutil.rmtree(path)
    table = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
