"""Train the VAE on one dataset with one seed; write the embedding, model and history."""

from pathlib import Path

import anndata as ad
import torch

from scembed.embedding import embedding_anndata
from scembed.plots import loss_figure
from scembed.runtime import atomic_path, setup_logging, write_h5ad
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
        "method": snakemake.wildcards.method,
        "kind": "vae",
        "seed": seed,
        "device": result.device,
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "stop_reason": result.stop_reason,
    }
    with atomic_path(snakemake.output.model) as tmp:
        torch.save(result.state_dict, tmp)
    with atomic_path(snakemake.output.history) as tmp:
        result.history.to_csv(tmp, sep="\t", index=False)
    title = f"{snakemake.wildcards.dataset} / {snakemake.wildcards.method} / seed {seed}"
    with atomic_path(snakemake.output.loss) as tmp:
        loss_figure(result.history, title, tmp)
    write_h5ad(embedding_anndata(pre, result.latent, info), snakemake.output.embedding)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
