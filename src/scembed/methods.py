"""The registry of method kinds: what the workflow needs to know of each ``kind`` a
method of the config can have, in one place and without torch.

The rules, the report of an incomplete run, the checks before any job and
:func:`scembed.batches.uses_batch` all read it. Adding a kind means one entry here, one
rule in ``workflow/rules/embed.smk`` that writes the run's ``embedding.h5ad`` (its
wildcard constraint ``methods_of_rule("<rule>")``), a thin script over a library
function, and its ``$defs`` entry in the config schema (tests/test_methods.py checks
that the four agree).
"""

from __future__ import annotations

from dataclasses import dataclass


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
    """A training job: it takes a ``gpu`` unit where it trains on one, and its threads
    are scheduled as the profiles say (rules/common.smk train_threads)."""
    writes_history: bool
    """Its runs write ``history.tsv`` (the losses per epoch) for the losses figure."""
    preset_defaults: bool
    """Keys a method leaves out take its preset's values (scembed.presets), not the
    schema's defaults."""


KINDS: dict[str, MethodKind] = {
    kind.kind: kind
    for kind in (
        MethodKind(
            "pca",
            rule="embed_pca",
            env="scanpy.yaml",
            trains=False,
            writes_history=False,
            preset_defaults=False,
        ),
        MethodKind(
            "vae",
            rule="train_vae",
            env="torch.yaml",
            trains=True,
            writes_history=True,
            preset_defaults=True,
        ),
        MethodKind(
            "scvi",
            rule="train_scvi",
            env="scvi.yaml",
            trains=True,
            writes_history=True,
            preset_defaults=False,
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
