"""Train scvi-tools' SCVI on one dataset with one seed; write the same files as a VAE run.

With ``device: auto`` and several visible GPUs the job trains on one that no other
training job holds (:func:`scembed.vae.device.claimed_gpu`).
"""

import anndata as ad

from scembed.batches import batch_codes, batch_key_of, uses_batch
from scembed.embedding import write_trained_model
from scembed.runtime import setup_logging
from scembed.scvi_model import train_scvi
from scembed.threads import compute_threads, pin_torch_threads
from scembed.vae.device import claimed_gpu


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    threads = compute_threads(snakemake.params.threads, snakemake.threads)
    pin_torch_threads(threads)
    log.info("torch computes on %d thread(s) (compute_threads.train)", threads)
    seed = int(snakemake.wildcards.seed)
    method = snakemake.params.method
    params = {k: v for k, v in method.items() if k != "kind"}
    log.info("parameters: %s", params)
    pre = ad.read_h5ad(snakemake.input[0])
    key = batch_key_of(pre)
    batch = names = None
    if key is not None and uses_batch(method):
        batch, names = batch_codes(pre.obs, key)
        log.info("batch: obs[%r], %d batches, SCVI's batch_key", key, len(names))
    else:
        log.info("batch: not used (%s)", "no batch_key" if key is None else "use_batch: false")
    with claimed_gpu(params.get("device", "auto"), log.info):
        result = train_scvi(
            pre.layers["counts"],
            pre.obs["split"].to_numpy(),
            seed=seed,
            log=log.info,
            batch=batch,
            batch_names=names,
            **params,
        )
    info = {
        "dataset": snakemake.wildcards.dataset,
        "method": snakemake.wildcards.method,
        "kind": "scvi",
        "seed": seed,
        "device": result.device,
        "epochs": result.epochs,
    }
    if names:
        info.update(batch_key=key, batches=names)
    write_trained_model(
        snakemake.output, pre, result.latent, info, result.state_dict, result.history
    )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
