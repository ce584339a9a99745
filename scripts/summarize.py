"""Gather every run's metrics.json into results/summary/metrics.tsv."""

from scembed.runtime import setup_logging
from scembed.summary import metrics_table, write_metrics_table


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    table = metrics_table(snakemake.input)
    write_metrics_table(table, snakemake.output[0])
    log.info("%d runs summarised", len(table))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
