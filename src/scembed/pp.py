"""Preprocessing, as the workflow's ``import_dataset`` and ``preprocess`` jobs do it.

``scembed.pp.book(adata, label_key)`` checks the counts, labels and batches as an
import does (:func:`scembed.sources.finish`), then runs the book's preprocessing
(:func:`scembed.preprocess.preprocess`) with the config schema's ``preprocess``
defaults, any of which a keyword overrides.
"""

from __future__ import annotations

import anndata as ad

from scembed.api_support import obs_key, section_params
from scembed.checks import DataError, check_labels

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
        Layer holding the counts; None reads ``X``, and ``"raw"`` (without a layer of
        that name) ``adata.raw.X`` with ``adata.raw``'s genes, as the config's
        ``counts_layer``. When the matrix read holds no counts but another does, the
        error names it.
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
        column, an unknown parameter, too few cells or genes. A fix is said as this
        function's keywords ("Pass n_top_genes=765.").

    Examples
    --------
    >>> import scembed
    >>> adata = scembed.datasets.pbmc68k()
    >>> pre = scembed.pp.book(adata, n_top_genes=500, min_genes=50)
    >>> pre.obs["split"].value_counts()
    """
    from scembed.preprocess import preprocess
    from scembed.sources import finish
    from scembed.sources.readers import check_count_matrix, count_matrices

    params = section_params("preprocess", **overrides)
    label_key = obs_key(adata, label_key, "label")
    check_labels(adata.obs, label_key, "adata")  # before the counts, as an import does
    batch_key = obs_key(adata, batch_key, "batch")
    matrices = count_matrices(adata)
    key = "X" if layer is None else layer
    if key not in matrices:
        raw = ", layer='raw' for .raw.X" if "raw" in matrices else ""
        raise DataError(
            f"adata has no layer {layer!r}; its layers are {list(adata.layers.keys())}. "
            f"Pass layer= one of them{raw}, or layer=None for X."
        )
    name, counts, _ = matrices[key]
    where = "adata" if key == "X" else f"adata.{name.lstrip('.')}"

    def fix_found(found: str) -> str:
        value = None if found == "X" else repr(found)
        return f"The integer counts are in {matrices[found][0]}: pass layer={value}."

    check_count_matrix(
        matrices, key, where, fix_found, fix="Pass the raw counts: layer= names their layer."
    )
    var = adata.raw.var if name == ".raw.X" else adata.var
    provenance = dict(adata.uns.get("provenance", {"source": "anndata"}))
    # No name holds the finished copy, and the keywords are spelled out (a **params call
    # keeps its arguments until it returns): preprocess() frees the full counts once it
    # has chosen the genes.
    return preprocess(
        finish(
            ad.AnnData(X=counts.copy(), obs=adata.obs.copy(), var=var.copy()),
            label_key,
            where,
            provenance,
            batch_key,
        ),
        gene_selection=params["gene_selection"],
        n_top_genes=params["n_top_genes"],
        min_genes=params["min_genes"],
        target_sum=params["target_sum"],
        log1p=params["log1p"],
        validation_fraction=params["validation_fraction"],
        test_fraction=params["test_fraction"],
        split_seed=params["split_seed"],
        hint=keyword_hint,
    )


def keyword_hint(key: str, value: object) -> str:
    """A preprocessing setting as a keyword of :func:`book` (:data:`scembed.preprocess.Hint`):
    "pass n_top_genes=765", where the workflow says "set `preprocess: {n_top_genes: 765}`
    under this dataset"."""
    if value is None:
        return f"`{key}` (keywords of scembed.pp.book)"
    return f"pass {key}={value!r}"
