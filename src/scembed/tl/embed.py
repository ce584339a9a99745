"""Embeddings: the PCA baseline and the VAE, as the workflow's ``embed_pca`` and
``train_vae`` jobs compute them. torch is imported by :func:`vae` only."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import anndata as ad
import pandas as pd

from scembed.api_support import batches_of, call_threads, split_of
from scembed.checks import DataError
from scembed.schema import method_default

log = logging.getLogger("scembed.tl")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, where the platform reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pca(
    adata: ad.AnnData,
    n_components: int | None = None,
    *,
    use_batch: bool = False,
    batch_key: str | None = None,
    seed: int = 0,
    key_added: str = "X_pca",
    threads: int | None = 1,
) -> None:
    """The PCA baseline of the workflow's ``kind: pca`` methods, in place.

    Fitted on the ``"train"`` cells of ``obs["split"]`` (seeded randomized solver),
    applied to every cell of ``X`` (log-normalised by :func:`scembed.pp.book`); with
    ``use_batch`` and a batch, Harmony on the scores, seeded with ``seed``.

    Parameters
    ----------
    n_components
        Components; None: the schema's default (10, the book's).
    use_batch, batch_key
        Integrate the batches of ``obs[batch_key]`` (None: ``uns["batch_key"]``).
    seed
        The run's seed, as the workflow's ``seed``.
    key_added
        Written to ``adata.obsm[key_added]`` (cells x components, float32).
    threads
        Compute threads for the call (OpenMP/BLAS, Harmony), restored after; None
        leaves OpenMP/BLAS as they are and gives Harmony every CPU this process may
        use. Any count gives the same numbers.
    """
    from scembed.pca import harmony_scores, pca_embedding

    if n_components is None:
        n_components = method_default("pca", "n_components")
    train = split_of(adata) == "train"
    batch, _ = batches_of(adata, batch_key) if use_batch else (None, [])
    with call_threads(threads):
        scores = pca_embedding(adata.X, train, n_components, seed)
        if batch is not None:
            harmony_threads = threads if threads is not None else usable_cpus()
            scores = harmony_scores(scores, batch, seed, threads=harmony_threads)
    adata.obsm[key_added] = scores


@dataclass
class VAEResult:
    """What :func:`vae` returns: the trained model (best epoch, on the CPU, eval mode),
    the per-epoch losses, and how the training went."""

    model: object  # scembed.vae.module.VAE
    history: pd.DataFrame  # epoch, train_loss, validation_loss, seconds
    params: object  # scembed.vae.params.VAEParams
    device: str
    best_epoch: int
    stop_reason: str
    batches: list[str] = field(default_factory=list)


def vae(
    adata: ad.AnnData,
    preset: str = "improved",
    *,
    layer: str | None = "counts",
    batch_key: str | None = None,
    seed: int = 0,
    device: str = "auto",
    key_added: str = "X_vae",
    threads: int | None = 1,
    **params,
) -> VAEResult:
    """Train the VAE of the workflow's ``kind: vae`` methods and embed every cell.

    The workflow's ``train_vae`` job's code path (:func:`scembed.vae.train.train_vae`):
    trained on the ``"train"`` cells of ``obs["split"]``, early-stopped on the
    ``"validation"`` cells, the embedding is the encoder mean of the best epoch. On the
    CPU the same data, parameters and seed give the workflow's numbers bit for bit.

    Parameters
    ----------
    adata
        Preprocessed cells (:func:`scembed.pp.book`) with counts in ``layers[layer]``.
    preset
        ``"book"`` (the chapter, quirks included), ``"stable"`` or ``"improved"``.
    layer
        Layer of the raw counts; None reads ``X``.
    batch_key
        Batch column, a covariate of the network when the preset's (or ``use_batch``)
        says so; None: ``uns["batch_key"]`` when :func:`scembed.pp.book` recorded one.
    seed
        Seeds the initial weights and the minibatch order.
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    key_added
        The embedding goes to ``adata.obsm[key_added]`` (float32), a summary of the
        run (parameters, seed, device, best epoch) to ``adata.uns[key_added]``.
    threads
        torch's (and OpenMP/BLAS) threads for the call, restored after; None leaves
        them as they are.
    **params
        Any VAE parameter of the config (``n_latent``, ``likelihood``, ``max_epochs``,
        ``lr``...), overriding the preset's.

    Returns
    -------
    VAEResult
        ``model``, ``history`` (a DataFrame), ``params``, ``device``, ``best_epoch``,
        ``stop_reason``, ``batches``. torch's global random state is left as it was.
    """
    import dataclasses

    import torch

    from scembed.vae.device import resolve_device
    from scembed.vae.params import resolve_params
    from scembed.vae.train import build_model, train_vae

    settings = resolve_params({**params, "preset": preset, "device": device})
    if layer is not None and layer not in adata.layers:
        raise DataError(
            f"adata has no layer {layer!r} of counts; its layers are "
            f"{list(adata.layers.keys())}. Run scembed.pp.book(adata) first, or pass layer=."
        )
    counts = adata.X if layer is None else adata.layers[layer]
    split = split_of(adata)
    batch, names = batches_of(adata, batch_key) if settings.use_batch else (None, [])
    on = resolve_device(settings.device)
    cuda = [on.index or 0] if on.type == "cuda" else []
    with call_threads(threads, torch=True), torch.random.fork_rng(devices=cuda):
        result = train_vae(
            counts, split, settings, seed, log=log.info, batch=batch, batch_names=names or None
        )
        # the network the training built, given its best weights; built inside fork_rng,
        # its throwaway initial weights leave the caller's random state alone
        model = build_model(counts.shape[1], settings, result.batches)
    model.load_state_dict(result.state_dict)
    model.eval()
    adata.obsm[key_added] = result.latent
    adata.uns[key_added] = {
        "params": dataclasses.asdict(settings),
        "seed": seed,
        "device": result.device,
        "best_epoch": result.best_epoch,
        "stop_reason": result.stop_reason,
        **({"batches": result.batches} if result.batches else {}),
    }
    return VAEResult(
        model,
        result.history,
        settings,
        result.device,
        result.best_epoch,
        result.stop_reason,
        result.batches,
    )
