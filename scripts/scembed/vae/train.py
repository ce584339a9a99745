"""Training loop of the VAE: seeds, minibatches, early stopping, the embedding.

A plain PyTorch loop: the counts live in one float32 tensor on the device, or stay
sparse in host memory with each minibatch densified on its own
(:class:`TrainingData`); shuffled minibatches are taken by index and size factors are
computed per minibatch from per-cell and per-gene sums, so no dense cells x genes
size-factor matrix and no DataLoader are needed. The count constant of the loss is
computed once per cell, and Adam updates one flat buffer of all parameters
(:func:`scembed.vae.optim.flat_adam`). Each cell's batch, when the model uses one, is
taken by the same indices as its counts.
"""

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scembed.checks import check_counts
from scembed.vae import checkpoint as ckpt
from scembed.vae import fused
from scembed.vae.device import resolve_device
from scembed.vae.module import SIZE_FACTORS, VAE
from scembed.vae.optim import flat_adam
from scembed.vae.params import VAEParams
from scembed.vae.stopping import EarlyStopping

COUNTS_FIX = (
    "Pass the raw UMI/read counts (e.g. adata.layers['counts']), not normalised or log "
    "data: every VAE likelihood models counts."
)


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


def size_factors(
    row_sums: torch.Tensor, col_sums: torch.Tensor, total: float, idx: torch.Tensor, kind: str
) -> torch.Tensor:
    """Size factors of the cells ``idx``, broadcastable to (len(idx), genes).

    "book": the book's dense matrix outer(row_sums, col_sums) rescaled to the mean of
    the counts, i.e. row_sums[i] * col_sums[j] / total, one minibatch at a time.
    "library": row_sums[i] / mean(row_sums), the usual library-size factor (len(idx) x 1).
    "observed": row_sums[i], the cell's observed total count (scVI's library; pairs with
    ``decoder_output: softmax``, whose rates are fractions of it).
    ``row_sums`` and ``col_sums`` are over all cells and genes, ``total`` their sum.
    """
    if kind == "book":
        return row_sums[idx, None] * (col_sums / total)[None, :]
    if kind == "library":
        return (row_sums[idx] * (row_sums.shape[0] / total))[:, None]
    if kind == "observed":
        return row_sums[idx, None]
    raise ValueError(f"size_factor {kind!r} is not one of {SIZE_FACTORS}")


class TrainingData:
    """The counts of every cell, with what each minibatch needs: the per-cell count
    constant of the loss and the row and column sums of the size factors.

    Dense input: one float32 tensor on the device (on CPU it shares memory with a float32
    input). Sparse input (the workflow's CSR counts): the counts stay CSR in host memory
    and each minibatch is densified on its own and moved to the device (from pinned
    memory, asynchronously, on CUDA), so that memory beyond the data is bounded by the
    batch size. Both give the same minibatches, bit for bit.

    ``batch``: each cell's batch code (int64), kept on the device beside the sums; None
    when the model has no batch.
    """

    def __init__(
        self,
        counts,
        device: torch.device,
        size_factor: str,
        chunk_size: int = 1024,
        batch: np.ndarray | None = None,
    ):
        self.device = device
        self.batch_codes = (
            None if batch is None else torch.as_tensor(batch, dtype=torch.int64, device=device)
        )
        self.sparse = sp.issparse(counts)
        if self.sparse:
            self.csr = sp.csr_matrix(counts, dtype=np.float32)  # may share the indices
            if not self.csr.has_sorted_indices:  # sort a copy, never the caller's matrix
                self.csr = self.csr.copy()
                self.csr.sort_indices()
            self.x = None
            self.log_factorial, row_sums, col_sums = self._sparse_sums(chunk_size)
        else:
            x = torch.from_numpy(np.ascontiguousarray(counts, dtype=np.float32))
            self.x = x.to(device)
            self.log_factorial = fused.log_factorial(self.x, chunk_size=chunk_size)
            row_sums = np.asarray(counts.sum(axis=1, dtype=np.float64)).ravel()
            col_sums = np.asarray(counts.sum(axis=0, dtype=np.float64)).ravel()
        self.n_cells = counts.shape[0]
        self.total = float(row_sums.sum())
        self.row_sums = torch.as_tensor(row_sums, dtype=torch.float32, device=device)
        self.col_sums = torch.as_tensor(col_sums, dtype=torch.float32, device=device)
        self.size_factor = size_factor

    def _sparse_sums(self, chunk_size: int):
        """(count constant per cell, row sums, column sums) of the CSR counts, a chunk of
        cells at a time through one dense buffer reused for every chunk: the values are
        those of the dense path, bit for bit, and no allocation churn fragments the
        heap (a fresh dense array per chunk grew the process by gigabytes at 10^6
        cells). The sums are of integers, hence exact in float64 in any order."""
        n_cells, n_genes = self.csr.shape
        host = np.zeros((min(chunk_size, n_cells), n_genes), dtype=np.float32)
        scratch = torch.empty(host.shape, dtype=torch.float32, device=self.device)
        log_factorial = torch.empty(n_cells, dtype=torch.float32, device=self.device)
        row_sums = np.empty(n_cells)
        col_sums = np.zeros(n_genes)
        for start, stop in _chunks(n_cells, chunk_size):
            rows = self.csr[start:stop]
            block = host[: stop - start]
            block.fill(0)
            rows.toarray(out=block)
            x = torch.from_numpy(block).to(self.device)  # no copy on the CPU
            values = torch.add(x, 1.0, out=scratch[: stop - start]).lgamma_()
            torch.sum(values, -1, out=log_factorial[start:stop])
            row_sums[start:stop] = np.asarray(rows.sum(axis=1, dtype=np.float64)).ravel()
            col_sums += np.bincount(rows.indices, weights=rows.data, minlength=n_genes)
        return log_factorial, row_sums, col_sums

    def _dense_rows(self, rows: np.ndarray) -> torch.Tensor:
        """The CSR rows ``rows`` as one dense float32 tensor on the device."""
        dense = torch.from_numpy(self.csr[rows].toarray())
        if self.device.type == "cuda":
            return dense.pin_memory().to(self.device, non_blocking=True)
        return dense.to(self.device)

    def counts(self, idx: torch.Tensor) -> torch.Tensor:
        """Dense counts of the cells ``idx`` (cells x genes, on the device)."""
        if self.sparse:
            return self._dense_rows(idx.cpu().numpy())
        return self.x[idx]

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(counts, size factors, count constant) of the cells ``idx``."""
        sf = size_factors(self.row_sums, self.col_sums, self.total, idx, self.size_factor)
        return self.counts(idx), sf, self.log_factorial[idx]

    def batch_index(self, idx: torch.Tensor) -> torch.Tensor | None:
        """The batch codes of the cells ``idx``; None without a batch."""
        return None if self.batch_codes is None else self.batch_codes[idx]


def _chunks(n: int, size: int):
    """(start, stop) of consecutive chunks of ``size`` over ``range(n)``."""
    return [(start, min(start + size, n)) for start in range(0, n, size)]


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
    split, train_idx, val_idx = _checked_input(counts, split, params, checkpoint_every)
    codes, names = _checked_batch(batch, batch_names, counts.shape[0], params.use_batch)
    device = resolve_device(params.device)
    log(f"device: {device}")
    if names:
        log(f"batch: {len(names)} batches {names}, a covariate of the encoder and the decoder")
    elif batch is not None:
        log("batch: not used (use_batch is false)")
    data = TrainingData(counts, device, params.size_factor, batch=codes)
    train_t = torch.as_tensor(train_idx, device=device)
    val_t = torch.as_tensor(val_idx, device=device)

    checkpointer = ckpt.Checkpointer(
        checkpoint, checkpoint_every, params, seed, data, split, log, batches=names
    )
    build = functools.partial(_build, counts.shape[1], params, seed, device, names)
    model, optimizer, shuffle, saved = checkpointer.resume(build)  # saved: None, or resumed
    first_epoch = saved["epoch"] + 1 if saved else 1
    rows = [tuple(row) for row in saved["history"]] if saved else []
    stopping = EarlyStopping.resumed(params.patience, saved)
    for epoch in range(first_epoch, params.max_epochs + 1):
        if stopping.stopped_early:  # the checkpoint was written by the epoch that stopped
            break
        start_time = time.perf_counter()
        order = train_t[torch.randperm(len(train_t), generator=shuffle).to(device)]
        weight = kl_weight(epoch, params.kl_warmup_epochs)
        train = _train_epoch(model, optimizer, data, order, params, weight)
        train_loss = _finite_loss(epoch, "training", *train, stopping.best_state)
        validation = _evaluate(model, data, val_t, params.batch_size)
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


def _checked_input(counts, split, params: VAEParams, checkpoint_every) -> tuple:
    """(split as str, train indices, validation indices); ValueError (or DataError)
    naming what is wrong with the counts, the split, the minibatch or checkpoint_every."""
    if counts.ndim != 2:
        raise ValueError(f"counts must be a 2-d cells x genes matrix, got shape {counts.shape}")
    check_counts(counts, "VAE input", fix=COUNTS_FIX)
    n_cells = counts.shape[0]
    split = np.asarray(split).astype(str)
    if split.shape != (n_cells,):
        raise ValueError(f"split has shape {split.shape}, expected ({n_cells},), one per cell")
    unknown = sorted(set(np.unique(split)) - {"train", "validation", "test"})
    if unknown:
        raise ValueError(f"split holds {unknown}; allowed: train, validation, test")
    train_idx, val_idx = np.flatnonzero(split == "train"), np.flatnonzero(split == "validation")
    batch_size = params.batch_size
    if batch_size < 2:
        raise ValueError(f"batch_size {batch_size}: BatchNorm needs at least 2 cells per batch")
    if len(train_idx) < (batch_size if params.drop_last else 2):
        raise ValueError(
            f"{len(train_idx)} training cells but batch_size {batch_size} with "
            f"drop_last={params.drop_last}: no full minibatch; lower batch_size "
            f"(at most {len(train_idx)}) or use more cells"
        )
    if len(val_idx) == 0:
        raise ValueError(
            "no validation cells: early stopping needs some; give the split a validation fraction"
        )
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int):
        raise ValueError(f"checkpoint_every: {checkpoint_every!r} must be an integer >= 0")
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every: {checkpoint_every} must be >= 0 (0: never)")
    return split, train_idx, val_idx


def _checked_batch(batch, batch_names, n_cells: int, use_batch: bool) -> tuple:
    """(batch codes as int64, batch names) when the batch is used, else (None, []);
    ValueError when the codes do not fit the cells or the names."""
    if batch is None or not use_batch:
        return None, []
    codes = np.asarray(batch)
    if codes.shape != (n_cells,):
        raise ValueError(f"batch has shape {codes.shape}, expected ({n_cells},), one per cell")
    if codes.dtype.kind not in "iu":
        raise ValueError(
            f"batch must hold integer codes (scembed.batches.batch_codes), not {codes.dtype}"
        )
    if n_cells and codes.min() < 0:
        raise ValueError(f"batch holds the negative code {codes.min()}")
    n_batch = int(codes.max()) + 1 if n_cells else 0
    names = [str(i) for i in range(n_batch)] if batch_names is None else list(batch_names)
    if len(names) < n_batch:
        raise ValueError(f"batch holds the code {n_batch - 1} but {len(names)} batch_names")
    return codes.astype(np.int64, copy=False), [str(name) for name in names]


def _build(
    n_genes: int, params: VAEParams, seed: int, device: torch.device, batch_names: list[str]
):
    """(model, optimiser, shuffle generator), seeded: the same seed, the same start; with
    ``batch_names``, a model conditioned on that many batches."""
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    model = VAE(
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
    optimizer = flat_adam(model, params.lr, eps=params.adam_eps, weight_decay=params.weight_decay)
    return model, optimizer, shuffle


def _train_epoch(model, optimizer, data: TrainingData, order, params: VAEParams, kl_scale=1.0):
    """One pass over the shuffled training cells ``order``; (reconstruction, KL) per cell."""
    model.train()
    batch_size = params.batch_size
    n_used = len(order) - len(order) % batch_size if params.drop_last else len(order)
    reconst_sum = torch.zeros((), device=data.device)
    kl_sum = torch.zeros((), device=data.device)
    n_seen = 0
    for start in range(0, n_used, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2:  # BatchNorm needs two cells; only possible without drop_last
            continue
        x, sf, log_factorial = data.batch(idx)
        out = model.loss(
            x,
            sf,
            kl_weight=kl_scale,
            log_factorial=log_factorial,
            batch_index=data.batch_index(idx),
        )
        optimizer.zero_grad(set_to_none=False)  # zeroes the flat gradient buffer in place
        out.loss.backward()
        optimizer.step()
        reconst_sum += out.reconst_loss.detach().sum()
        kl_sum += out.kl_divergence_z.detach().sum()
        n_seen += len(idx)
    reconst, kl = (torch.stack([reconst_sum, kl_sum]) / n_seen).tolist()
    return reconst, kl


def _evaluate(model, data: TrainingData, idx, batch_size: int) -> tuple[float, float]:
    """Validation (reconstruction, KL) per cell, in eval mode without autograd."""
    model.eval()
    reconst_sum = torch.zeros((), device=data.device)
    kl_sum = torch.zeros((), device=data.device)
    with torch.inference_mode():
        for start in range(0, len(idx), batch_size):
            cells = idx[start : start + batch_size]
            x, sf, log_factorial = data.batch(cells)
            out = model.loss(
                x, sf, log_factorial=log_factorial, batch_index=data.batch_index(cells)
            )
            reconst_sum += out.reconst_loss.sum()
            kl_sum += out.kl_divergence_z.sum()
    reconst, kl = (torch.stack([reconst_sum, kl_sum]) / len(idx)).tolist()
    return reconst, kl


def _embed(model, data: TrainingData, batch_size: int) -> np.ndarray:
    """Encoder mean q(z|x) of every cell (given its own batch, when the model has one),
    in eval mode without autograd, a minibatch at a time."""
    model.eval()
    parts = []
    with torch.inference_mode():
        for start, stop in _chunks(data.n_cells, batch_size):
            idx = torch.arange(start, stop, device=data.device)
            parts.append(model.inference(data.counts(idx), data.batch_index(idx))["qz_m"])
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
