"""Figures of one dataset: metrics by method (with the integration scores when it has a
batch), UMAPs (coloured by batch too), VAE loss curves, cluster heatmaps."""

import pandas as pd

from scembed.compare import compared_metrics, median_ari_seed
from scembed.plots import heatmap_figure, losses_figure, metrics_figure, umap_grid_figure
from scembed.runtime import atomic_path, setup_logging


def main(snakemake):
    setup_logging(snakemake.log[0])
    dataset = snakemake.wildcards.dataset
    metrics = pd.read_csv(snakemake.input.metrics, sep="\t")
    metrics = metrics[metrics["dataset"] == dataset]
    clusters = dict(zip(map(tuple, snakemake.params.runs), snakemake.input.clusters, strict=True))

    median_runs = {}
    for method, runs in metrics.groupby("method", sort=False):
        seed = median_ari_seed(runs)
        table = pd.read_csv(clusters[(method, seed)], sep="\t", index_col="cell")
        median_runs[f"{method} (seed {seed}, median ARI)"] = table
    histories = {}
    for path in snakemake.input.histories:
        method, seed = path.split("/")[-3:-1]
        histories[f"{method} {seed}"] = pd.read_csv(path, sep="\t")

    figures = {
        "metrics": lambda out: metrics_figure(
            metrics, compared_metrics(metrics), f"{dataset}: metrics by seed", out
        ),
        "umaps": lambda out: umap_grid_figure(median_runs, f"{dataset}: UMAPs", out),
        "losses": lambda out: losses_figure(histories, f"{dataset}: VAE losses", out),
        "heatmap": lambda out: heatmap_figure(median_runs, f"{dataset}: clusters vs labels", out),
    }
    for name, draw in figures.items():
        with atomic_path(snakemake.output[name]) as tmp:
            draw(tmp)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
