"""Download the Zeisel 2015 expression file from the first mirror that serves it intact."""

from scembed.runtime import setup_logging, stop_on_signals, write_json
from scembed.sources import download, zeisel_layout_ok


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    stop_on_signals(
        log, "the download", "nothing partial is kept; run the workflow again to download anew"
    )
    name = snakemake.wildcards.dataset
    dataset = snakemake.params.dataset
    # The dataset's `download` settings (timeouts, retries) come from the config, not from
    # params: changing them must not rerun a download that already succeeded.
    settings = snakemake.config["datasets"][name]["download"]
    log.info("downloading from %s (%s)", dataset["urls"], settings)
    provenance = download(
        dataset["urls"],
        snakemake.output.data,
        sha256=dataset.get("sha256"),
        verify=zeisel_layout_ok,
        config_key=f"datasets.{name}",
        **settings,
    )
    write_json(provenance, snakemake.output.provenance)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
