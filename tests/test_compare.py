"""Methods compared across seeds (scembed.compare): spread, paired differences against
the baseline and between a dataset variant and the dataset it varies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scembed.compare import (
    PAIRED_COLUMNS,
    compare_methods,
    compare_variants,
    median_ari_seed,
    paired_bootstrap,
    paired_difference,
    paired_effects,
    pick_baseline,
)


def metrics_rows(methods: dict, seeds) -> pd.DataFrame:
    """Runs of ``methods`` ({name: kind}) over ``seeds``; ARI grows with the method's index."""
    rows = []
    for i, (method, kind) in enumerate(methods.items()):
        for seed in seeds:
            value = 0.3 + 0.1 * i + 0.01 * seed
            rows.append(
                {
                    "dataset": "d",
                    "method": method,
                    "kind": kind,
                    "seed": seed,
                    "n_cells": 100,
                    "n_labels": 3,
                    "n_scored": 90,
                    "resolution": 0.8,
                    "n_clusters": 4,
                    "ari": value,
                    "nmi": value,
                    "matched_ari": value,
                    "kmeans_ari": value,
                    "knn_accuracy": 0.9,
                }
            )
    return pd.DataFrame(rows)


def metrics_table(vae_ari):
    """pca (ARI 0.30, 0.32, 0.34) and vae (``vae_ari``) over seeds 0-2, each clustering
    score their ARI; no n_scored or resolution column (the headline's defaults)."""
    table = metrics_rows({"pca": "pca", "vae": "vae"}, [0, 1, 2])
    table = table.drop(columns=["n_scored", "resolution"])
    for metric in ("ari", "nmi", "matched_ari", "kmeans_ari"):
        table[metric] = [0.30, 0.32, 0.34, *vae_ari]
    return table


def variant_table() -> pd.DataFrame:
    """Runs of pca and vae on dataset d, on its variant d_hvg (vae's kmeans_ari higher,
    seed 2 not run) and on e, a dataset that is no one's variant."""
    base = metrics_rows({"pca": "pca", "vae": "vae"}, [0, 1, 2])
    variant = base.assign(dataset="d_hvg")
    variant.loc[variant["method"] == "vae", "kmeans_ari"] += 0.05  # vae gains, pca level
    variant = variant[variant["seed"] != 2]  # a seed the variant did not run: not paired
    other = base.assign(dataset="e")  # a dataset that is no one's variant
    return pd.concat([base, variant, other], ignore_index=True)


# --------------------------------------------------------------------------- methods


def test_compare_methods_paired_differences():
    table = metrics_table([0.40, 0.31, 0.44])
    comparison = compare_methods(table)
    row = comparison[(comparison["metric"] == "ari") & (comparison["method"] == "vae")].iloc[0]
    diffs = np.array([0.10, -0.01, 0.10])
    assert row["mean"] == pytest.approx(np.mean([0.40, 0.31, 0.44]))
    assert row["sd"] == pytest.approx(np.std([0.40, 0.31, 0.44], ddof=1))
    assert (row["min"], row["max"]) == (pytest.approx(0.31), pytest.approx(0.44))
    assert row["diff_mean"] == pytest.approx(diffs.mean())
    assert row["wins"] == 2 and row["paired_seeds"] == 3 and row["baseline"] == "pca"
    tolerance = 1e-12
    assert diffs.min() - tolerance <= row["diff_ci_low"] <= row["diff_mean"]
    assert row["diff_mean"] <= row["diff_ci_high"] <= diffs.max() + tolerance
    baseline = comparison[(comparison["metric"] == "ari") & (comparison["method"] == "pca")]
    assert baseline["diff_mean"].isna().all()


def test_paired_bootstrap_is_seeded_and_brackets_the_mean():
    diffs = np.array([0.05, 0.07, 0.02, 0.09, 0.04])
    low, high = paired_bootstrap(diffs)
    assert (low, high) == paired_bootstrap(diffs)
    assert diffs.min() <= low < diffs.mean() < high <= diffs.max()
    assert low > 0  # every seed wins: the interval excludes zero
    assert np.isnan(paired_bootstrap(np.array([0.1]))[0])


def test_paired_difference_pairs_the_seeds_both_have():
    values = pd.Series([0.5, 0.4, np.nan, 0.7], index=[0, 1, 2, 3])
    reference = pd.Series([0.3, 0.4, 0.2], index=[0, 1, 2])
    row = paired_difference(values, reference)  # seeds 0 and 1 pair: +0.2 and 0
    assert tuple(row) == PAIRED_COLUMNS
    assert row["diff_mean"] == pytest.approx(0.1)
    assert (row["wins"], row["ties"], row["paired_seeds"]) == (1, 1, 2)
    assert (row["diff_ci_low"], row["diff_ci_high"]) == paired_bootstrap(np.array([0.2, 0.0]))
    none = paired_difference(pd.Series([0.1], index=[5]), reference)
    assert np.isnan(none["diff_mean"]) and np.isnan(none["diff_ci_low"])
    assert (none["wins"], none["ties"], none["paired_seeds"]) == (0, 0, 0)


def test_median_ari_seed():
    runs = pd.DataFrame({"seed": [0, 1, 2, 3, 4], "ari": [0.5, 0.1, 0.3, 0.9, 0.2]})
    assert median_ari_seed(runs) == 2
    # an even count takes the lower middle run: ARIs 0.1, 0.3, 0.5, 0.9 -> 0.3, seed 2
    assert median_ari_seed(runs.iloc[:4]) == 2


def test_no_pca_compares_against_nothing():
    table = metrics_rows({"vae": "vae", "vae_nb": "vae"}, [0, 1, 2])
    comparison = compare_methods(table)
    assert comparison["baseline"].isna().all() and comparison["diff_mean"].isna().all()


def test_a_configured_baseline_among_vaes():
    table = metrics_rows({"vae": "vae", "vae_nb": "vae"}, [0, 1, 2])
    comparison = compare_methods(table, "vae")
    row = comparison[(comparison["metric"] == "ari") & (comparison["method"] == "vae_nb")]
    assert row["diff_mean"].iloc[0] == pytest.approx(0.1)
    assert row["wins"].iloc[0] == 3
    with pytest.raises(ValueError, match="baseline 'pca' is not one of the methods"):
        compare_methods(table, "pca")
    assert pick_baseline(table, "none") is None
    assert pick_baseline(metrics_rows({"base": "pca", "v": "vae"}, [0]), "auto") == "base"


def test_one_method_and_one_seed():
    table = metrics_rows({"pca": "pca"}, [0])
    comparison = compare_methods(table)
    assert set(comparison["method"]) == {"pca"} and comparison["sd"].isna().all()


def test_paired_effects_and_their_figure(tmp_path):
    from scembed.plots import paired_effects_figure

    table = metrics_rows({"vae": "vae", "vae_nb": "vae", "vae_log": "vae"}, [0, 1, 2])
    comparison = compare_methods(table, "vae")
    effects = paired_effects(comparison)
    assert set(effects["method"]) == {"vae_nb", "vae_log"}  # not the baseline itself
    assert list(dict.fromkeys(effects["metric"])) == [
        "matched_ari",
        "kmeans_ari",
        "ari",
        "nmi",
        "knn_accuracy",
    ]
    assert list(dict.fromkeys(effects["method"])) == ["vae_nb", "vae_log"]
    paired_effects_figure(effects, tmp_path / "effects.png")
    assert (tmp_path / "effects.png").read_bytes()[:4] == b"\x89PNG"
    none = compare_methods(table, "none")
    paired_effects_figure(paired_effects(none), tmp_path / "none.png")
    assert (tmp_path / "none.png").stat().st_size > 0


# --------------------------------------------------------------------------- variants


def test_variants_are_paired_with_the_dataset_they_vary():
    table = variant_table()
    variants = compare_variants(table, {"d_hvg": "d"})
    assert set(variants["dataset"]) == {"d_hvg"} and set(variants["variant_of"]) == {"d"}
    assert list(dict.fromkeys(variants["metric"])) == [
        "matched_ari",
        "kmeans_ari",
        "ari",
        "nmi",
        "knn_accuracy",
    ]
    rows = variants.set_index(["metric", "method"])
    assert rows.loc[("kmeans_ari", "vae"), "diff_mean"] == pytest.approx(0.05)
    assert rows.loc[("kmeans_ari", "vae"), "wins"] == 2
    assert rows.loc[("kmeans_ari", "vae"), "paired_seeds"] == 2
    assert rows.loc[("kmeans_ari", "pca"), "diff_mean"] == pytest.approx(0)
    assert rows.loc[("kmeans_ari", "pca"), "ties"] == 2
    # the variant's own mean is over its seeds, the parent's over all of its seeds
    assert rows.loc[("kmeans_ari", "vae"), "parent_mean"] == pytest.approx(0.41)
    assert compare_variants(table, {}).empty
