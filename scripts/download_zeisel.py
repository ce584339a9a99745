"""Download the Zeisel 2015 expression file from the first mirror that serves it intact."""

from scembed.runtime import setup_logging, write_json
from scembed.sources import download, zeisel_layout_ok


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    dataset = snakemake.params.dataset
    log.info("downloading from %s", dataset["urls"])
    provenance = download(
        dataset["urls"],
        snakemake.output.data,
        sha256=dataset.get("sha256"),
        verify=zeisel_layout_ok,
        config_key=f"datasets.{snakemake.wildcards.dataset}",
    )
    log.info(
        "got %s bytes from %s (sha256 %s)",
        provenance["bytes"],
        provenance["url"],
        provenance["sha256"],
    )
    write_json(provenance, snakemake.output.provenance)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
