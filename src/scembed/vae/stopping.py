"""Early stopping of the VAE's training: the best epoch so far and the epochs since."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch


@dataclass
class EarlyStopping:
    """The best epoch so far (its validation loss and state_dict, on CPU) and the epochs
    since without improvement; ``stopped_early`` once they reach ``patience``.

    Everything but ``patience`` is carried from one epoch to the next, and so into a
    training checkpoint (:meth:`state`, :meth:`resumed`).
    """

    patience: int
    best_state: dict | None = None
    best_loss: float = float("inf")
    best_epoch: int = 0
    wait: int = 0
    stopped_early: bool = False

    @classmethod
    def resumed(cls, patience: int, saved: dict | None) -> EarlyStopping:
        """The state kept in ``saved`` (a checkpoint's dict); a fresh one without."""
        if saved is None:
            return cls(patience)
        return cls(patience, **{key: saved[key] for key in cls._carried()})

    def state(self) -> dict:
        """What is carried from one epoch to the next: every field but ``patience``."""
        return {key: getattr(self, key) for key in self._carried()}

    @classmethod
    def _carried(cls) -> list[str]:
        return [field.name for field in dataclasses.fields(cls) if field.name != "patience"]

    def update(self, epoch: int, val_loss: float, model) -> None:
        """Keep ``model``'s state when ``val_loss`` is the best so far, else count the
        epoch towards ``patience``."""
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.wait = val_loss, epoch, 0
            self.best_state = {k: _cpu_copy(v) for k, v in model.state_dict().items()}
        else:
            self.wait += 1
            self.stopped_early = self.wait >= self.patience

    def reason(self, max_epochs: int) -> str:
        """Why training stopped, and its best epoch."""
        if self.stopped_early:
            reason = f"early stopping: no improvement in {self.patience} epochs"
        else:
            reason = f"reached max_epochs ({max_epochs})"
        return reason + f", best epoch {self.best_epoch}"


def _cpu_copy(value):
    """A copy on the CPU of a state-dict entry: a tensor, or a module's extra state (the
    batch names of :class:`scembed.vae.module.BatchNames`)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    return copy.deepcopy(value)
