"""The embedding file shared by every method: cells, labels, split, the batch (when the
dataset has one) and ``obsm["X_emb"]``."""

from __future__ import annotations

import anndata as ad
import numpy as np

from scembed.batches import batch_key_of

EMBEDDING_KEY = "X_emb"


def check_embedding(embedding: np.ndarray, where: str) -> None:
    """Refuse a non-finite embedding instead of handing NaN to the clustering."""
    finite = np.isfinite(embedding)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(
            f"{where}: the embedding has non-finite values in {len(rows)} cells (first: "
            f"cell {rows[0]}). The model diverged; see its training log and try "
            "`preset: stable` or a lower `lr`."
        )


def embedding_anndata(preprocessed: ad.AnnData, embedding: np.ndarray, info: dict) -> ad.AnnData:
    """AnnData of the embedding (no expression matrix) with labels, split and ``info``,
    and the batch column and ``uns["batch_key"]`` when the preprocessed data has them."""
    check_embedding(embedding, info.get("method", "embedding"))
    label_key = preprocessed.uns["label_key"]
    batch_key = batch_key_of(preprocessed)
    columns = [label_key, "split"] + ([batch_key] if batch_key else [])
    obs = preprocessed.obs[columns].copy()
    adata = ad.AnnData(obs=obs)
    adata.obsm[EMBEDDING_KEY] = np.asarray(embedding, dtype=np.float32)
    adata.uns["label_key"] = label_key
    if batch_key:
        adata.uns["batch_key"] = batch_key
    adata.uns["n_genes"] = int(preprocessed.n_vars)
    adata.uns["embedding"] = info
    return adata


def write_trained_model(output, preprocessed: ad.AnnData, latent, info: dict, state_dict, history):
    """Write a trained model's four outputs (VAE and scVI rules alike): ``output.model``
    (the state dict), ``output.history`` (per-epoch losses), ``output.loss`` (their
    figure) and ``output.embedding``, each atomically."""
    import torch

    from scembed.plots import loss_figure
    from scembed.runtime import atomic_path, write_h5ad

    with atomic_path(output.model) as tmp:
        torch.save(state_dict, tmp)
    with atomic_path(output.history) as tmp:
        history.to_csv(tmp, sep="\t", index=False)
    title = f"{info['dataset']} / {info['method']} / seed {info['seed']}"
    with atomic_path(output.loss) as tmp:
        loss_figure(history, title, tmp)
    write_h5ad(embedding_anndata(preprocessed, latent, info), output.embedding)
