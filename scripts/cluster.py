"""kNN graph, Leiden and UMAP on one embedding; clusters, a UMAP figure and metrics."""

import anndata as ad

from scembed.cluster import cluster_embedding
from scembed.metrics import cluster_scores
from scembed.plots import umap_figure
from scembed.runtime import atomic_path, setup_logging, write_json


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    seed = int(snakemake.wildcards.seed)
    adata = ad.read_h5ad(snakemake.input[0])
    label_key = adata.uns["label_key"]
    cluster_embedding(adata, seed, **snakemake.params.cluster)
    labels, clusters = adata.obs[label_key], adata.obs["leiden"]
    scores = cluster_scores(labels, clusters)
    log.info("%s: %s", snakemake.wildcards, scores)

    table = adata.obs[[label_key]].rename(columns={label_key: "label"})
    table["cluster"] = clusters.astype(str)
    with atomic_path(snakemake.output.clusters) as tmp:
        table.to_csv(tmp, sep="\t", index_label="cell")
    title = f"{snakemake.wildcards.dataset} / {snakemake.wildcards.method} / seed {seed}"
    with atomic_path(snakemake.output.umap) as tmp:
        umap_figure(adata.obsm["X_umap"], clusters, labels, title, tmp)
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
            "n_labels": int(labels.nunique()),
            **scores,
        },
        snakemake.output.metrics,
    )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
