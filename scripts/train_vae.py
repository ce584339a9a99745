"""Train the VAE on one dataset with one seed; write the embedding, model and history."""

from pathlib import Path

import anndata as ad
import torch

from scembed.embedding import write_trained_model
from scembed.runtime import setup_logging
from scembed.vae.params import resolve_params
from scembed.vae.train import NonFiniteLossError, train_vae


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    torch.set_num_threads(snakemake.threads)
    seed = int(snakemake.wildcards.seed)
    spec = {k: v for k, v in snakemake.params.method.items() if k != "kind"}
    params = resolve_params(spec)
    log.info("parameters: %s", params)
    pre = ad.read_h5ad(snakemake.input[0])
    try:
        result = train_vae(
            pre.layers["counts"], pre.obs["split"].to_numpy(), params, seed, log=log.info
        )
    except NonFiniteLossError as err:
        if err.best_state is not None:
            Path(snakemake.params.failed_checkpoint).parent.mkdir(parents=True, exist_ok=True)
            torch.save(err.best_state, snakemake.params.failed_checkpoint)
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
    write_trained_model(
        snakemake.output, pre, result.latent, info, result.state_dict, result.history
    )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
