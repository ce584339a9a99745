"""scvi-tools' SCVI as one more embedding method, trained on the workflow's split.

scvi-tools is imported only here and only when an ``scvi`` method runs, so that the
rest of the workflow works without it (a config naming ``kind: scvi`` in an environment
without it fails before any job runs; see ``scembed.versions.missing_scvi_message``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scembed.checks import check_counts
from scembed.vae.device import resolve_device


@dataclass
class ScviResult:
    latent: np.ndarray
    history: pd.DataFrame  # epoch, train_loss, validation_loss, seconds (per cell)
    state_dict: dict
    device: str
    epochs: int
    indices: dict[str, np.ndarray]  # the cells scvi-tools trained, validated and held out


def _trainer_device(device: torch.device) -> tuple[str, list[int] | str]:
    """Lightning's (accelerator, devices) for a torch device; ``cuda`` without an index is
    the current device (the one :func:`scembed.vae.device.claimed_gpu` chose)."""
    if device.type == "cuda":
        return "gpu", [torch.cuda.current_device() if device.index is None else device.index]
    return "cpu", 1


def batch_categories(batch, batch_names, n_cells: int) -> pd.Categorical:
    """The batch codes as a Categorical of the batch names (default "0", "1", ...), in
    the codes' order; ValueError when they do not fit the cells or the names."""
    codes = np.asarray(batch)
    if codes.shape != (n_cells,) or codes.dtype.kind not in "iu":
        raise ValueError(f"batch must be {n_cells} integer codes, got {codes.dtype} {codes.shape}")
    n_batch = int(codes.max()) + 1 if n_cells else 0
    names = [str(i) for i in range(n_batch)] if batch_names is None else list(batch_names)
    if (n_cells and codes.min() < 0) or len(names) < n_batch:
        raise ValueError(f"batch codes {codes.min()}..{codes.max()} do not fit {len(names)} names")
    return pd.Categorical.from_codes(codes, categories=[str(name) for name in names])


def train_scvi(
    counts,
    split,
    *,
    seed: int,
    n_latent: int,
    n_hidden: int,
    n_layers: int,
    gene_likelihood: str,
    dropout_rate: float,
    batch_size: int,
    lr: float,
    max_epochs: int | None,
    early_stopping: bool,
    device: str,
    use_batch: bool = True,
    batch: np.ndarray | None = None,
    batch_names: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> ScviResult:
    """Train ``scvi.model.SCVI`` on the "train" cells, validate on the "validation" cells
    (the test cells are held out), and return the posterior mean of every cell.

    The parameters are the config's ``kind: scvi`` keys (defaults in the schema: scVI's
    own). ``max_epochs`` None takes scvi-tools' heuristic (400 below 20,000 cells).
    ``batch``: each cell's batch code (0 .. n - 1, named by ``batch_names``); with
    ``use_batch`` it is scvi-tools' ``batch_key`` (SCVI conditions its decoder on it),
    and the posterior mean of each cell is taken with its own batch. Without a batch the
    model is the one without, number for number.
    """
    import lightning.pytorch as pl
    import scvi
    from anndata import AnnData

    check_counts(counts, "scVI input")
    split = np.asarray(split).astype(str)
    indices = [np.flatnonzero(split == name) for name in ("train", "validation", "test")]
    if len(indices[0]) < 2 or len(indices[1]) < 1:
        raise ValueError("scVI needs at least 2 training and 1 validation cell")
    torch_device = resolve_device(device)
    accelerator, devices = _trainer_device(torch_device)
    log(f"device: {torch_device}")

    scvi.settings.seed = seed
    adata = AnnData(X=sp.csr_matrix(counts, dtype=np.float32))
    batch_key = None
    if use_batch and batch is not None:
        batch_key = "batch"
        adata.obs[batch_key] = batch_categories(batch, batch_names, adata.n_obs)
        names = list(adata.obs[batch_key].cat.categories)
        log(f"batch: {len(names)} batches {names} (scvi-tools' batch_key)")
    scvi.model.SCVI.setup_anndata(adata, batch_key=batch_key)
    model = scvi.model.SCVI(
        adata,
        n_latent=n_latent,
        n_hidden=n_hidden,
        n_layers=n_layers,
        dropout_rate=dropout_rate,
        gene_likelihood=gene_likelihood,
    )

    class EpochLog(pl.Callback):
        def __init__(self):
            self.seconds: list[float] = []
            self._start = 0.0

        def on_train_epoch_start(self, trainer, module):
            self._start = time.perf_counter()

        def on_validation_epoch_end(self, trainer, module):
            if not trainer.sanity_checking:
                self.seconds.append(time.perf_counter() - self._start)
                metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
                log(
                    f"epoch {trainer.current_epoch + 1}: validation "
                    f"{metrics.get('elbo_validation', float('nan')):.4f}, "
                    f"{self.seconds[-1]:.2f} s"
                )

    timer = EpochLog()
    model.train(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=devices,
        batch_size=batch_size,
        early_stopping=early_stopping,
        check_val_every_n_epoch=1,
        plan_kwargs={"lr": lr},
        datasplitter_kwargs={"external_indexing": indices},
        enable_progress_bar=False,
        callbacks=[timer],
    )
    latent = model.get_latent_representation(adata, batch_size=max(batch_size, 1024))
    history = pd.DataFrame(
        {
            "train_loss": model.history["elbo_train"]["elbo_train"].to_numpy(dtype=float),
            "validation_loss": model.history["elbo_validation"]["elbo_validation"].to_numpy(
                dtype=float
            ),
        }
    )
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    seconds = np.full(len(history), np.nan)
    seconds[: len(timer.seconds)] = timer.seconds[: len(history)]
    history["seconds"] = seconds
    state = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
    used = {
        "train": np.sort(np.asarray(model.train_indices)),
        "validation": np.sort(np.asarray(model.validation_indices)),
        "test": np.sort(np.asarray(model.test_indices)),
    }
    log(", ".join(f"{len(cells)} {name} cells" for name, cells in used.items()))
    return ScviResult(np.asarray(latent), history, state, str(torch_device), len(history), used)
