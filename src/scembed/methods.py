"""The registry of method kinds: what the workflow needs to know of each ``kind`` a
method of the config can have, in one place and without torch.

The rules, the report of an incomplete run, the checks before any job and
:func:`method_value` (a method's ``use_batch``, its ``device``) all read it. Adding a
kind means one entry here, one rule in ``workflow/rules/embed.smk`` that writes the
run's ``embedding.h5ad`` (its wildcard constraint ``methods_of_rule("<rule>")``), a thin
script over a library function, and its ``$defs`` entry in the config schema
(tests/test_methods.py checks that the four agree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scembed.presets import vae_spec_params


@dataclass(frozen=True)
class MethodKind:
    """One kind of embedding method."""

    kind: str
    """The config's ``kind`` and the name of its ``$defs`` entry in the schema."""
    rule: str
    """The rule that writes a run's ``embedding.h5ad`` (workflow/rules/embed.smk)."""
    env: str
    """The rule's conda env, a file of workflow/envs/."""
    trains: bool
    """A training job: it takes a ``gpu`` unit where it trains on one (its ``device``),
    and its threads are scheduled as the profiles say (workflow/rules/common.smk
    ``gpu_request`` and ``train_threads``)."""
    writes_history: bool
    """Its runs write ``history.tsv`` (the losses per epoch) for the losses figure."""
    preset_params: Callable[[dict], object] | None = None
    """Where the keys a method leaves out take its preset's values (scembed.presets), not
    the schema's defaults: the function that resolves a method's config entry into all its
    values (an object with one attribute per key; ValueError naming a bad value). None:
    the schema's defaults fill them in."""


KINDS: dict[str, MethodKind] = {
    kind.kind: kind
    for kind in (
        MethodKind(
            "pca",
            rule="embed_pca",
            env="scanpy.yaml",
            trains=False,
            writes_history=False,
        ),
        MethodKind(
            "vae",
            rule="train_vae",
            env="torch.yaml",
            trains=True,
            writes_history=True,
            preset_params=vae_spec_params,
        ),
        MethodKind(
            "scvi",
            rule="train_scvi",
            env="scvi.yaml",
            trains=True,
            writes_history=True,
        ),
    )
}


def method_kind(spec: dict) -> MethodKind:
    """The registry entry of a method's config entry; ValueError naming the known kinds."""
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(
            f"method kind {kind!r} is unknown; set `kind` to one of {', '.join(KINDS)}."
        )
    return KINDS[kind]


def method_value(spec: dict, key: str):
    """A method's value of ``key``: the one its config entry gives, else its preset's (a
    kind with ``preset_params``: ValueError on a bad preset or value), else the schema's
    default. The one answer for every reader of a key a preset may fill in."""
    if key in spec:
        return spec[key]
    kind = method_kind(spec)
    if kind.preset_params is not None:
        return getattr(kind.preset_params(spec), key)
    from scembed.schema import method_default

    return method_default(kind.kind, key)
