"""results/summary/provenance.json: data checksums, versions, devices, config, commit."""

import pandas as pd

from scembed.provenance import collect
from scembed.runtime import setup_logging, write_json


def main(snakemake):
    setup_logging(snakemake.log[0])
    metrics = pd.read_csv(snakemake.input.metrics, sep="\t")
    raw_files = dict(zip(snakemake.params.datasets, snakemake.input.raw, strict=True))
    write_json(
        collect(dict(snakemake.params.config), raw_files, metrics, snakemake.params.repo),
        snakemake.output[0],
    )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
