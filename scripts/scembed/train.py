"""Training loop of the VAE: parameters, device, seeds, early stopping, embedding.

A plain PyTorch loop: the counts live in one float32 tensor on the device, shuffled
minibatches are sliced from it by index and size factors are computed per minibatch
from per-cell and per-gene sums, so no dense cells x genes size-factor matrix and no
DataLoader are needed. The count constant of the loss is computed once per cell, and
Adam updates one flat buffer of all parameters (``flat_adam``).
"""

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scembed import fused
from scembed.distributions import LIKELIHOODS
from scembed.module import ENCODER_INPUTS, VAE
from scembed.nn import POSTERIOR_SCALES
from scembed.sources import check_counts

SIZE_FACTORS = ("book", "library")
COUNTS_FIX = (
    "Pass the raw UMI/read counts (e.g. adata.layers['counts']), not normalised or log "
    "data: every VAE likelihood models counts."
)


@dataclass
class VAEParams:
    """Hyperparameters of the VAE and its training; the defaults are the book's."""

    likelihood: str = "zinb"
    n_latent: int = 10
    n_hidden: int = 128
    n_layers: int = 2
    batch_size: int = 100
    lr: float = 1e-3
    max_epochs: int = 500
    patience: int = 10
    encoder_input: str = "counts"
    device: str = "auto"
    posterior_scale: str = "softplus"
    size_factor: str = "book"
    drop_last: bool = True


PRESETS: dict[str, dict] = {
    "book": dataclasses.asdict(VAEParams()),
    "stable": {
        **dataclasses.asdict(VAEParams()),
        "encoder_input": "log1p",
        "posterior_scale": "exp_logvar",
    },
}
"""Named starting points: ``book`` reproduces the chapter, ``stable`` fixes its fragility."""

_CHOICES = {
    "likelihood": tuple(LIKELIHOODS),
    "encoder_input": ENCODER_INPUTS,
    "posterior_scale": POSTERIOR_SCALES,
    "size_factor": SIZE_FACTORS,
}
_POSITIVE_INTS = ("n_latent", "n_hidden", "n_layers", "batch_size", "max_epochs", "patience")
_DEVICE_RE = re.compile(r"auto|cpu|cuda(?::(\d+))?")


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
    """What ``train_vae`` returns; ``state_dict`` is the restored best state, on CPU."""

    latent: np.ndarray
    history: pd.DataFrame
    state_dict: dict
    device: str
    stop_reason: str
    best_epoch: int


def resolve_params(params: dict) -> VAEParams:
    """Build VAEParams from a preset (key ``preset``, default "book") and overrides.

    Raises ValueError on an unknown preset, key or value, naming the allowed ones.
    """
    params = dict(params or {})
    preset = params.pop("preset", "book")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {sorted(PRESETS)}")
    fields = [f.name for f in dataclasses.fields(VAEParams)]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(f"unknown VAE parameter(s) {unknown}; allowed: {['preset', *fields]}")
    values = {**PRESETS[preset], **params}
    for key, allowed in _CHOICES.items():
        if values[key] not in allowed:
            raise ValueError(f"{key}: {values[key]!r} is not one of {list(allowed)}")
    for key in _POSITIVE_INTS:
        value, low = values[key], 2 if key == "batch_size" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{key}: {value!r} must be an integer >= {low}")
    lr = values["lr"]
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < float("inf"):
        raise ValueError(f"lr: {lr!r} must be a positive number")
    values["lr"] = float(lr)
    if type(values["drop_last"]) is not bool:
        raise ValueError(f"drop_last: {values['drop_last']!r} must be true or false")
    if not isinstance(values["device"], str) or not _DEVICE_RE.fullmatch(values["device"]):
        raise ValueError(f"device: {values['device']!r} is not one of auto, cpu, cuda, cuda:N")
    return VAEParams(**values)


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``: "auto" (cuda if available, else cpu), "cpu", "cuda[:N]".

    Raises RuntimeError, saying what to set instead, when the CUDA device is not there.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = _DEVICE_RE.fullmatch(name)
    if match is None:
        raise ValueError(f"device: {name!r} is not one of auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"device {name!r} requested but CUDA is not available on this machine "
            f"(torch {torch.__version__}); set device: auto or cpu"
        )
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise RuntimeError(
            f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) "
            "are visible; set device: auto, cuda or a smaller index"
        )
    return torch.device(name)


def size_factors(
    row_sums: torch.Tensor,
    col_sums: torch.Tensor,
    total: float,
    idx: torch.Tensor,
    kind: str = "book",
) -> torch.Tensor:
    """Size factors of the cells ``idx``, broadcastable to (len(idx), genes).

    "book": the book's dense matrix outer(row_sums, col_sums) rescaled to the mean of
    the counts, i.e. row_sums[i] * col_sums[j] / total, one minibatch at a time.
    "library": row_sums[i] / mean(row_sums), the usual library-size factor (len(idx) x 1).
    ``row_sums`` and ``col_sums`` are over all cells and genes, ``total`` their sum.
    """
    if kind == "book":
        return row_sums[idx, None] * (col_sums / total)[None, :]
    if kind == "library":
        return (row_sums[idx] * (row_sums.shape[0] / total))[:, None]
    raise ValueError(f"size_factor {kind!r} is not one of {SIZE_FACTORS}")


def flat_adam(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam over one flat buffer that holds every parameter of ``model``.

    The parameters become views of one buffer and their gradients views of another, so
    that fused Adam updates all of them in one kernel per step instead of one per
    parameter tensor (about half the optimiser's time per step on a CPU). The module is
    unchanged to its users: ``state_dict`` and ``load_state_dict`` read and write the
    views. Zero the gradients with ``zero_grad(set_to_none=False)``, which keeps the
    views, so that backward accumulates into them.
    """
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    flat_grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        p.data = flat[offset : offset + p.numel()].view_as(p)
        p.grad = flat_grad[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    flat_param = torch.nn.Parameter(flat)  # the same storage as the views
    flat_param.grad = flat_grad
    return torch.optim.Adam([flat_param], lr=lr, fused=flat.device.type in ("cpu", "cuda"))


def train_vae(
    counts,
    split,
    params: VAEParams,
    seed: int,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train the VAE on the "train" cells, early-stop on the "validation" cells, embed all.

    ``counts``: cells x genes counts (numpy or scipy sparse); ``split``: one of "train",
    "validation", "test" per cell. On CPU the same seed gives a bit-identical latent.
    Raises ValueError on bad input and NonFiniteLossError if the loss or the embedding
    becomes NaN or infinite.
    """
    if counts.ndim != 2:
        raise ValueError(f"counts must be a 2-d cells x genes matrix, got shape {counts.shape}")
    check_counts(counts, "VAE input", fix=COUNTS_FIX)
    n_cells, n_genes = counts.shape
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

    device = resolve_device(params.device)
    log(f"device: {device}")
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)

    # One float32 tensor for all cells; on CPU it shares memory with a float32 input.
    if sp.issparse(counts):
        x_all = torch.from_numpy(counts.astype(np.float32).toarray())
    else:
        x_all = torch.from_numpy(np.ascontiguousarray(counts, dtype=np.float32))
    x_all = x_all.to(device)
    row_sums_np = np.asarray(counts.sum(axis=1, dtype=np.float64)).ravel()
    col_sums_np = np.asarray(counts.sum(axis=0, dtype=np.float64)).ravel()
    total = float(row_sums_np.sum())
    row_sums = torch.as_tensor(row_sums_np, dtype=torch.float32, device=device)
    col_sums = torch.as_tensor(col_sums_np, dtype=torch.float32, device=device)
    log_factorial = fused.log_factorial(x_all, chunk_size=1024)
    train_t = torch.as_tensor(train_idx, device=device)
    val_t = torch.as_tensor(val_idx, device=device)

    model = VAE(
        n_genes,
        n_latent=params.n_latent,
        n_hidden=params.n_hidden,
        n_layers=params.n_layers,
        likelihood=params.likelihood,
        posterior_scale=params.posterior_scale,
        encoder_input=params.encoder_input,
    ).to(device)
    optimizer = flat_adam(model, params.lr)

    rows, best_state, best_loss, best_epoch, wait = [], None, float("inf"), 0, 0
    stop_reason = f"reached max_epochs ({params.max_epochs})"
    for epoch in range(1, params.max_epochs + 1):
        start_time = time.perf_counter()
        order = train_t[torch.randperm(len(train_t), generator=shuffle).to(device)]
        train_reconst, train_kl = _train_epoch(
            model, optimizer, x_all, log_factorial, order, row_sums, col_sums, total, params
        )
        _check_finite(epoch, "training", train_reconst, train_kl, best_state)

        val_reconst, val_kl = _evaluate(
            model, x_all, log_factorial, val_t, row_sums, col_sums, total, params
        )
        _check_finite(epoch, "validation", val_reconst, val_kl, best_state)
        train_loss, val_loss = train_reconst + train_kl, val_reconst + val_kl
        seconds = time.perf_counter() - start_time
        rows.append((epoch, train_loss, val_loss, seconds))
        log(f"epoch {epoch}: train {train_loss:.4f}, validation {val_loss:.4f}, {seconds:.2f} s")

        if val_loss < best_loss:
            best_loss, best_epoch, wait = val_loss, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            wait += 1
            if wait >= params.patience:
                stop_reason = (
                    f"early stopping: no improvement in {params.patience} epochs, "
                    f"best epoch {best_epoch}"
                )
                break
    if "max_epochs" in stop_reason:
        stop_reason += f", best epoch {best_epoch}"
    log(stop_reason)

    model.load_state_dict(best_state)
    latent = _embed(model, x_all, batch_size)
    if not np.isfinite(latent).all():
        raise NonFiniteLossError(
            f"the embedding of the best epoch ({best_epoch}) is not finite; "
            "set encoder_input: log1p or preset: stable",
            best_epoch,
            best_state,
        )
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "validation_loss", "seconds"])
    return TrainResult(latent, history, best_state, str(device), stop_reason, best_epoch)


def _train_epoch(model, optimizer, x_all, log_factorial, order, row_sums, col_sums, total, params):
    """One pass over the shuffled training cells ``order``; (reconstruction, KL) per cell."""
    model.train()
    batch_size = params.batch_size
    n_used = len(order) - len(order) % batch_size if params.drop_last else len(order)
    reconst_sum = torch.zeros((), device=x_all.device)
    kl_sum = torch.zeros((), device=x_all.device)
    n_seen = 0
    for start in range(0, n_used, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2:  # BatchNorm needs two cells; only possible without drop_last
            continue
        sf = size_factors(row_sums, col_sums, total, idx, params.size_factor)
        out = model.loss(x_all[idx], sf, log_factorial=log_factorial[idx])
        optimizer.zero_grad(set_to_none=False)  # zeroes the flat gradient buffer in place
        out.loss.backward()
        optimizer.step()
        reconst_sum += out.reconst_loss.detach().sum()
        kl_sum += out.kl_divergence_z.detach().sum()
        n_seen += len(idx)
    reconst, kl = (torch.stack([reconst_sum, kl_sum]) / n_seen).tolist()
    return reconst, kl


def _evaluate(
    model, x_all, log_factorial, idx, row_sums, col_sums, total, params
) -> tuple[float, float]:
    """Validation (reconstruction, KL) per cell, in eval mode without autograd."""
    model.eval()
    reconst_sum = torch.zeros((), device=x_all.device)
    kl_sum = torch.zeros((), device=x_all.device)
    with torch.inference_mode():
        for start in range(0, len(idx), params.batch_size):
            batch = idx[start : start + params.batch_size]
            sf = size_factors(row_sums, col_sums, total, batch, params.size_factor)
            out = model.loss(x_all[batch], sf, log_factorial=log_factorial[batch])
            reconst_sum += out.reconst_loss.sum()
            kl_sum += out.kl_divergence_z.sum()
    reconst, kl = (torch.stack([reconst_sum, kl_sum]) / len(idx)).tolist()
    return reconst, kl


def _embed(model, x_all, batch_size: int) -> np.ndarray:
    """Encoder mean q(z|x) of every cell, in eval mode without autograd."""
    model.eval()
    with torch.inference_mode():
        parts = [
            model.inference(x_all[start : start + batch_size])["qz_m"]
            for start in range(0, x_all.shape[0], batch_size)
        ]
    return torch.cat(parts).cpu().numpy()


def _check_finite(epoch: int, phase: str, reconst: float, kl: float, best_state) -> None:
    """Raise NonFiniteLossError naming the non-finite term(s) and the fix."""
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
