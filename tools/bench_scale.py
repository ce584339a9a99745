"""Benchmark: the workflow itself on droplet-like synthetic data of growing size.

For each size (default 10^4, 10^5 and 10^6 cells x 2000 genes, `profile: droplet`),
runs the whole workflow (import, preprocess, PCA, one epoch of `preset: improved`,
clustering and metrics of both embeddings) with `profiles/local` in its own
`results/bench/scale/n{cells}/`, and reads each rule's wall time and peak resident
memory from Snakemake's `benchmark:` files, for training the seconds per epoch and
training cells per second from its history, and the stages each job logs (rows with
path "stage": kNN graph, Leiden, UMAP, matched-k bisection, k-means, scores, ...).

At the sizes where it fits (default up to 10^5), it also runs the two stages that held
the data dense before (PCA on the densified matrix, the VAE with every cell in one dense
tensor) side by side with their sparse path, each in a fresh process on the workflow's
own preprocessed file, and checks that both give the same result (PCA scores to float
tolerance, the one-epoch VAE embedding exactly). Writes `results/bench/scale.tsv` and
prints it.

    .venv/bin/python tools/bench_scale.py                     # make bench-scale
    .venv/bin/python tools/bench_scale.py --sizes 10000 100000 --dense-max 100000
"""

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]

from scembed.runtime import read_h5ad_parts  # noqa: E402

RULES = ("import_dataset", "preprocess", "embed_pca", "train_vae", "cluster")
VAE = {  # preset improved, one epoch (no warm-up to wait for)
    "kind": "vae",
    "preset": "improved",
    "kl_warmup_epochs": 0,
    "max_epochs": 1,
    "patience": 1,
}


def config(n_cells: int, results_dir: Path) -> dict:
    return {
        "datasets": {
            "scale": {
                "source": "synthetic",
                "profile": "droplet",
                "n_cells": n_cells,
                "n_genes": 2000,
                "n_types": 20,
                "preprocess": {"n_top_genes": 2000, "min_genes": 50},
            }
        },
        "methods": {"pca": {"kind": "pca"}, "vae": VAE},
        "seeds": [0],
        "baseline": "pca",
        "results_dir": str(results_dir),
    }


def run_workflow(n_cells: int, out: Path, cores: int) -> Path:
    results = out / f"n{n_cells}"
    results.mkdir(parents=True, exist_ok=True)
    config_file = results / "config.yaml"
    config_file.write_text(yaml.safe_dump(config(n_cells, results)))
    command = [
        str(ROOT / ".venv/bin/snakemake"),
        "--profile",
        "profiles/local",
        "--cores",
        str(cores),
        "--configfile",
        str(config_file),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    print(f"n={n_cells}: workflow {time.perf_counter() - start:.0f} s, exit {done.returncode}")
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"the workflow failed at {n_cells} cells")
    return results


def workflow_rows(n_cells: int, results: Path) -> list[dict]:
    rows = []
    for rule in RULES:
        for tsv in sorted((results / "benchmarks" / rule).rglob("*.tsv")):
            bench = pd.read_csv(tsv, sep="\t").iloc[0]
            what = str(tsv.relative_to(results / "benchmarks" / rule).with_suffix(""))
            row = {
                "n_cells": n_cells,
                "path": "workflow",
                "stage": rule if rule in ("import_dataset", "preprocess") else f"{rule}:{what}",
                "seconds": round(float(bench["s"]), 1),
                "max_rss_mb": round(float(bench["max_rss"]), 0),
            }
            if rule == "train_vae":
                history = pd.read_csv(results / "scale/vae/seed0/history.tsv", sep="\t")
                split = read_h5ad_parts(results / "scale/preprocessed.h5ad", x=False).obs
                n_train = int((split["split"] == "train").sum())
                seconds = float(history["seconds"].median())
                row["s_per_epoch"] = round(seconds, 2)
                row["cells_per_s"] = round(n_train / seconds)
            rows.append(row)
    return rows


STAGE = re.compile(r"^\S+ \S+ INFO (?P<stage>[^:]+): (?P<seconds>\d+(?:\.\d+)?) s$")


def stage_rows(n_cells: int, results: Path) -> list[dict]:
    """The stages each job logged (``scembed.runtime.timed``: kNN graph, Leiden, UMAP,
    matched-k bisection, ...), so the table says where a rule's time goes."""
    rows = []
    for rule in RULES:
        for log in sorted((results / "logs" / rule).rglob("*.log")):
            what = str(log.relative_to(results / "logs" / rule).with_suffix(""))
            for line in log.read_text().splitlines():
                match = STAGE.match(line)
                if match:
                    rows.append(
                        {
                            "n_cells": n_cells,
                            "path": "stage",
                            "stage": f"{rule}:{what}: {match['stage']}",
                            "seconds": float(match["seconds"]),
                        }
                    )
    return rows


# --------------------------------------------------------------------------- dense vs sparse


def stage(name: str, path: str, layout: str, result: str) -> None:
    """One stage in this (fresh) process; prints its seconds and peak RSS as JSON."""
    import anndata as ad
    import torch

    from scembed.pca import pca_embedding
    from scembed.vae.params import resolve_params
    from scembed.vae.train import train_vae

    torch.set_num_threads(2)
    pre = ad.read_h5ad(path)
    train = (pre.obs["split"] == "train").to_numpy()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    if name == "pca":
        X = pre.X.toarray() if layout == "dense" else pre.X
        out = pca_embedding(X, train, 10, 0)
    else:
        counts = pre.layers["counts"]
        counts = counts.toarray() if layout == "dense" else counts
        params = resolve_params({k: v for k, v in VAE.items() if k != "kind"})
        out = train_vae(counts, pre.obs["split"].to_numpy(), params, 0, log=lambda m: None).latent
    seconds = time.perf_counter() - start
    np.save(result, out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "max_rss_mb": peak, "loaded_mb": base}))


def dense_rows(n_cells: int, results: Path) -> list[dict]:
    path = str(results / "scale/preprocessed.h5ad")
    rows, outputs = [], {}
    for name in ("pca", "vae"):
        for layout in ("sparse", "dense"):
            result = str(results / f"bench_{name}_{layout}.npy")
            done = subprocess.run(
                [sys.executable, __file__, "--stage", name, path, layout, result],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{name} ({layout}) failed at {n_cells} cells")
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            outputs[name, layout] = np.load(result)
            rows.append(
                {
                    "n_cells": n_cells,
                    "path": layout,
                    "stage": "embed_pca" if name == "pca" else "train_vae (1 epoch)",
                    "seconds": round(measured["seconds"], 1),
                    "max_rss_mb": round(measured["max_rss_mb"]),
                    "note": f"process peak; {measured['loaded_mb']:.0f} MB after reading the file",
                }
            )
        sparse, dense = outputs[name, "sparse"], outputs[name, "dense"]
        if name == "pca":
            same = np.allclose(sparse, dense, rtol=1e-4, atol=1e-4 * np.abs(dense).max())
        else:
            same = np.array_equal(sparse, dense)
        rows[-1]["note"] += f"; same result as sparse: {same}"
        print(f"n={n_cells}: {name} dense == sparse: {same}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dense-max", type=int, default=100_000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results/bench/scale"))
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="do not run the workflow: read the benchmark files of an earlier run (e.g. "
        "after rerunning one rule with --forcerun) and redo the dense/sparse comparison",
    )
    parser.add_argument("--stage", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        stage(*args.stage)
        return
    out = Path(args.out)
    rows = []
    for n_cells in args.sizes:
        if args.tables_only:
            results = out / f"n{n_cells}"
        else:
            results = run_workflow(n_cells, out, args.cores)
        rows += workflow_rows(n_cells, results) + stage_rows(n_cells, results)
        if n_cells <= args.dense_max:
            rows += dense_rows(n_cells, results)
        table = pd.DataFrame(rows)
        table.to_csv(out.parent / "scale.tsv", sep="\t", index=False)  # after every size
    print(table.to_string(index=False))
    print(f"written to {out.parent / 'scale.tsv'}")


if __name__ == "__main__":
    main()
