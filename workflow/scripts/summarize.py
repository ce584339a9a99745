"""Gather every run's metrics.json (and, for datasets with a batch, its integration.tsv)
into results/summary/metrics.tsv."""

from scembed.runtime import setup_logging
from scembed.summary import metrics_table, write_metrics_table


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    table = metrics_table(snakemake.input.metrics, snakemake.input.integration)
    write_metrics_table(table, snakemake.output[0])
    log.info("%d runs summarised", len(table))
    if snakemake.input.integration:
        log.info("integration scores of %d runs", len(snakemake.input.integration))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
