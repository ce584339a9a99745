"""Compare methods across seeds: comparison.tsv, the headline summary.md, the paired
effects against the baseline (effects.md, paired_effects.png), and each dataset variant
against the dataset it varies (variants.tsv, also in effects.md)."""

import pandas as pd

from scembed.compare import compare_methods, compare_variants, paired_effects
from scembed.plots import paired_effects_figure
from scembed.runtime import atomic_path, setup_logging
from scembed.tables import effects_markdown, headline_markdown, variants_markdown


def main(snakemake):
    log = setup_logging(snakemake.log[0])
    metrics = pd.read_csv(snakemake.input[0], sep="\t")
    log.info("baseline setting: %s", snakemake.params.baseline)
    comparison = compare_methods(metrics, snakemake.params.baseline)
    with atomic_path(snakemake.output.comparison) as tmp:
        comparison.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    headline = headline_markdown(metrics, comparison)
    with atomic_path(snakemake.output.headline) as tmp, open(tmp, "w") as handle:
        handle.write(headline)
    log.info("\n%s", headline)
    variants = compare_variants(metrics, snakemake.params.variants)
    with atomic_path(snakemake.output.variants) as tmp:
        variants.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    with atomic_path(snakemake.output.effects) as tmp, open(tmp, "w") as handle:
        handle.write(effects_markdown(comparison))
        if not variants.empty:
            handle.write("\n" + variants_markdown(variants))
    with atomic_path(snakemake.output.effects_figure) as tmp:
        paired_effects_figure(paired_effects(comparison), tmp)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
