"""The batch of each cell (sample, donor, plate): where it is kept and who uses it.

A dataset's ``batch_key`` (config) names an obs column. The import checks it and
records it in ``uns["batch_key"]``; preprocessing and every embedding file keep the
column and the key, so that every later stage finds the batch through
:func:`batch_key_of`. A method uses the batch when the dataset has one and the method's
``use_batch`` is true (:func:`uses_batch`: the schema's default for ``pca`` and
``scvi``, the preset's for ``vae``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CONFOUNDED_V = 0.5
"""Cramér's V between batch and labels from which the import warns that they are confounded."""


def batch_key_of(adata) -> str | None:
    """The dataset's batch column, or None when it has none (or only one batch)."""
    key = adata.uns.get("batch_key")
    return str(key) if key else None


def batch_codes(obs: pd.DataFrame, key: str) -> tuple[np.ndarray, list[str]]:
    """Integer codes (0 .. n_batches - 1, int64) of ``obs[key]`` and the batch names,
    in sorted order so that the same batches give the same codes in every job."""
    values = obs[key].astype(str)
    names = sorted(values.unique())
    codes = pd.Categorical(values, categories=names).codes.astype(np.int64)
    return codes, names


def uses_batch(method: dict) -> bool:
    """Whether a method (a config entry) uses the batch: its ``use_batch``, else its
    preset's (``kind: vae``) or the schema's default (scembed.methods.method_value)."""
    from scembed.methods import method_value

    return bool(method_value(method, "use_batch"))


def cramers_v(labels, batches) -> float:
    """Cramér's V of the contingency table of labels and batches: 0 when every type is
    spread over the batches in the same proportions, 1 when the batch names the type."""
    table = pd.crosstab(np.asarray(labels), np.asarray(batches)).to_numpy(float)
    n = table.sum()
    if min(table.shape) < 2 or n == 0:
        return 0.0
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    return float(np.sqrt(chi2 / (n * (min(table.shape) - 1))))


def confounding_warning(labels, batches, batch_key: str, label_key: str) -> str | None:
    """A warning when the batch and the labels are confounded, else None."""
    v = cramers_v(labels, batches)
    if v < CONFOUNDED_V:
        return None
    return (
        f"the batch {batch_key!r} and the labels {label_key!r} are confounded (Cramér's V "
        f"{v:.2f}; 1 means each type sits in its own batches): a method that removes the "
        "batch may remove cell-type differences too, and the integration scores cannot "
        "tell the two apart. Check the crosstab of the two columns."
    )
