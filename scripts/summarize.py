"""Gather every run's metrics.json into results/summary/metrics.tsv."""

import json
from pathlib import Path

import pandas as pd

from scembed.metrics import METRIC_NAMES, RUN_COLUMNS
from scembed.runtime import atomic_path, setup_logging


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    rows = [json.loads(Path(path).read_text()) for path in snakemake.input]
    table = pd.DataFrame(rows)
    first = [c for c in (*RUN_COLUMNS, *METRIC_NAMES) if c in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    table = table.sort_values(["dataset", "method", "seed"])
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    log.info("%d runs summarised", len(table))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
