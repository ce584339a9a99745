"""Score how one embedding mixes the batches and keeps the labels: integration.tsv."""

from scembed import numba_cache
from scembed.runtime import atomic_path, setup_logging, timed
from scembed.threads import compute_threads, pin_numba_threads


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    # before scanpy imports numba: NN-descent's neighbours depend on its thread count
    pin_numba_threads(compute_threads(snakemake.params.threads, snakemake.threads))
    numba_cache.enable()  # before pynndescent declares its numba kernels
    import anndata as ad

    from scembed.integration import integration_row, integration_scores

    seed = int(snakemake.wildcards.seed)
    adata = ad.read_h5ad(snakemake.input[0])
    with timed("integration scores", log):
        scores = integration_scores(adata, seed, snakemake.params.integration["knn_search"])
    batch_key = snakemake.params.integration["batch_key"]
    if scores["n_batches"] < 2:
        log.warning(
            "datasets.%s: obs[%r] holds one batch, so there is nothing to integrate: the "
            "integration scores are NaN (drop `batch_key`, or check the batch column)",
            snakemake.wildcards.dataset,
            batch_key,
        )
    log.info("%s / %s / seed %d: %s", *snakemake.wildcards[:2], seed, scores)
    dataset, method = snakemake.wildcards.dataset, snakemake.wildcards.method
    table = integration_row(dataset, method, seed, batch_key, scores)
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
