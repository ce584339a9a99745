"""The GPU path, checked in one short run (`make gpu-check`, a few minutes on a GPU node).

1. ``preset: improved`` and ``kind: scvi`` train on the demo's 700 PBMCs on the CPU and on
   CUDA with the same seed; for each, seconds per epoch and training cells per second on
   both devices, and how close the CUDA embedding is to the CPU one: the share of each
   cell's 15 nearest neighbours that both embeddings agree on, and the ARI of their
   k-means clusters (10 clusters, the labels' number). Bit-identity is not expected
   across devices (other kernels, other summation order).
2. One epoch of ``preset: improved`` on 10^5 synthetic droplet cells (2000 genes) on each
   device: seconds and cells per second.

Without a CUDA device it says so, runs nothing, and exits with status 1.

    .venv/bin/python tools/gpu_check.py [--cells 100000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tools"))

from bench_scvi import load, run_improved, run_scvi  # noqa: E402

from scembed.synthetic import simulate_droplet_counts  # noqa: E402
from scembed.vae.params import resolve_params  # noqa: E402
from scembed.vae.train import train_vae  # noqa: E402

NO_CUDA = (
    "No CUDA device: torch {torch} sees none (torch.cuda.is_available() is False), so "
    "there is no GPU path to check here. Run it on a GPU node (e.g. srun --gpus=1 make "
    "gpu-check), with a CUDA build of torch."
)


def neighbour_agreement(a: np.ndarray, b: np.ndarray, k: int = 15) -> float:
    """The mean share of each cell's k nearest neighbours that both embeddings share."""
    near_a = NearestNeighbors(n_neighbors=k + 1).fit(a).kneighbors(a, return_distance=False)
    near_b = NearestNeighbors(n_neighbors=k + 1).fit(b).kneighbors(b, return_distance=False)
    shared = [len(set(x[1:]) & set(y[1:])) / k for x, y in zip(near_a, near_b, strict=True)]
    return float(np.mean(shared))


def kmeans_agreement(a: np.ndarray, b: np.ndarray, k: int, seed: int) -> float:
    def clusters(x):
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)

    return float(adjusted_rand_score(clusters(a), clusters(b)))


def demo_runs(seed: int, devices=("cpu", "cuda")) -> Iterator[str]:
    """Both methods on both devices on the demo data: one line per method and device,
    then one per method comparing the second device's embedding with the first's. Each
    line comes as soon as it is measured, so a failure later keeps what came before."""
    pre = load(None, min_genes=50)
    n_train = int((pre.obs["split"] == "train").sum())
    k = pre.obs["bulk_labels"].nunique()
    yield f"demo data: {pre.n_obs} cells ({n_train} training) x {pre.n_vars} genes"
    for method, run in (("improved", run_improved), ("scvi", run_scvi)):
        latents = {}
        for device in devices:
            seconds, history, latent = run(pre, seed, device, with_latent=True)
            latents[device] = latent
            per_epoch = float(np.nanmedian(history["seconds"]))
            yield (
                f"{method:8s} {device:4s}: {len(history)} epochs, {per_epoch:.3f} s/epoch, "
                f"{n_train / per_epoch:,.0f} training cells/s, {seconds:.1f} s in all"
            )
        first, second = (latents[device] for device in devices)
        agree = neighbour_agreement(first, second)
        ari = kmeans_agreement(first, second, k, seed)
        yield (
            f"{method:8s} {devices[1]} vs {devices[0]}, seed {seed}: {agree:.1%} of the 15 "
            f"nearest neighbours shared, k-means ARI {ari:.3f} between the two embeddings"
        )


def droplet_epoch(n_cells: int, seed: int, devices=("cpu", "cuda"), n_genes=2000) -> Iterator[str]:
    """One epoch of preset improved on ``n_cells`` droplet cells, on each device."""
    data = simulate_droplet_counts(n_cells=n_cells, n_genes=n_genes, n_types=20, seed=seed)
    split = np.where(np.random.default_rng(seed).random(n_cells) < 0.9, "train", "validation")
    n_train = int((split == "train").sum())
    for device in devices:
        params = resolve_params(
            {"preset": "improved", "device": device, "max_epochs": 1, "kl_warmup_epochs": 0}
        )
        start = time.perf_counter()
        result = train_vae(data.X, split, params, seed, log=lambda _: None)
        total = time.perf_counter() - start
        epoch = float(result.history["seconds"].iloc[0])
        yield (
            f"droplet {device:4s}: one epoch of {n_cells:,} cells ({n_train:,} training) "
            f"in {epoch:.2f} s, {n_train / epoch:,.0f} training cells/s ({total:.1f} s with "
            "setup and embedding)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA.format(torch=torch.__version__))
        return 1
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}: {torch.cuda.get_device_name()}")
    print(f"CPU threads: {torch.get_num_threads()}")
    for line in chain(demo_runs(args.seed), droplet_epoch(args.cells, args.seed)):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
