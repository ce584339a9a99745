"""The integration trade-off of one dataset with a batch: batch mixing against bio
conservation, one point per method (summary/{dataset}/integration.png)."""

import pandas as pd

from scembed.integration import with_aggregates
from scembed.plots import integration_figure
from scembed.runtime import atomic_path, setup_logging


def main(snakemake):
    setup_logging(snakemake.log[0])
    dataset = snakemake.wildcards.dataset
    metrics = pd.read_csv(snakemake.input[0], sep="\t", dtype={"dataset": str, "method": str})
    runs = with_aggregates(metrics[metrics["dataset"] == dataset])
    with atomic_path(snakemake.output[0]) as tmp:
        integration_figure(runs, f"{dataset}: batch mixing against bio conservation", tmp)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
