"""scembed: single-cell embeddings and their fair evaluation, as a scanpy-style library
and the library behind the Snakemake workflow.

The API (docs/api.md), one code path with the workflow's jobs: ``scembed.pp`` (the
book's preprocessing), ``scembed.tl`` (the PCA baseline, the VAE, the scores of an
embedding, the paired comparison over seeds) and ``scembed.datasets`` (cached loaders).
They are imported on first use, so ``import scembed`` stays light (no torch, no scanpy):
the workflow imports ``scembed.*`` while it plans.

The modules under them: the plan ``schema`` (the config schema, the one home of every
default), ``methods`` (the registry of method kinds), ``presets`` (the VAE's, plain
data), ``plan`` (what a workflow run plans); data ``sources`` (counts and labels from
each source), ``synthetic``, ``preprocess``; embeddings ``pca``, and the VAE stack
``vae`` (``distributions`` -> ``nn`` -> ``module`` -> ``train``), ``embedding`` (the
shared embedding file); evaluation ``cluster``, ``leiden``, ``metrics``, ``evaluate``,
``integration`` and ``lisi``, ``compare``, ``plots``, ``provenance``; a failed run's
report ``incomplete`` and ``diagnosis``; plumbing ``runtime``, ``threads``,
``numba_cache``, ``resources``, ``versions``. Library functions take arrays,
AnnData objects and plain parameters, never the ``snakemake`` object.
"""

import importlib as _importlib

_SUBMODULES = ("pp", "tl", "datasets")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = _importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module  # later lookups do not come back here
        return module
    if name == "__version__":
        from importlib.metadata import version

        globals()[name] = value = version("scembed")
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
