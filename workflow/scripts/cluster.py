"""Cluster one embedding (Leiden, matched-k Leiden, k-means), draw its UMAP, score it."""

from scembed import numba_cache
from scembed.runtime import atomic_path, setup_logging, write_json
from scembed.threads import compute_threads, pin_numba_threads


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    threads = compute_threads(snakemake.params.threads, snakemake.threads)
    pin_numba_threads(threads)  # before scanpy imports numba: NN-descent's graph depends on it
    log.info("compute threads: %d (compute_threads.cluster)", threads)
    numba_cache.enable()  # before pynndescent and umap declare their numba kernels
    import anndata as ad

    from scembed.batches import batch_key_of
    from scembed.evaluate import evaluate
    from scembed.plots import umap_figure

    seed = int(snakemake.wildcards.seed)
    adata = ad.read_h5ad(snakemake.input[0])
    label_key = adata.uns["label_key"]
    try:
        evaluation = evaluate(
            adata,
            seed,
            threads=snakemake.threads,
            compute_threads=threads,
            **snakemake.params.cluster,
        )
    except ValueError as err:  # e.g. fewer cells than n_neighbors: say which dataset
        raise ValueError(f"datasets.{snakemake.wildcards.dataset}: {err}") from err
    scores = evaluation.scores
    log.info(
        "scored %d of %d cells against %d labels (cells without a label are clustered, not scored)",
        scores["n_scored"],
        adata.n_obs,
        scores["n_labels"],
    )
    log.info("%s / %s / seed %d: %s", *snakemake.wildcards[:2], seed, scores)
    if evaluation.umap_note:
        log.info(evaluation.umap_note)
    if evaluation.bisection_note:
        log.warning(evaluation.bisection_note)
    if not scores["matched_exact"]:
        log.warning(
            "no Leiden resolution gave exactly %d clusters; matched scores use %d clusters",
            scores["n_labels"],
            scores["matched_n_clusters"],
        )

    table = adata.obs[[label_key]].rename(columns={label_key: "label"})
    batch_key = batch_key_of(adata)
    if batch_key:  # only data with a batch: clusters.tsv is otherwise as it was
        table["batch"] = adata.obs[batch_key].astype(str)
    table["cluster"] = adata.obs["leiden"].astype(str)
    table["cluster_matched"] = adata.obs["leiden_matched"].astype(str)
    table["kmeans"] = adata.obs["kmeans"].astype(str)
    table[["umap_1", "umap_2"]] = adata.obsm["X_umap"]
    with atomic_path(snakemake.output.clusters) as tmp:
        table.to_csv(tmp, sep="\t", index_label="cell")
    title = f"{snakemake.wildcards.dataset} / {snakemake.wildcards.method} / seed {seed}"
    with atomic_path(snakemake.output.umap) as tmp:
        umap_figure(
            adata.obsm["X_umap"], table["cluster"], table["label"], title, tmp, table.get("batch")
        )
    info = adata.uns["embedding"]
    write_json(
        {
            "dataset": snakemake.wildcards.dataset,
            "method": snakemake.wildcards.method,
            "kind": info["kind"],
            "seed": seed,
            "device": info.get("device", "cpu"),
            "n_cells": int(adata.n_obs),
            "n_genes": int(adata.uns["n_genes"]),
            "resolution": float(snakemake.params.cluster["resolution"]),
            **scores,
        },
        snakemake.output.metrics,
    )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
