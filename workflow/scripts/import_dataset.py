"""Import a dataset's counts and labels into results/{dataset}/raw.h5ad."""

import json
from pathlib import Path

from scembed.runtime import setup_logging, write_h5ad
from scembed.sources import load_dataset


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    files = dict(snakemake.input.items())
    provenance = None
    if "provenance" in files:
        provenance = json.loads(Path(files.pop("provenance")).read_text())
    adata = load_dataset(snakemake.params.dataset, files, provenance)
    log.info("imported %s: %d cells x %d genes", snakemake.params.name, *adata.shape)
    write_h5ad(adata, snakemake.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
