"""Train the VAE on one dataset with one seed; write the embedding, model and history.

Training writes a checkpoint outside the rule's outputs (``params.checkpoint``) every
``checkpoint_every`` epochs (config key); a rerun after a kill resumes from it, and it is
removed once the outputs are written. With ``use_batch`` (preset ``improved``) on a dataset
with a ``batch_key`` the batch is a covariate of the network, and ``model.pt`` names the
batches (its state dict's ``batches._extra_state``). With ``device: auto`` and several
visible GPUs the job trains on one that no other training job holds
(:func:`scembed.vae.device.claimed_gpu`).
"""

import torch

from scembed.batches import batch_codes, batch_key_of
from scembed.embedding import write_trained_model
from scembed.runtime import atomic_path, read_h5ad_parts, setup_logging, stop_on_signals
from scembed.threads import compute_threads, pin_torch_threads
from scembed.vae import checkpoint as ckpt
from scembed.vae.device import claimed_gpu
from scembed.vae.params import resolve_params
from scembed.vae.train import NonFiniteLossError, train_vae


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    stop_on_signals(
        log,
        "train_vae",
        "run the workflow again: training resumes from its last checkpoint (config key "
        "checkpoint_every sets how often one is written)",
    )
    threads = compute_threads(snakemake.params.threads, snakemake.threads)
    pin_torch_threads(threads)
    log.info("torch computes on %d thread(s) (compute_threads.train)", threads)
    seed = int(snakemake.wildcards.seed)
    spec = {k: v for k, v in snakemake.params.method.items() if k != "kind"}
    params = resolve_params(spec)
    log.info("parameters: %s", params)
    # the counts only: the log-normalised X is never read (gigabytes at atlas scale)
    pre = read_h5ad_parts(snakemake.input[0], x=False, layers=("counts",))
    key = batch_key_of(pre)
    batch = names = None
    if key is not None and params.use_batch:
        batch, names = batch_codes(pre.obs, key)
        log.info("batch: obs[%r], %d batches, a covariate of the VAE", key, len(names))
    else:
        log.info("batch: not used (%s)", "no batch_key" if key is None else "use_batch: false")
    checkpoint = snakemake.params.checkpoint
    try:
        with claimed_gpu(params.device, log.info):
            result = train_vae(
                pre.layers["counts"],
                pre.obs["split"].to_numpy(),
                params,
                seed,
                log=log.info,
                checkpoint=checkpoint,
                checkpoint_every=snakemake.config["checkpoint_every"],
                batch=batch,
                batch_names=names,
            )
    except NonFiniteLossError as err:
        if err.best_state is not None:
            with atomic_path(snakemake.params.failed_checkpoint) as tmp:
                torch.save(err.best_state, tmp)
            log.error(
                "best checkpoint before the failure kept in %s", snakemake.params.failed_checkpoint
            )
        raise

    info = {
        "dataset": snakemake.wildcards.dataset,
        "method": snakemake.wildcards.method,
        "kind": "vae",
        "seed": seed,
        "device": result.device,
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "stop_reason": result.stop_reason,
    }
    if result.batches:
        info.update(batch_key=key, batches=result.batches)
    write_trained_model(
        snakemake.output, pre, result.latent, info, result.state_dict, result.history
    )
    ckpt.remove(checkpoint)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
