"""The VAE's hyperparameters as plain data: the presets, the allowed values, and their
validation, without torch.

The presets are the one home of the VAE's values: the config schema describes each key
and leaves its value to ``preset`` (default ``book``), and a key written in the config
overrides the preset's. The workflow reads them while it plans (each VAE's values
checked, a minibatch larger than the training cells, the device a training job asks a
GPU for) without importing torch;
:mod:`scembed.vae.params` gives the same names to the model's code, and config/README.md
shows them in a table that ``tools/config_tables.py`` writes.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

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
    decoder_output: str
    dropout: float
    kl_warmup_epochs: int
    weight_decay: float
    adam_eps: float
    use_batch: bool


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
    "decoder_output": "softplus",
    "dropout": 0.0,
    "kl_warmup_epochs": 0,
    "weight_decay": 0.0,
    "adam_eps": 1e-8,
    "use_batch": False,
}
PRESETS: dict[str, dict] = {
    "book": BOOK,
    "stable": {**BOOK, "encoder_input": "log1p", "posterior_scale": "exp_logvar"},
    "improved": {
        **BOOK,
        "encoder_input": "log1p",
        "posterior_scale": "exp_logvar",
        "decoder_output": "softmax",
        "size_factor": "observed",
        "likelihood": "nb",
        "n_layers": 1,
        "batch_size": 128,
        "dropout": 0.1,
        "weight_decay": 1e-6,
        "adam_eps": 0.01,
        "kl_warmup_epochs": 20,
        "use_batch": True,
    },
}
"""Named starting points: ``book`` reproduces the chapter, ``stable`` fixes its fragility,
``improved`` is the combination the ablation supports (experiments/README.md)."""
DEFAULT_PRESET = "book"

CHOICES: dict[str, list[str]] = {
    "likelihood": ["zinb", "nb", "zip", "poisson"],
    "encoder_input": ["counts", "log1p"],
    "posterior_scale": ["softplus", "exp_logvar"],
    "size_factor": ["book", "library", "observed"],
    "decoder_output": ["softplus", "softmax"],
}
"""The allowed values of each categorical parameter: the schema's enums and the keys of
the model's code (scembed.vae's LIKELIHOODS, ENCODER_INPUTS, ...; tests tie them)."""
_POSITIVE_INTS = ("n_latent", "n_hidden", "n_layers", "batch_size", "max_epochs", "patience")
_NUMBERS = {  # name: (lowest allowed, whether the lowest itself is allowed, upper bound)
    "lr": (0.0, False, float("inf")),
    "adam_eps": (0.0, False, float("inf")),
    "weight_decay": (0.0, True, float("inf")),
    "dropout": (0.0, True, 1.0),
}


def resolve_params(params: dict) -> VAEParams:
    """Build VAEParams from a preset (key ``preset``, default "book") and overrides.

    Raises ValueError on an unknown preset, key or value, naming the allowed ones.
    """
    params = dict(params or {})
    preset = params.pop("preset", DEFAULT_PRESET)
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
    warmup = values["kl_warmup_epochs"]
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"kl_warmup_epochs: {warmup!r} must be an integer >= 0")
    if warmup >= values["max_epochs"]:
        raise ValueError(
            f"kl_warmup_epochs ({warmup}) must be below max_epochs ({values['max_epochs']}): "
            "the model is chosen among the epochs after the warm-up"
        )
    for key, (low, low_allowed, high) in _NUMBERS.items():
        value = values[key]
        number = not isinstance(value, bool) and isinstance(value, int | float)
        if not number or not (low <= value if low_allowed else low < value) or not value < high:
            bound = ">= " if low_allowed else "> "
            raise ValueError(f"{key}: {value!r} must be a number {bound}{low} and < {high}")
        values[key] = float(value)
    for key in ("drop_last", "use_batch"):
        if type(values[key]) is not bool:
            raise ValueError(f"{key}: {values[key]!r} must be true or false")
    if not isinstance(values["device"], str) or not DEVICE_RE.fullmatch(values["device"]):
        raise ValueError(f"device: {values['device']!r} is not one of auto, cpu, cuda, cuda:N")
    return VAEParams(**values)


def vae_spec_params(spec: dict) -> VAEParams:
    """The VAEParams of a ``kind: vae`` method's config entry (``kind`` left out)."""
    return resolve_params({key: value for key, value in spec.items() if key != "kind"})
