"""The config schema: the one home of every default of the workflow and of the API.

It ships inside the package (``scembed/schemas/config.schema.yaml``); the workflow's
``workflow/schemas/config.schema.yaml`` is a link to it, where the Snakemake catalog
expects it.
"""

from __future__ import annotations

import functools
from pathlib import Path

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


@functools.cache
def cached_schema() -> dict:
    """The schema, read once per process and shared: read it, never change it
    (:func:`load_schema` gives a copy to change)."""
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def load_schema() -> dict:
    """The schema as a dict (a fresh copy: callers may change it)."""
    import copy

    return copy.deepcopy(cached_schema())


def section_defaults(section: str) -> dict:
    """The defaults of a top-level section of the config (``preprocess``, ``cluster``)."""
    properties = cached_schema()["properties"][section]["properties"]
    return {key: spec["default"] for key, spec in properties.items() if "default" in spec}


def method_default(kind: str, key: str):
    """The schema's default of ``key`` for a method of ``kind`` (``pca``: ``n_components``)."""
    return cached_schema()["$defs"][kind]["properties"][key]["default"]
