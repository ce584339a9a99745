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
    compared_metrics,
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


def with_integration(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a batch dataset ``b`` (pca: iLISI 0.2, 0.25, 0.3; harmony: 0.1 higher
    on every seed, the other integration scores alike) beside ``d``, whose integration
    columns are empty, as metrics.tsv has them when only some datasets have a batch."""
    batch = metrics_rows({"pca": "pca", "harmony": "pca"}, [0, 1, 2]).assign(dataset="b")
    gain = np.where(batch["method"] == "harmony", 0.1, 0.0)
    scores = {"n_batches": 2}
    for i, name in enumerate(("ilisi", "batch_asw", "clisi", "isolated_label_asw")):
        scores[name] = 0.2 + i * 0.1 + 0.05 * batch["seed"] + gain
    return pd.concat([table, batch.assign(**scores)], ignore_index=True)


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


def test_integration_scores_are_paired_where_a_dataset_has_them():
    table = with_integration(metrics_rows({"pca": "pca", "vae": "vae"}, [0, 1, 2]))
    comparison = compare_methods(table)
    scored = comparison[comparison["metric"] == "ilisi"]
    assert set(scored["dataset"]) == {"b"}  # d's integration columns are empty: no rows
    harmony = scored[scored["method"] == "harmony"].iloc[0]
    assert harmony["mean"] == pytest.approx(0.35) and harmony["baseline"] == "pca"
    assert harmony["diff_mean"] == pytest.approx(0.1)  # higher is better: 3 of 3 won
    assert (harmony["wins"], harmony["paired_seeds"]) == (3, 3)
    assert compared_metrics(table[table["dataset"] == "b"])[-4:] == [
        "ilisi",
        "batch_asw",
        "clisi",
        "isolated_label_asw",
    ]
    assert "ilisi" not in compared_metrics(table[table["dataset"] == "d"])
    effects = paired_effects(comparison)
    assert list(dict.fromkeys(effects.loc[effects["dataset"] == "b", "metric"]))[-4:] == [
        "ilisi",
        "batch_asw",
        "clisi",
        "isolated_label_asw",
    ]
    assert not effects.loc[effects["dataset"] == "d", "metric"].str.contains("lisi").any()


def test_no_integration_columns_no_integration_rows():
    comparison = compare_methods(metrics_rows({"pca": "pca", "vae": "vae"}, [0, 1, 2]))
    assert not set(comparison["metric"]) & {"ilisi", "batch_asw", "clisi", "isolated_label_asw"}


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
