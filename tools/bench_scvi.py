"""Benchmark: ``preset: improved`` against scvi-tools' SCVI, on the same data and machine.

Both train on the same preprocessed counts with the same train/validation split, on
CPU (or the device given), one run of each in turn (improved, scvi, improved, scvi, ...)
so that a slow spell of a shared machine slows both alike. SCVI runs with the
workflow's `kind: scvi` defaults (scVI's own: 400 epochs below 20,000 cells, no early
stopping); ``improved`` with its preset (early stopping on the validation loss).

Per run: epochs, seconds per epoch (median, train + validation), seconds to the end of
training (the whole train call: setup, every epoch, the embedding) and training cells
per second. Then the ratios scvi / improved. Writes results/bench/vae_vs_scvi.tsv.

    .venv/bin/python tools/bench_scvi.py --h5ad ../shared/data/kang_pbmc.h5ad --repeats 2
    .venv/bin/python tools/bench_scvi.py   # pbmc68k, offline
"""

import argparse
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]

from scembed.preprocess import preprocess  # noqa: E402
from scembed.scvi_model import train_scvi  # noqa: E402
from scembed.sources import finish, read_h5ad, read_pbmc68k  # noqa: E402
from scembed.vae.params import resolve_params  # noqa: E402
from scembed.vae.train import train_vae  # noqa: E402


def schema_defaults(definition: str) -> dict:
    from scembed.schema import load_schema

    schema = load_schema()
    if definition == "preprocess":
        properties = schema["properties"]["preprocess"]["properties"]
    else:
        properties = schema["$defs"][definition]["properties"]
    return {k: v["default"] for k, v in properties.items() if "default" in v}


def load(h5ad: str | None, min_genes: int) -> ad.AnnData:
    """Preprocessed cells as the workflow makes them (the schema's preprocess defaults)."""
    if h5ad:
        raw = finish(read_h5ad(h5ad, "X"), "cell_type", h5ad, {"source": "h5ad"})
        n_top_genes = min(1000, raw.n_vars)
    else:
        raw = finish(read_pbmc68k(), "bulk_labels", "pbmc68k", {"source": "pbmc68k"})
        n_top_genes = raw.n_vars
    settings = {**schema_defaults("preprocess"), "n_top_genes": n_top_genes}
    return preprocess(raw, **{**settings, "min_genes": min_genes})


def run_improved(pre, seed, device, with_latent=False):
    """(seconds, history), and the embedding ``with_latent``, of preset improved."""
    params = resolve_params({"preset": "improved", "device": device})
    start = time.perf_counter()
    result = train_vae(pre.layers["counts"], pre.obs["split"].to_numpy(), params, seed, log=_quiet)
    seconds = time.perf_counter() - start
    return (seconds, result.history, result.latent) if with_latent else (seconds, result.history)


def run_scvi(pre, seed, device, with_latent=False):
    """(seconds, history), and the embedding ``with_latent``, of the workflow's SCVI."""
    settings = {k: v for k, v in schema_defaults("scvi").items() if k != "kind"}
    settings["device"] = device
    start = time.perf_counter()
    result = train_scvi(
        pre.layers["counts"], pre.obs["split"].to_numpy(), seed=seed, log=_quiet, **settings
    )
    seconds = time.perf_counter() - start
    return (seconds, result.history, result.latent) if with_latent else (seconds, result.history)


def _quiet(_message):
    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--h5ad", help="an h5ad of raw counts with obs['cell_type']")
    parser.add_argument("--min-genes", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results/bench/vae_vs_scvi.tsv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pre = load(args.h5ad, args.min_genes)
    n_train = int((pre.obs["split"] == "train").sum())
    dataset = Path(args.h5ad).stem if args.h5ad else "pbmc68k"
    print(f"{dataset}: {pre.n_obs} cells ({n_train} training) x {pre.n_vars} genes")
    rows = []
    for repeat in range(args.repeats):
        for method, run in (("improved", run_improved), ("scvi", run_scvi)):
            seconds, history = run(pre, repeat, args.device)
            epochs = len(history)
            per_epoch = float(np.nanmedian(history["seconds"]))
            rows.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "seed": repeat,
                    "device": args.device,
                    "epochs": epochs,
                    "seconds_per_epoch": per_epoch,
                    "seconds_total": seconds,
                    "train_cells_per_second": n_train / per_epoch,
                }
            )
            print(
                f"{method:9s} seed {repeat}: {epochs} epochs, {per_epoch:.3f} s/epoch, "
                f"{seconds:.1f} s in all, {n_train / per_epoch:,.0f} training cells/s",
                flush=True,
            )
    table = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False, float_format="%.4f")
    means = table.groupby("method")[["seconds_per_epoch", "seconds_total", "epochs"]].mean()
    print(means.to_string(float_format=lambda v: f"{v:.3f}"))
    ratio = means.loc["scvi"] / means.loc["improved"]
    print(
        f"scvi / improved: {ratio['seconds_per_epoch']:.2f}x per epoch, "
        f"{ratio['seconds_total']:.2f}x to the end of training; written to {args.out}"
    )


if __name__ == "__main__":
    main()
