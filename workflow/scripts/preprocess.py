"""Gene selection, cell filter, log-normalisation and the train/validation/test split."""

from scembed.batches import batch_key_of
from scembed.preprocess import preprocess
from scembed.runtime import setup_logging, write_h5ad


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    # given the path, preprocess() reads the counts itself and frees the full matrix once
    # the genes are chosen (no reference to it is kept here)
    adata = preprocess(snakemake.input[0], **snakemake.params.preprocess)
    log.info(
        "kept %d cells x %d genes (%d cells dropped); split %s",
        *adata.shape,
        adata.uns["preprocess"]["cells_dropped"],
        adata.obs["split"].value_counts().to_dict(),
    )
    key = batch_key_of(adata)
    if key is not None:
        log.info("batches (%r): %s", key, adata.obs[key].value_counts().sort_index().to_dict())
    write_h5ad(adata, snakemake.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
