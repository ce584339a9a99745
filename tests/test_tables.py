"""Markdown of the comparison (scembed.tables): the headline table of summary.md, the
paired effects and the dataset variants of effects.md."""

from __future__ import annotations

import numpy as np
from test_compare import metrics_rows, metrics_table, variant_table, with_integration

from scembed.compare import compare_methods, compare_variants
from scembed.tables import effects_markdown, headline_markdown, variants_markdown

# --------------------------------------------------------------------------- headline


def test_headline_of_paired_differences():
    table = metrics_table([0.40, 0.31, 0.44])
    comparison = compare_methods(table)
    headline = headline_markdown(table, comparison)
    vae = np.array([0.40, 0.31, 0.44])
    assert f"| vae | 3 | {vae.mean():.3f} ± {vae.std(ddof=1):.3f} |" in headline
    assert "| vae | 3 | 0.383 ± 0.067 |" in headline  # the same, worked by hand
    assert "better in 2 of 3 seeds" in headline


def test_no_pca_still_writes_the_headline():
    table = metrics_rows({"vae": "vae", "vae_nb": "vae"}, [0, 1, 2])
    comparison = compare_methods(table)
    headline = headline_markdown(table, comparison)
    assert "| vae_nb | 3 | 0.410 ± 0.010 |" in headline
    assert "no paired comparison: no baseline method" in headline
    assert "ARI (Leiden, res. 0.8)" in headline
    assert "100 cells, 90 of them labelled and scored" in headline


def test_headline_against_a_configured_baseline_among_vaes():
    table = metrics_rows({"vae": "vae", "vae_nb": "vae"}, [0, 1, 2])
    comparison = compare_methods(table, "vae")
    assert "vae_nb vs vae, ari: difference +0.100" in headline_markdown(table, comparison)


def test_headline_of_one_method_and_one_seed():
    table = metrics_rows({"pca": "pca"}, [0])
    comparison = compare_methods(table)
    headline = headline_markdown(table, comparison)
    assert "| pca | 1 | 0.300 |" in headline
    assert "only the baseline pca ran" in headline
    # two methods, one seed: a difference without a CI
    table = metrics_rows({"pca": "pca", "vae": "vae"}, [0])
    headline = headline_markdown(table, compare_methods(table))
    assert "vae vs pca, ari: difference +0.100, better in 1 of 1 seeds" in headline


def test_headline_integration_section_only_for_datasets_with_a_batch():
    table = with_integration(metrics_rows({"pca": "pca", "vae": "vae"}, [0, 1, 2]))
    table["matched_nmi"], table["silhouette"] = 0.5, 0.0
    headline = headline_markdown(table, compare_methods(table))
    d, b = headline.split("## b (")[0], headline.split("## b (")[1]
    assert "Integration" not in d  # d has no batch: its section is as before
    header = (
        "| method | seeds | iLISI | batch ASW | cLISI | isolated-label ASW | batch mixing "
        "| bio conservation |"
    )
    assert "### Integration (2 batches)" in b and header in b
    # harmony: iLISI 0.3, 0.35, 0.4; batch ASW 0.1 above; mixing their mean per seed
    assert "| harmony | 3 | 0.350 ± 0.050 | 0.450 ± 0.050 | 0.550 ± 0.050 |" in b
    assert "| 0.400 ± 0.050 |" in b  # batch mixing of harmony: (0.35 + 0.45) / 2
    assert "Integration scores (scIB, Luecken et al. 2022)" in headline


def test_headline_without_a_batch_has_no_integration_text():
    table = metrics_table([0.40, 0.31, 0.44])
    headline = headline_markdown(table, compare_methods(table))
    assert "Integration" not in headline and "iLISI" not in headline
    assert headline.endswith("The CI resamples seeds (paired).\n")


# --------------------------------------------------------------------------- effects


def test_paired_effects_table():
    table = metrics_rows({"vae": "vae", "vae_nb": "vae", "vae_log": "vae"}, [0, 1, 2])
    comparison = compare_methods(table, "vae")
    text = effects_markdown(comparison)
    assert "## d: difference from vae" in text
    # +0.1 on every seed: the CI is the point, it excludes 0 (*), 3 of 3 seeds won;
    # knn_accuracy is equal everywhere: ties, no seed won
    assert "| method | matched_ari | kmeans_ari | ari | nmi | knn_accuracy |" in text
    assert "| vae_nb | +0.100 [+0.100, +0.100]* 3/3 |" in text
    assert "+0.000 [+0.000, +0.000] 0/3 |" in text
    one_seed = compare_methods(metrics_rows({"vae": "vae", "vae_nb": "vae"}, [0]), "vae")
    assert "| vae_nb | +0.100 1/1 |" in effects_markdown(one_seed)  # no CI from one seed
    none = compare_methods(table, "none")
    assert "No paired comparison" in effects_markdown(none)


def test_variants_table():
    table = variant_table()
    text = variants_markdown(compare_variants(table, {"d_hvg": "d"}))
    assert "## d_hvg: difference from d (same method, same seed)" in text
    assert "| vae | +0.000 [+0.000, +0.000] 0/2 | +0.050 [+0.050, +0.050]* 2/2 |" in text
    assert variants_markdown(compare_variants(table, {})) == ""
