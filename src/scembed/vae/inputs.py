"""Checks of what :func:`scembed.vae.train.train_vae` is given: the counts, the split,
the minibatch size and the batch codes, each refused with a message naming the fix."""

import numpy as np

from scembed.checks import check_counts
from scembed.vae.params import VAEParams

COUNTS_FIX = (
    "Pass the raw UMI/read counts (e.g. adata.layers['counts']), not normalised or log "
    "data: every VAE likelihood models counts."
)


def checked_input(counts, split, params: VAEParams, checkpoint_every) -> tuple:
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


def checked_batch(batch, batch_names, n_cells: int, use_batch: bool) -> tuple:
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
