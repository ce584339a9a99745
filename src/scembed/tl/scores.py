"""Scores of an embedding and the comparison of methods over seeds, as the workflow's
``cluster``, ``integration`` and ``compare`` jobs compute them."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from scembed.api_support import batches_of, call_threads, obs_key, section_params, split_of
from scembed.checks import DataError, check_labels, normalise_labels


def _embedding_anndata(adata, use_rep, label_key, batch_key) -> ad.AnnData:
    """The embedding file the workflow's ``cluster`` job reads, from the user's AnnData:
    labels as an import stores them, the split (every cell "train" without one), the
    batch when there are two or more, ``obsm["X_emb"]`` (float32)."""
    from scembed.embedding import embedding_anndata

    if use_rep not in adata.obsm:
        raise DataError(
            f"adata has no obsm[{use_rep!r}]; its embeddings are {list(adata.obsm.keys())}. "
            "Pass use_rep= one of them."
        )
    check_labels(adata.obs, label_key, "adata")
    obs = pd.DataFrame(index=adata.obs_names.copy())
    obs[label_key] = normalise_labels(adata.obs[label_key])
    obs["split"] = split_of(adata) if "split" in adata.obs else "train"
    uns = {"label_key": label_key}
    batch_key = obs_key(adata, batch_key, "batch")
    codes, names = batches_of(adata, batch_key, label_key)
    if names:
        obs[batch_key] = pd.Categorical.from_codes(codes, names)
        uns["batch_key"] = batch_key
    frame = ad.AnnData(obs=obs, uns=uns)
    return embedding_anndata(frame, np.asarray(adata.obsm[use_rep]), {"method": use_rep})


def evaluate(
    adata: ad.AnnData,
    use_rep: str,
    label_key: str | None = None,
    *,
    batch_key: str | None = None,
    seed: int = 0,
    threads: int | None = 1,
    **cluster_overrides,
) -> dict:
    """Every score of the workflow's ``cluster`` job (and, with a batch, of its
    ``integration`` job) for the embedding ``adata.obsm[use_rep]``.

    Leiden at ``resolution`` on a ``n_neighbors`` kNN graph (ARI, NMI, AMI, clusters),
    Leiden bisected to as many clusters as labels (``matched_*``), k-means with k = the
    labels (``kmeans_*``), the label silhouette, and the kNN-transfer accuracy from the
    ``"train"`` to the ``"test"`` cells of ``obs["split"]`` (NaN without a split). With
    two or more batches: iLISI, batch ASW, cLISI and isolated-label ASW (scIB's scaling).
    Cells without a label are clustered, not scored. The embedding is used as float32,
    as the workflow's embedding file stores it. ``adata`` is not modified.

    Parameters
    ----------
    use_rep
        Key of ``adata.obsm`` (``"X_pca"``, ``"X_vae"``...).
    label_key
        Column of the cell types; None: ``uns["label_key"]``.
    batch_key
        Batch column; None: ``uns["batch_key"]`` when there is one.
    seed
        Seeds the graph search, Leiden, UMAP, k-means and the silhouette sample.
    threads
        numba's (NN-descent) and OpenMP/BLAS threads for the call, restored after;
        None leaves them as they are.
    **cluster_overrides
        Keys of the config's ``cluster`` section (``n_neighbors``, ``resolution``,
        ``knn_k``, ``kmeans_n_init``...); the others keep the schema's defaults.

    Returns
    -------
    dict
        ``seed``, ``n_cells``, ``resolution`` and the scores under the names of
        ``metrics.json`` / ``metrics.tsv`` (``ari``, ``matched_ari``, ``kmeans_ari``,
        ``nmi``, ``ami``, ``silhouette``, ``knn_accuracy``...; with a batch also
        ``n_batches``, ``ilisi``, ``batch_asw``, ``clisi``, ``isolated_label_asw``,
        ``n_isolated_labels``). ``pd.DataFrame([scores])`` makes it a row.
    """
    from scembed.evaluate import evaluate_embedding
    from scembed.integration import integration_scores

    params = section_params("cluster", **cluster_overrides)
    label_key = obs_key(adata, label_key, "label")
    emb = _embedding_anndata(adata, use_rep, label_key, batch_key)
    with call_threads(threads, numba=True):
        scores = evaluate_embedding(emb, seed, threads=threads, compute_threads=threads, **params)
        if "batch_key" in emb.uns:
            scores.update(integration_scores(emb, seed, params["knn_search"]))
    return {
        "seed": seed,
        "n_cells": int(emb.n_obs),
        "resolution": float(params["resolution"]),
        **scores,
    }


def compare(table, baseline: str = "pca") -> pd.DataFrame:
    """The workflow's comparison of methods over seeds (``summary/comparison.tsv``).

    Per dataset, score and method: mean, sd, min and max over the seeds, and the paired
    difference against ``baseline`` over the seeds both ran (mean, 95% bootstrap CI,
    wins, ties).

    Parameters
    ----------
    table
        A metrics table (``summary/metrics.tsv`` read with ``pd.read_csv(sep="\\t")``),
        or a list of :func:`evaluate` results, each with a ``method`` (and, for several
        datasets, a ``dataset``) added. Needs the columns ``method`` and ``seed``; a
        missing ``dataset`` column means one dataset, named ``"data"``.
    baseline
        The method the others are compared against; ``"auto"`` (the method named pca,
        else the first of ``kind`` pca) or ``"none"`` (no paired columns).

    Returns
    -------
    DataFrame
        The columns of ``comparison.tsv``: dataset, metric, method, n_seeds, mean, sd,
        min, max, baseline, diff_mean, diff_ci_low, diff_ci_high, wins, ties,
        paired_seeds.
    """
    from scembed.compare import compare_methods

    metrics = table.copy() if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    missing = [column for column in ("method", "seed") if column not in metrics]
    if missing:
        raise ValueError(
            f"the metrics table has no column {missing}; its columns are "
            f"{list(metrics.columns)}. Add each run's method and seed."
        )
    if "dataset" not in metrics:
        metrics.insert(0, "dataset", "data")
    if "kind" not in metrics:
        metrics["kind"] = None
    repeated = metrics.duplicated(["dataset", "method", "seed"])
    if repeated.any():
        first = metrics.loc[repeated, ["dataset", "method", "seed"]].iloc[0].tolist()
        raise ValueError(
            f"{int(repeated.sum())} runs repeat a (dataset, method, seed) of another, e.g. "
            f"{first}: give each run its own seed (or method name)."
        )
    return compare_methods(metrics, baseline)
