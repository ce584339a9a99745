"""Training loop of the VAE: seeds, minibatches, early stopping, the embedding.

A plain PyTorch loop: the counts are on the training device (dense, or CSR whose
minibatch rows are gathered there; streamed from the host where they do not fit:
:mod:`scembed.vae.feeding`); shuffled minibatches are taken by index and size factors
are computed per minibatch from per-cell and per-gene sums, so no dense cells x genes
size-factor matrix and no DataLoader are needed. The count constant of the loss is
computed once per cell, and Adam updates one flat buffer of all parameters
(:func:`scembed.vae.optim.flat_adam`). Each cell's batch, when the model uses one, is
taken by the same indices as its counts. A step reads nothing back to the host (the
losses add up on the device, read once an epoch), and on CUDA it is replayed from a
captured graph (:mod:`scembed.vae.step`).
"""

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from scembed.vae import checkpoint as ckpt
from scembed.vae.device import resolve_device
from scembed.vae.feeding import TrainingData
from scembed.vae.inputs import checked_batch, checked_input
from scembed.vae.module import VAE
from scembed.vae.optim import flat_adam
from scembed.vae.params import VAEParams
from scembed.vae.step import TrainingSteps
from scembed.vae.stopping import EarlyStopping


class NonFiniteLossError(RuntimeError):
    """The loss or the embedding became NaN or infinite.

    ``epoch`` is the epoch where it happened; ``best_state`` the best state_dict so far
    (on CPU), or None, so that the caller can still save it.
    """

    def __init__(self, message: str, epoch: int, best_state: dict | None):
        super().__init__(message)
        self.epoch = epoch
        self.best_state = best_state


@dataclass
class TrainResult:
    """What ``train_vae`` returns; ``state_dict`` is the restored best state, on CPU;
    ``batches`` the names of the batches the model was conditioned on (empty: none)."""

    latent: np.ndarray
    history: pd.DataFrame
    state_dict: dict
    device: str
    stop_reason: str
    best_epoch: int
    batches: list[str] = field(default_factory=list)


def kl_weight(epoch: int, warmup_epochs: int) -> float:
    """Weight of the KL term in training epoch ``epoch`` (1-based): rises linearly from 0
    over ``warmup_epochs`` epochs (scVI's KL warm-up), then 1; always 1 without warm-up."""
    return 1.0 if warmup_epochs == 0 else min(1.0, (epoch - 1) / warmup_epochs)


def train_vae(
    counts,
    split,
    params: VAEParams,
    seed: int,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[int], None] = lambda epoch: None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    batch: np.ndarray | None = None,
    batch_names: Sequence[str] | None = None,
) -> TrainResult:
    """Train the VAE on the "train" cells, early-stop on the "validation" cells, embed all.

    ``batch``: each cell's batch as integer codes 0 .. n_batches - 1 (as
    :func:`scembed.batches.batch_codes` gives them), named by ``batch_names`` (default
    "0", "1", ...). With ``params.use_batch`` the batch is a one-hot covariate of the
    encoder and the decoder (:mod:`scembed.vae.nn`), taken with each minibatch, and the
    validation loss and the embedding use each cell's own batch; without it, or with
    ``batch`` None, the batch is ignored and the network, its random streams and every
    number are those of a run without a batch.

    ``log`` receives the progress lines; ``on_epoch(epoch)`` is called after each epoch
    (the benchmark interleaves another loop there).

    With ``checkpoint`` (a path), the training state is written there atomically every
    ``checkpoint_every`` epochs and after the last one (0: never), and a checkpoint of
    the same parameters, seed, device and data found there at the start is resumed from
    its epoch (:mod:`scembed.vae.checkpoint`); the result is then bit-identical, on the
    CPU, to an uninterrupted run. A checkpoint of other batches is not resumed (its log
    line names both). The caller removes the file once it has the result.

    With ``kl_warmup_epochs`` the training loss weighs the KL by :func:`kl_weight`; the
    validation loss is always the full negative ELBO, and the best epoch and early
    stopping only consider epochs after the warm-up (the warm-up is not cut short).

    ``counts``: cells x genes counts (numpy or scipy sparse); ``split``: one of "train",
    "validation", "test" per cell. On CPU the same seed gives a bit-identical latent.
    Raises ValueError on bad input and NonFiniteLossError if the loss or the embedding
    becomes NaN or infinite.
    """
    split, train_idx, val_idx = checked_input(counts, split, params, checkpoint_every)
    codes, names = checked_batch(batch, batch_names, counts.shape[0], params.use_batch)
    device = resolve_device(params.device)
    log(f"device: {device}")
    if names:
        log(f"batch: {len(names)} batches {names}, a covariate of the encoder and the decoder")
    elif batch is not None:
        log("batch: not used (use_batch is false)")
    data = TrainingData(counts, device, params.size_factor, batch=codes, log=log)
    train_order, val_order = torch.as_tensor(train_idx), torch.as_tensor(val_idx)

    checkpointer = ckpt.Checkpointer(
        checkpoint, checkpoint_every, params, seed, data, split, log, batches=names
    )
    build = functools.partial(_build, counts.shape[1], params, seed, device, names)
    model, optimizer, shuffle, saved = checkpointer.resume(build)  # saved: None, or resumed
    first_epoch = saved["epoch"] + 1 if saved else 1
    rows = [tuple(row) for row in saved["history"]] if saved else []
    stopping = EarlyStopping.resumed(params.patience, saved)
    steps = TrainingSteps(model, optimizer, data, params.batch_size, log)
    for epoch in range(first_epoch, params.max_epochs + 1):
        if stopping.stopped_early:  # the checkpoint was written by the epoch that stopped
            break
        start_time = time.perf_counter()
        order = train_order[torch.randperm(len(train_order), generator=shuffle)]
        weight = kl_weight(epoch, params.kl_warmup_epochs)
        train = _train_epoch(model, steps, data, order, params, weight)
        train_loss = _finite_loss(epoch, "training", *train, stopping.best_state)
        validation = _evaluate(model, data, val_order, params.batch_size)
        val_loss = _finite_loss(epoch, "validation", *validation, stopping.best_state)
        seconds = time.perf_counter() - start_time
        rows.append((epoch, train_loss, val_loss, seconds))
        log(f"epoch {epoch}: train {train_loss:.4f}, validation {val_loss:.4f}, {seconds:.2f} s")
        on_epoch(epoch)

        if weight >= 1.0:  # while warming up, the model so far is not the one to keep
            stopping.update(epoch, val_loss, model)
        last = stopping.stopped_early or epoch == params.max_epochs
        checkpointer.save_if_due(epoch, last, model, optimizer, shuffle, rows, stopping.state())

    stop_reason = stopping.reason(params.max_epochs)
    log(stop_reason)
    model.load_state_dict(stopping.best_state)
    latent = _embed(model, data, params.batch_size)
    if not np.isfinite(latent).all():
        raise NonFiniteLossError(
            f"the embedding of the best epoch ({stopping.best_epoch}) is not finite; "
            "set encoder_input: log1p or preset: stable",
            stopping.best_epoch,
            stopping.best_state,
        )
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "validation_loss", "seconds"])
    return TrainResult(
        latent, history, stopping.best_state, str(device), stop_reason, stopping.best_epoch, names
    )


def _build(
    n_genes: int, params: VAEParams, seed: int, device: torch.device, batch_names: list[str]
):
    """(model, optimiser, shuffle generator), seeded: the same seed, the same start; with
    ``batch_names``, a model conditioned on that many batches."""
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    model = build_model(n_genes, params, batch_names, device)
    optimizer = flat_adam(model, params.lr, eps=params.adam_eps, weight_decay=params.weight_decay)
    return model, optimizer, shuffle


def build_model(
    n_genes: int,
    params: VAEParams,
    batch_names: Sequence[str] = (),
    device: torch.device | str = "cpu",
) -> VAE:
    """The network :func:`train_vae` trains for ``params`` (a model conditioned on the
    batches ``batch_names``, when given), on ``device``: load a trained state_dict into
    it (``TrainResult.state_dict``). Its initial weights come from torch's global random
    state; the training seeds that state first."""
    batch_names = list(batch_names)
    return VAE(
        n_genes,
        n_latent=params.n_latent,
        n_hidden=params.n_hidden,
        n_layers=params.n_layers,
        likelihood=params.likelihood,
        posterior_scale=params.posterior_scale,
        encoder_input=params.encoder_input,
        dropout=params.dropout,
        decoder_output=params.decoder_output,
        n_batch=len(batch_names),
        batch_names=batch_names or None,
    ).to(device)


def _train_epoch(model, steps: TrainingSteps, data: TrainingData, order, params, kl_scale=1.0):
    """One pass over the shuffled training cells ``order`` (on the CPU); (reconstruction,
    KL) per cell."""
    model.train()
    batch_size = params.batch_size
    n_used = len(order) - len(order) % batch_size if params.drop_last else len(order)
    steps.start_epoch(kl_scale)
    n_seen = 0
    for batch in data.minibatches(order[:n_used], batch_size):
        if len(batch.cells) < 2:  # BatchNorm needs two cells; only possible without drop_last
            continue
        steps.run(batch)
        n_seen += len(batch.cells)
    reconst, kl = (steps.totals() / n_seen).tolist()
    return reconst, kl


def _evaluate(model, data: TrainingData, order, batch_size: int) -> tuple[float, float]:
    """Validation (reconstruction, KL) per cell of the cells ``order``, in eval mode
    without autograd."""
    model.eval()
    reconst_sum = torch.zeros((), device=data.device)
    kl_sum = torch.zeros((), device=data.device)
    with torch.inference_mode():
        for batch in data.minibatches(order, batch_size):
            out = model.loss(
                batch.counts(),
                data.size_factors(batch.cells),
                log_factorial=data.log_factorial[batch.cells],
                batch_index=data.batch_index(batch.cells),
            )
            reconst_sum += out.reconst_loss.sum()
            kl_sum += out.kl_divergence_z.sum()
    reconst, kl = (torch.stack([reconst_sum, kl_sum]) / len(order)).tolist()
    return reconst, kl


def _embed(model, data: TrainingData, batch_size: int) -> np.ndarray:
    """Encoder mean q(z|x) of every cell (given its own batch, when the model has one),
    in eval mode without autograd, a minibatch at a time."""
    model.eval()
    parts = []
    with torch.inference_mode():
        for batch in data.minibatches(torch.arange(data.n_cells), batch_size):
            qz = model.inference(batch.counts(), data.batch_index(batch.cells))
            parts.append(qz["qz_m"])
    return torch.cat(parts).cpu().numpy()


def _finite_loss(epoch: int, phase: str, reconst: float, kl: float, best_state) -> float:
    """The loss ``reconst + kl``; NonFiniteLossError naming the non-finite term(s) and
    the fix when one is NaN or infinite."""
    terms = [
        name for name, value in (("reconstruction", reconst), ("KL", kl)) if not np.isfinite(value)
    ]
    if terms:
        raise NonFiniteLossError(
            f"epoch {epoch}: the {phase} {' and '.join(terms)} loss is not finite "
            f"(reconstruction {reconst}, KL {kl}); set encoder_input: log1p, a lower lr, "
            "or preset: stable",
            epoch,
            best_state,
        )
    return reconst + kl
