"""Hyperparameters of the VAE and its training: the presets, and their validation.

The presets are the one home of the VAE's values: the config schema describes each key
and leaves its value to ``preset`` (default ``book``), and a key written in the config
overrides the preset's.
"""

import dataclasses
import re
from dataclasses import dataclass

from scembed.vae.distributions import LIKELIHOODS
from scembed.vae.module import ENCODER_INPUTS, SIZE_FACTORS
from scembed.vae.nn import POSTERIOR_SCALES

DEVICE_RE = re.compile(r"auto|cpu|cuda(?::(\d+))?")


@dataclass(frozen=True)
class VAEParams:
    """Every hyperparameter of the VAE and its training (see the config schema)."""

    likelihood: str
    n_latent: int
    n_hidden: int
    n_layers: int
    batch_size: int
    lr: float
    max_epochs: int
    patience: int
    encoder_input: str
    device: str
    posterior_scale: str
    size_factor: str
    drop_last: bool


BOOK = {
    "likelihood": "zinb",
    "n_latent": 10,
    "n_hidden": 128,
    "n_layers": 2,
    "batch_size": 100,
    "lr": 1e-3,
    "max_epochs": 500,
    "patience": 10,
    "encoder_input": "counts",
    "device": "auto",
    "posterior_scale": "softplus",
    "size_factor": "book",
    "drop_last": True,
}
PRESETS: dict[str, dict] = {
    "book": BOOK,
    "stable": {**BOOK, "encoder_input": "log1p", "posterior_scale": "exp_logvar"},
}
"""Named starting points: ``book`` reproduces the chapter, ``stable`` fixes its fragility."""

CHOICES = {
    "likelihood": tuple(LIKELIHOODS),
    "encoder_input": ENCODER_INPUTS,
    "posterior_scale": POSTERIOR_SCALES,
    "size_factor": SIZE_FACTORS,
}
"""The allowed values of each categorical parameter (the schema's enums; a test ties them)."""
_POSITIVE_INTS = ("n_latent", "n_hidden", "n_layers", "batch_size", "max_epochs", "patience")


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
    for key, allowed in CHOICES.items():
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
    if not isinstance(values["device"], str) or not DEVICE_RE.fullmatch(values["device"]):
        raise ValueError(f"device: {values['device']!r} is not one of auto, cpu, cuda, cuda:N")
    return VAEParams(**values)
