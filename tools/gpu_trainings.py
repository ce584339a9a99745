"""Whole trainings of tools/gpu_check.py: CUDA against the CPU on the demo (and CUDA
against itself), and ``preset: improved`` at several batch sizes and seeds; any device
for the measurements, CUDA for the study (the tests run them on the CPU)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from bench_scvi import schema_defaults
from gpu_measure import Data, train_improved
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from scembed.scvi_model import train_scvi

SCVI_EPOCHS = 100  # SCVI's trainings in the agreement check (its default is 400 on the demo)
STUDY_BATCH_SIZES, STUDY_SEEDS = (128, 512, 2048), 3


def neighbour_agreement(a: np.ndarray, b: np.ndarray, k: int = 15) -> float:
    """The mean share of each cell's k nearest neighbours that both embeddings share."""
    near_a = NearestNeighbors(n_neighbors=k + 1).fit(a).kneighbors(a, return_distance=False)
    near_b = NearestNeighbors(n_neighbors=k + 1).fit(b).kneighbors(b, return_distance=False)
    shared = [len(set(x[1:]) & set(y[1:])) / k for x, y in zip(near_a, near_b, strict=True)]
    return float(np.mean(shared))


def kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x)


def agreement(
    demo: Data, seed: int, devices=("cpu", "cuda"), overrides: dict | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Whole trainings with one seed on the demo on both ``devices`` (ours twice on the
    second): a row per training, and lines on how close the embeddings are.
    ``overrides`` replace keys of the preset (the tests shorten the trainings)."""
    first, second = devices
    runs = {}  # (method, device label): (embedding, history)
    rows = []
    settings = {key: v for key, v in schema_defaults("scvi").items() if key != "kind"}
    for device, label in ((first, first), (second, second), (second, f"{second} again")):
        result, seconds, _ = train_improved(demo, device, seed, **(overrides or {}))
        runs[("improved", label)] = (result.latent, result.history)
        rows.append(_training_row("improved", label, demo, result.history, seconds))
    for device in devices:
        start = time.perf_counter()
        scvi = train_scvi(
            demo.counts,
            demo.split,
            seed=seed,
            log=lambda _: None,
            **{**settings, "device": device, "max_epochs": SCVI_EPOCHS},
        )
        runs[("scvi", device)] = (scvi.latent, scvi.history)
        rows.append(_training_row("scvi", device, demo, scvi.history, time.perf_counter() - start))
    k, lines = len(np.unique(demo.labels)), []
    for method in ("improved", "scvi"):
        a, b = runs[(method, first)][0], runs[(method, second)][0]
        ari = adjusted_rand_score(kmeans(a, k, seed), kmeans(b, k, seed))
        lines.append(
            f"- {method}, seed {seed}, {second} against {first}: {neighbour_agreement(a, b):.1%} "
            f"of the 15 nearest neighbours shared, k-means ARI {ari:.3f} between the embeddings"
        )
    (latent, history), (again, history_again) = (
        runs[("improved", second)],
        runs[("improved", f"{second} again")],
    )
    same = np.array_equal(latent, again) and history.drop(columns="seconds").equals(
        history_again.drop(columns="seconds")
    )
    lines.append(
        f"- improved, two runs on {second} with the same seed: "
        + ("the same losses and embedding, bit for bit" if same else "different numbers")
        + f" (largest difference in the embedding {np.abs(latent - again).max():.3g})"
    )
    return pd.DataFrame(rows), lines


def _training_row(method, device, data: Data, history: pd.DataFrame, seconds: float) -> dict:
    per_epoch = float(np.nanmedian(history["seconds"]))
    return {
        "method": method,
        "device": device,
        "epochs": len(history),
        "s_per_epoch": round(per_epoch, 4),
        "cells_per_s": round(data.n_train / per_epoch),
        "total_s": round(seconds, 1),
    }


def batch_study(
    data: Data,
    seed: int,
    device="cuda",
    batch_sizes=STUDY_BATCH_SIZES,
    seeds=STUDY_SEEDS,
    overrides: dict | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """``preset: improved`` at each of ``batch_sizes`` (the first is the default) with
    ``seeds`` seeds on ``device``: the mean and sd over seeds of training cells per
    second (per epoch, with its validation), epochs, seconds to train and the k-means
    ARI against the labels; and lines saying whether each larger batch keeps the ARI
    within the default's seed sd, with the proposal that follows (a larger default only
    when it keeps the ARI and at least doubles the cells per second). ``overrides`` as
    in :func:`agreement`."""
    runs, k = [], len(np.unique(data.labels))
    for batch_size in batch_sizes:
        for run_seed in range(seed, seed + seeds):
            settings = {**(overrides or {}), "batch_size": batch_size}
            result, seconds, _ = train_improved(data, device, run_seed, **settings)
            ari = adjusted_rand_score(data.labels, kmeans(result.latent, k, run_seed))
            per_epoch = float(np.median(result.history["seconds"]))
            runs.append((batch_size, data.n_train / per_epoch, len(result.history), seconds, ari))
            print(f"  batch_size {batch_size}, seed {run_seed}: ARI {ari:.3f}", flush=True)
    runs = pd.DataFrame(runs, columns=["batch_size", "cells_per_s", "epochs", "train_s", "ari"])
    table = runs.groupby("batch_size").agg(["mean", "std"])
    table.columns = [f"{name}_{stat}" for name, stat in table.columns]
    base, lines, proposal = table.loc[batch_sizes[0]], [], batch_sizes[0]
    for batch_size in batch_sizes[1:]:
        row = table.loc[batch_size]
        keeps = row["ari_mean"] >= base["ari_mean"] - base["ari_std"]
        speed = row["cells_per_s_mean"] / base["cells_per_s_mean"]
        if keeps and speed >= 2:
            proposal = batch_size
        lines.append(
            f"- batch_size {batch_size}: {speed:.1f}x the cells/s of {batch_sizes[0]}, ARI "
            f"{row['ari_mean']:.3f} against {base['ari_mean']:.3f} +- {base['ari_std']:.3f}: "
            + ("keeps the ARI within the seed sd" if keeps else "loses ARI beyond the seed sd")
        )
    lines.append(
        f"- proposal: batch_size {proposal} on {device}"
        + (" (the default stays)" if proposal == batch_sizes[0] else "")
    )
    return table.reset_index().round(3), lines
