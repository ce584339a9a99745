"""Train scvi-tools' SCVI on one dataset with one seed; write the same files as a VAE run."""

import anndata as ad
import torch

from scembed.embedding import write_trained_model
from scembed.runtime import setup_logging
from scembed.scvi_model import train_scvi


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    torch.set_num_threads(snakemake.threads)
    seed = int(snakemake.wildcards.seed)
    params = {k: v for k, v in snakemake.params.method.items() if k != "kind"}
    log.info("parameters: %s", params)
    pre = ad.read_h5ad(snakemake.input[0])
    result = train_scvi(
        pre.layers["counts"], pre.obs["split"].to_numpy(), seed=seed, log=log.info, **params
    )
    info = {
        "dataset": snakemake.wildcards.dataset,
        "method": snakemake.wildcards.method,
        "kind": "scvi",
        "seed": seed,
        "device": result.device,
        "epochs": result.epochs,
    }
    write_trained_model(
        snakemake.output, pre, result.latent, info, result.state_dict, result.history
    )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
