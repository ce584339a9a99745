"""What the API's functions share: their parameters' defaults from the config schema
(:func:`section_params`), the obs keys they default to
(:func:`obs_key`), the split and batches they read (:func:`split_of`,
:func:`batches_of`), and their ``threads=`` (:func:`call_threads`).

The workflow's jobs fix their thread counts for the whole process
(:mod:`scembed.threads`); a notebook keeps its process, so :func:`call_threads` sets
torch's intra-op threads, the OpenMP/BLAS pools (threadpoolctl) and numba's threads for
the duration of one call and restores what was there before, whatever the call raised.
"""

from __future__ import annotations

import contextlib

import numpy as np

from scembed.checks import DataError, check_batches, describe_candidates, label_columns
from scembed.schema import cached_schema
from scembed.threads import blas_threads, numba_threads, torch_threads


def section_params(section: str, **overrides) -> dict:
    """The schema's defaults of the config section ``section`` (``preprocess``,
    ``cluster``) updated with ``overrides``, checked against the schema as a config is
    (ValueError naming the key and what it allows) and typed as the workflow types its
    rule params (:func:`scembed.plan.params_value`: ``1`` and ``1.0`` alike), so that
    the numbers are the workflow's."""
    import jsonschema

    from scembed.plan import params_value
    from scembed.schema import section_defaults

    defaults = section_defaults(section)
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown {section} parameter(s) {unknown}; the parameters are {sorted(defaults)}"
        )
    params = {**defaults, **overrides}
    try:
        jsonschema.validate(
            params, {"$defs": cached_schema()["$defs"], "$ref": f"#/$defs/{section}"}
        )
    except jsonschema.ValidationError as err:
        key = ".".join(map(str, err.absolute_path)) or section
        raise ValueError(f"{section}.{key}: {err.message}") from None
    return params_value(params)


def obs_key(adata, given: str | None, kind: str) -> str | None:
    """The obs column of the labels (``kind`` "label") or the batches ("batch"): ``given``,
    else the one recorded in ``adata.uns`` (by :mod:`scembed.datasets` or
    :func:`scembed.pp.book`). A label column is required: DataError naming the columns
    that look like cell types when there is none."""
    key = given if given is not None else adata.uns.get(f"{kind}_key")
    if key is None and kind == "label":
        raise DataError(
            "adata: pass label_key=, the obs column of the cell types; "
            f"{describe_candidates(label_columns(adata.obs))}."
        )
    return None if key is None else str(key)


def checked_threads(threads) -> int | None:
    """``threads`` as an int >= 1, or None (leave the thread counts as they are)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: {threads!r} must be an integer >= 1, or None")
    return threads


def split_of(adata) -> np.ndarray:
    """obs["split"] (train / validation / test), which the embeddings need."""
    if "split" not in adata.obs:
        raise DataError(
            "adata has no obs['split'] (train / validation / test): run "
            "scembed.pp.book(adata) first, or add the column."
        )
    return adata.obs["split"].astype(str).to_numpy()


def batches_of(adata, batch_key: str | None, label_key: str | None = None):
    """(codes, names) of the checked batch column (another than the labels' column,
    ``label_key`` or ``uns["label_key"]``), or (None, []) without one or with a single
    batch (as the workflow, which then drops ``uns["batch_key"]``)."""
    from scembed.batches import batch_codes

    key = obs_key(adata, batch_key, "batch")
    if key is None:
        return None, []
    check_batches(adata.obs, key, label_key or adata.uns.get("label_key"), "adata")
    codes, names = batch_codes(adata.obs, key)
    return (codes, names) if len(names) > 1 else (None, [])


@contextlib.contextmanager
def call_threads(threads, *, torch: bool = False, numba: bool = False):
    """Compute on ``threads`` threads inside the block: OpenMP/BLAS always, torch and
    numba where asked; each is restored after the block (:mod:`scembed.threads`).
    ``threads`` None changes nothing."""
    n = checked_threads(threads)
    if n is None:
        yield
        return
    with contextlib.ExitStack() as stack:
        if numba:
            stack.enter_context(numba_threads(n))
        if torch:
            stack.enter_context(torch_threads(n))
        stack.enter_context(blas_threads(n))
        yield
