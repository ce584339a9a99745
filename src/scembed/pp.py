"""Preprocessing, as the workflow's ``import_dataset`` and ``preprocess`` jobs do it.

``scembed.pp.book(adata, label_key)`` checks the counts, labels and batches as an
import does (:func:`scembed.sources.finish`), then runs the book's preprocessing
(:func:`scembed.preprocess.preprocess`) with the config schema's ``preprocess``
defaults, any of which a keyword overrides.
"""

from __future__ import annotations

import re

import anndata as ad

from scembed.api_support import obs_key, section_params
from scembed.checks import DataError, check_counts, check_labels

__all__ = ["book"]


def book(
    adata: ad.AnnData,
    label_key: str | None = None,
    *,
    batch_key: str | None = None,
    layer: str | None = None,
    **overrides,
) -> ad.AnnData:
    """The book's preprocessing of raw counts, exactly as the workflow's jobs run it.

    Genes: the ``n_top_genes`` with the largest variance of the raw counts (or
    ``gene_selection="seurat_v3"``). Cells: those with fewer than ``min_genes`` expressed
    kept genes are dropped. ``X``: each cell normalised to ``target_sum``, then log1p.
    Split: one seeded (``split_seed``) train/validation/test assignment in
    ``obs["split"]``, which :func:`scembed.tl.pca`, :func:`scembed.tl.vae` and
    :func:`scembed.tl.evaluate` use. Before that the counts, labels and batches are
    checked as the workflow's import checks them.

    Parameters
    ----------
    adata
        Cells x genes, with raw integer counts in ``X`` or in ``layers[layer]``.
        Not modified.
    label_key
        Column of ``adata.obs`` holding the cell types. None: ``adata.uns["label_key"]``
        (set by :mod:`scembed.datasets` and by this function).
    batch_key
        Column of ``adata.obs`` holding each cell's batch (sample, donor, plate), kept
        and recorded in ``uns["batch_key"]`` for the methods and the integration scores.
        None: ``adata.uns["batch_key"]`` when there is one, else no batch.
    layer
        Layer holding the counts; None reads ``X``.
    **overrides
        Keys of the config's ``preprocess`` section (``gene_selection``,
        ``n_top_genes``, ``min_genes``, ``target_sum``, ``log1p``,
        ``validation_fraction``, ``test_fraction``, ``split_seed``); the others keep
        the schema's defaults.

    Returns
    -------
    AnnData
        A new AnnData of the kept cells and genes (the genes are subset, so not in
        place): ``X`` log-normalised (float32, CSR), ``layers["counts"]`` the integer
        counts, ``obs`` the columns of ``adata`` with the labels as strings (a missing
        label stays missing), ``obs["split"]`` and ``obs["n_genes_expressed"]``,
        ``var`` the kept genes' rows of ``adata.var``, and ``uns["label_key"]``,
        ``uns["preprocess"]`` (the parameters used), ``uns["provenance"]`` and, with
        two or more batches, ``uns["batch_key"]``.

    Raises
    ------
    ValueError
        With the workflow's message naming the problem and the fix: counts that are not
        non-negative integers, a missing or single-valued label column, a bad batch
        column, an unknown parameter, too few cells or genes.

    Examples
    --------
    >>> import scembed
    >>> adata = scembed.datasets.pbmc68k()
    >>> pre = scembed.pp.book(adata, n_top_genes=500, min_genes=50)
    >>> pre.obs["split"].value_counts()
    """
    from scembed.preprocess import preprocess
    from scembed.sources import finish, holds_counts

    params = section_params("preprocess", **overrides)
    label_key = obs_key(adata, label_key, "label")
    check_labels(adata.obs, label_key, "adata")  # before the counts, as an import does
    batch_key = obs_key(adata, batch_key, "batch")
    if layer is not None and layer not in adata.layers:
        raise DataError(
            f"adata has no layer {layer!r}; its layers are {list(adata.layers.keys())}. "
            "Pass layer= one of them, or layer=None for X."
        )
    counts = adata.X if layer is None else adata.layers[layer]
    where = "adata" if layer is None else f"adata.layers[{layer!r}]"
    try:
        check_counts(counts, where, fix="Pass the raw counts: layer= names their layer.")
    except DataError:
        others = {"X": adata.X, **adata.layers} if layer is not None else dict(adata.layers)
        found = [key for key, M in others.items() if key != layer and holds_counts(M)]
        if not found:
            raise
        where_found = "X" if found[0] == "X" else f"layers[{found[0]!r}]"
        value = None if found[0] == "X" else repr(found[0])
        fix = f"The integer counts are in {where_found}: pass layer={value}."
        check_counts(counts, where, fix=fix)
    raw = ad.AnnData(X=counts.copy(), obs=adata.obs.copy(), var=adata.var.copy())
    provenance = dict(adata.uns.get("provenance", {"source": "anndata"}))
    raw = finish(raw, label_key, where, provenance, batch_key)
    try:
        return preprocess(raw, **params)
    except DataError as err:  # the job's fix names the config; a notebook passes keywords
        raise DataError(as_keywords(str(err))) from None


def as_keywords(message: str) -> str:
    """A preprocessing error's fix as this function's keywords instead of config keys:
    "Set `preprocess: {n_top_genes: 765}` under this dataset" -> "Pass n_top_genes=765"."""

    def keyword(match: re.Match) -> str:
        value = match[3] if match[3].isdigit() else repr(match[3])
        return f"{'P' if match[1] == 'S' else 'p'}ass {match[2]}={value}"

    message = re.sub(
        r"([Ss])et `preprocess: \{(\w+): ([^}]+)\}` under this dataset", keyword, message
    )
    return re.sub(r" under this dataset's `preprocess`", " (keywords of scembed.pp.book)", message)
