"""Training checkpoints of the VAE: written after epochs, resumed after a kill.

A checkpoint holds everything the training loop carries from one epoch to the next
(model and optimiser state, the global and shuffle RNG states, the history so far and the
early-stopping state), so that a resumed run ends bit-identical to an uninterrupted one
on the CPU (same seed, same threads). It holds only tensors, dicts, lists, str, int,
float and bool, and is read with ``torch.load(..., weights_only=True)``.

Each checkpoint carries a fingerprint of what the training depends on (the resolved
parameters, the seed, the device, torch's version, the names of the batches the model
is conditioned on, and a digest of the counts, the split and the batch codes); a
checkpoint with another fingerprint, or one that cannot be read, is ignored with a log
line (which names both sets of batches when they differ) and training starts from
epoch 1. A run without a batch has the fingerprint it had before batches existed.

The training loop uses a :class:`Checkpointer`: it builds the model (resumed where a
checkpoint fits) and writes the state after the epochs that are due.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from scembed.runtime import remove_stale_temporaries

FORMAT = 1
"""Bumped when the checkpoint's layout changes: older files are then ignored."""

STOPPING_KEYS = ("best_state", "best_loss", "best_epoch", "wait", "stopped_early")
"""The early-stopping state the training loop carries from one epoch to the next."""
KEYS = ("format", "fingerprint", "epoch", "model", "optimizer", "rng", "history", *STOPPING_KEYS)
"""What every checkpoint holds; it also holds ``batches``, the batch names ([] without a
batch), which checkpoints written before batches existed lack."""


def data_digest(data, split: np.ndarray) -> str:
    """sha256 of the training counts (a ``TrainingData``), the split and the batch codes
    (when the model uses a batch), in the form training sees them (CSR arrays or the
    dense float32 matrix)."""
    digest = hashlib.sha256()
    digest.update(repr((data.n_cells, data.sparse, data.size_factor)).encode())
    if data.sparse:
        digest.update(repr(data.csr.shape).encode())
        for array in (data.csr.indptr, data.csr.indices, data.csr.data):
            digest.update(np.ascontiguousarray(array).data)  # a view: no copy of GBs
    else:
        digest.update(repr(tuple(data.x.shape)).encode())
        digest.update(np.ascontiguousarray(data.x.cpu().numpy()).data)
    digest.update("\n".join(split.tolist()).encode())
    if data.batch_codes is not None:
        digest.update(np.ascontiguousarray(data.batch_codes.cpu().numpy()).data)
    return digest.hexdigest()


def fingerprint(params, seed: int, device: torch.device, digest: str, batches=()) -> str:
    """sha256 of what the training's result depends on, but the thread count.

    ``use_batch`` enters through ``batches`` (the names of the batches the model is
    conditioned on), not as a parameter: a run that does not use its batch trains as one
    without, and has its fingerprint."""
    params = dataclasses.asdict(params)
    params.pop("use_batch", None)
    record = {
        "format": FORMAT,
        "params": params,
        "seed": seed,
        "device": str(device),
        "torch": torch.__version__,
        "data": digest,
    }
    if batches:
        record["batches"] = list(batches)
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def rng_state(shuffle: torch.Generator, device: torch.device) -> dict:
    """The global CPU RNG, the shuffle generator and (on CUDA) the CUDA RNGs."""
    cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else []
    return {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state(), "cuda": cuda}


def set_rng_state(state: dict, shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: str | os.PathLike, state: dict) -> None:
    """Write the checkpoint ``state`` (the keys of ``KEYS`` but ``format``) atomically."""
    from scembed.runtime import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load(
    path: str | os.PathLike, expected: str, log: Callable[[str], None], batches=()
) -> dict | None:
    """The checkpoint at ``path`` when it exists, reads and has the fingerprint
    ``expected``; None otherwise, with a log line saying why it was ignored (naming the
    checkpoint's batches and this run's, ``batches``, when they differ)."""
    path = Path(path)
    remove_stale_temporaries(path)
    if not path.exists():
        return None
    ignored = f"checkpoint {path} ignored"
    restart = "training starts at epoch 1 and overwrites it"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is ignored, not fatal
        log(f"{ignored}: it cannot be read ({type(err).__name__}: {err}); {restart}")
        return None
    missing = [key for key in KEYS if key not in state] if isinstance(state, dict) else KEYS
    if missing:
        log(f"{ignored}: not a training checkpoint of this workflow (lacks {missing}); {restart}")
        return None
    saved_batches = list(state.get("batches", []))
    if state["format"] == FORMAT and saved_batches != list(batches):
        log(
            f"{ignored}: it was written for the batches {saved_batches or 'none'} and this run "
            f"has {list(batches) or 'none'} (the dataset's batch_key or the method's "
            f"use_batch changed); {restart}"
        )
        return None
    if state["format"] != FORMAT or state["fingerprint"] != expected:
        log(
            f"{ignored}: it was written with other parameters, seed, device, torch or data "
            f"(fingerprint {str(state['fingerprint'])[:12]}, this run {expected[:12]}); {restart}"
        )
        return None
    return state


def remove(path: str | os.PathLike) -> None:
    """Remove the checkpoint (once the run's outputs exist) and any half-written one."""
    path = Path(path)
    path.unlink(missing_ok=True)
    remove_stale_temporaries(path)


class Checkpointer:
    """The checkpoint of one training run: resumed at its start, written after epochs.

    ``path`` None: no checkpoint, nothing read or written (and the data is not hashed).
    Otherwise the state is written every ``every`` epochs and after the last one (0:
    never), and resumed when the file's fingerprint is that of this run: its parameters,
    ``seed``, device and ``data`` (a ``TrainingData``, with its batch codes) with
    ``split``, and ``batches`` (the names of the model's batches; empty without). ``log``
    receives the lines saying what was resumed or ignored, and why.
    """

    def __init__(self, path, every: int, params, seed: int, data, split, log, batches=()):
        self.path, self.every, self.log = path, every, log
        self.device = data.device
        self.batches = list(batches)
        if path is not None:
            digest = data_digest(data, split)
            self.fingerprint = fingerprint(params, seed, data.device, digest, self.batches)

    def resume(self, build: Callable[[], tuple]) -> tuple:
        """(model, optimiser, shuffle generator, saved state): ``build()``'s three, with
        the checkpoint's model, optimiser and RNG states loaded when one fits; the saved
        state (epoch, history, early stopping) is None when training starts at epoch 1.

        A checkpoint whose state does not fit the model is logged and ignored, and
        ``build()`` is called again, so that no part of it is left loaded."""
        model, optimizer, shuffle = build()
        saved = (
            None if self.path is None else load(self.path, self.fingerprint, self.log, self.batches)
        )
        if saved is None:
            return model, optimizer, shuffle, None
        try:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            set_rng_state(saved["rng"], shuffle)
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            self.log(
                f"checkpoint {self.path} ignored: its state does not fit the model "
                f"({err}); training starts at epoch 1 and overwrites it"
            )
            return (*build(), None)
        self.log(
            f"resumed from checkpoint {self.path} at epoch {saved['epoch']}: "
            f"training continues with epoch {saved['epoch'] + 1}"
        )
        return model, optimizer, shuffle, saved

    def save_if_due(
        self, epoch: int, last: bool, model, optimizer, shuffle, history, stopping: dict
    ) -> None:
        """Write the state after ``epoch`` when it is due (every ``every`` epochs, and
        after the ``last`` one): ``history`` (a row per epoch) and ``stopping`` (the
        early-stopping state: best_state, best_loss, best_epoch, wait, stopped_early)."""
        if self.path is None or not self.every or not (last or epoch % self.every == 0):
            return
        save(
            self.path,
            {
                "fingerprint": self.fingerprint,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng_state(shuffle, self.device),
                "history": [list(row) for row in history],
                "batches": list(self.batches),
                **{key: stopping[key] for key in STOPPING_KEYS},
            },
        )
