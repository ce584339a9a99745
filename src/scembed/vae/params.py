"""Hyperparameters of the VAE and its training: the presets and their validation.

They are plain data, defined without torch in :mod:`scembed.presets` (the workflow reads
them while it plans); this module gives them to the model's code under the names it has
always used. The allowed values of each categorical parameter are the keys of the code
that implements them (tests/test_vae_params.py ties ``CHOICES`` to them).
"""

from scembed.presets import (
    BOOK,
    CHOICES,
    DEFAULT_PRESET,
    DEVICE_RE,
    PRESETS,
    VAEParams,
    resolve_params,
    vae_spec_params,
)

__all__ = [
    "BOOK",
    "CHOICES",
    "DEFAULT_PRESET",
    "DEVICE_RE",
    "PRESETS",
    "VAEParams",
    "resolve_params",
    "vae_spec_params",
]
