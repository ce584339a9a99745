"""The measurements of tools/gpu_check.py, each on any device (the tests run them on the
CPU): the data, training cells per second of ``preset: improved`` and of scvi-tools'
SCVI over a few hundred steps, one whole epoch, and whole trainings.

Cells per second are those of the training steps alone: ``WARMUP_STEPS`` steps first
(the CUDA graph's eager warm-up and capture among them, its capture time reported
apart), then up to ``STEPS`` steps or ``STEP_SECONDS`` seconds, whichever comes first,
timed between two synchronisations of the device. Minibatches are full ones of the
training cells, reshuffled at each pass, as in training; validation is not run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from scembed.scvi_model import _trainer_device
from scembed.synthetic import simulate_droplet_counts
from scembed.vae import train as train_module
from scembed.vae.device import resolve_device
from scembed.vae.feeding import TrainingData
from scembed.vae.params import resolve_params
from scembed.vae.step import TrainingSteps

WARMUP_STEPS, STEPS, STEP_SECONDS = 20, 300, 2.0
SPLIT = (0.85, 0.1, 0.05)  # train, validation, test


@dataclass
class Data:
    """Counts (CSR, as the workflow has them), the split and the labels (None: none)."""

    name: str
    counts: sp.csr_matrix
    split: np.ndarray
    labels: np.ndarray | None

    @property
    def n_train(self) -> int:
        return int((self.split == "train").sum())


def random_split(n_cells: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(["train", "validation", "test"], n_cells, p=SPLIT)


def droplet(n_cells: int, seed: int, n_genes: int = 2000, n_types: int = 20) -> Data:
    """Labelled droplet counts (``scembed.synthetic``, 2000 genes, 20 types)."""
    adata = simulate_droplet_counts(n_cells=n_cells, n_genes=n_genes, n_types=n_types, seed=seed)
    labels = adata.obs["cell_type"].to_numpy()
    return Data(f"droplet {n_cells:,}", adata.X, random_split(n_cells, seed), labels)


def tiled(data: Data, times: int, seed: int) -> Data:
    """``data``'s cells ``times`` over, unlabelled: as many stored values per cell as the
    simulation, in seconds rather than the minutes of simulating them all."""
    counts = sp.vstack([data.counts] * times, format="csr")
    n_cells = counts.shape[0]
    return Data(f"droplet {n_cells:,}", counts, random_split(n_cells, seed), None)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Throughput:
    """Training throughput of ``preset: improved`` on ``data`` on each device, the
    counts' setup (:class:`TrainingData`) shared by the runs of one device and feeding."""

    def __init__(self, data: Data):
        self.data, self.prepared = data, {}

    def vae(self, device: str, batch_size: int, seed: int, graphs=None, resident=None) -> dict:
        """One measurement: cells_per_s, steps, capture_s, setup_s, step, counts."""
        dev = resolve_device(device)
        key, start = (device, resident), time.perf_counter()
        if key not in self.prepared:
            self.prepared[key] = TrainingData(self.data.counts, dev, "observed", resident=resident)
        training, setup = self.prepared[key], time.perf_counter() - start
        params = resolve_params({"preset": "improved", "device": device, "batch_size": batch_size})
        model, optimizer, shuffle = train_module._build(
            self.data.counts.shape[1], params, seed, dev, []
        )
        steps = TrainingSteps(model, optimizer, training, batch_size, lambda _: None, graphs)
        model.train()
        steps.start_epoch(1.0)
        batches = _endless(
            training, np.flatnonzero(self.data.split == "train"), batch_size, shuffle
        )
        for _ in range(WARMUP_STEPS):
            steps.run(next(batches))
        synchronize(dev)
        begin, n_steps = time.perf_counter(), 0
        while n_steps < STEPS and time.perf_counter() - begin < STEP_SECONDS:
            steps.run(next(batches))
            n_steps += 1
        synchronize(dev)
        seconds = time.perf_counter() - begin
        batches.close()
        return {
            "cells_per_s": n_steps * batch_size / seconds,
            "steps": n_steps,
            "capture_s": steps.capture_seconds,
            "setup_s": setup,
            "step": "graph" if steps.graph is not None else "eager",
            "counts": "resident" if training.resident else "streamed",
        }


def _endless(training: TrainingData, train_idx: np.ndarray, batch_size: int, shuffle):
    """Full minibatches of the training cells, a fresh shuffle each pass."""
    cells = torch.as_tensor(train_idx)
    n_full = len(cells) - len(cells) % batch_size
    while True:
        order = cells[torch.randperm(len(cells), generator=shuffle)][:n_full]
        yield from training.minibatches(order, batch_size)


def scvi_throughput(data: Data, device: str, batch_size: int, seed: int, settings: dict) -> dict:
    """Training throughput of scvi-tools' SCVI (the workflow's ``kind: scvi`` ``settings``)
    on ``data``, timed by a Lightning callback over the same steps as ours."""
    import lightning.pytorch as pl
    import scvi
    from anndata import AnnData

    dev = resolve_device(device)

    class StepTimer(pl.Callback):
        def __init__(self):
            self.seen, self.cells, self.begin, self.seconds = 0, 0, None, None

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if self.seen == WARMUP_STEPS:
                synchronize(dev)
                self.begin = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.seen += 1
            if self.begin is None or self.seconds is not None:
                return
            self.cells += len(batch["X"])
            if self.seen >= WARMUP_STEPS + STEPS or time.perf_counter() - self.begin > STEP_SECONDS:
                synchronize(dev)
                self.seconds = time.perf_counter() - self.begin
                trainer.should_stop = True

    start = time.perf_counter()
    adata = AnnData(X=sp.csr_matrix(data.counts, dtype=np.float32))
    scvi.settings.seed = seed
    scvi.model.SCVI.setup_anndata(adata)
    model = scvi.model.SCVI(
        adata,
        n_latent=settings["n_latent"],
        n_hidden=settings["n_hidden"],
        n_layers=settings["n_layers"],
        dropout_rate=settings["dropout_rate"],
        gene_likelihood=settings["gene_likelihood"],
    )
    indices = [np.flatnonzero(data.split == name) for name in ("train", "validation", "test")]
    per_epoch = max(1, len(indices[0]) // batch_size)
    accelerator, devices = _trainer_device(dev)
    timer = StepTimer()
    setup = time.perf_counter() - start
    model.train(
        max_epochs=(WARMUP_STEPS + STEPS) // per_epoch + 2,
        accelerator=accelerator,
        devices=devices,
        batch_size=batch_size,
        early_stopping=False,
        plan_kwargs={"lr": settings["lr"]},
        datasplitter_kwargs={"external_indexing": indices},
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    if timer.seconds is None:
        raise RuntimeError(f"SCVI ran {timer.seen} steps, fewer than the {WARMUP_STEPS + 1} needed")
    return {
        "cells_per_s": timer.cells / timer.seconds,
        "steps": timer.seen - WARMUP_STEPS,
        "capture_s": 0.0,
        "setup_s": setup,
        "step": "lightning",
        "counts": "dataloader",
    }


def train_improved(data: Data, device: str, seed: int, **overrides):
    """A whole training of ``preset: improved``: (TrainResult, seconds, log lines)."""
    params = resolve_params({"preset": "improved", "device": device, **overrides})
    messages: list[str] = []
    start = time.perf_counter()
    result = train_module.train_vae(data.counts, data.split, params, seed, log=messages.append)
    return result, time.perf_counter() - start, messages
