"""Checks of the config and its plan before any job (scembed.config_checks): each refusal
names the dataset or setting, the problem and the fix."""

from __future__ import annotations

import pytest
from conftest import synthetic_config

from scembed.checks import split_sizes
from scembed.config_checks import (
    PBMC68K_CELLS,
    known_cell_count,
    repeated_seeds,
    selected_datasets,
    selected_methods,
    too_few_cells,
)
from scembed.presets import vae_spec_params

# --------------------------------------------------------------------------- too few cells

SPLIT = {"validation_fraction": 0.1, "test_fraction": 0.05}


def test_the_reported_case_15_cells_with_20_neighbours_is_named():
    problems = too_few_cells(15, "datasets.tiny", n_neighbors=20, **SPLIT)
    assert problems == [
        "datasets.tiny: 15 cells, but cluster.n_neighbors is 20: the kNN graph needs more "
        "cells than neighbours. Set `cluster: {n_neighbors: 7}` under datasets.tiny or "
        "give datasets.tiny more cells."
    ]
    assert too_few_cells(21, "datasets.tiny", n_neighbors=20, **SPLIT) == []


def test_too_few_cells_for_a_vae_minibatch_names_the_method_and_a_batch_size_that_works():
    methods = {
        "vae": {"kind": "vae"},  # the book's batch_size 100, drop_last true
        "small": {"kind": "vae", "batch_size": 50},
        "no_drop": {"kind": "vae", "drop_last": False},
    }
    problems = too_few_cells(80, "datasets.d", n_neighbors=15, **SPLIT, vae_methods=methods)
    train = split_sizes(80, **SPLIT)["train"]
    assert problems == [
        f"datasets.d: 80 cells give {train} training cells, fewer than one minibatch of "
        f"method vae (batch_size 100, drop_last true). Set `batch_size: {train}` (or "
        "less) under methods.vae or give datasets.d more cells."
    ]
    assert too_few_cells(1000, "datasets.d", n_neighbors=15, **SPLIT, vae_methods=methods) == []


def test_a_presets_minibatch_is_checked_without_a_batch_size_in_the_config():
    """The improved preset's batch_size (128) comes from the torch-free presets."""
    improved = {"vae": {"kind": "vae", "preset": "improved"}}
    train = split_sizes(140, **SPLIT)["train"]
    problems = too_few_cells(140, "datasets.d", n_neighbors=15, **SPLIT, vae_methods=improved)
    assert train < 128 and len(problems) == 1
    assert "method vae (batch_size 128, drop_last true)" in problems[0]


def test_a_vaes_resolved_params_are_checked_as_its_config_entry():
    """The plan hands over each VAE's VAEParams, resolved once, instead of its entry."""
    methods = {"vae": {"kind": "vae", "preset": "improved"}, "small": {"kind": "vae"}}
    resolved = {name: vae_spec_params(spec) for name, spec in methods.items()}
    for n_cells in (80, 140, 1000):
        by_entry = too_few_cells(n_cells, "d", n_neighbors=15, **SPLIT, vae_methods=methods)
        by_params = too_few_cells(n_cells, "d", n_neighbors=15, **SPLIT, vae_methods=resolved)
        assert by_params == by_entry


def test_too_few_cells_for_the_split_and_the_minimum():
    problems = too_few_cells(
        8, "datasets.d", n_neighbors=2, validation_fraction=0.05, test_fraction=0.0
    )
    assert problems[0] == (
        "datasets.d: 8 cells, but the workflow needs at least 10; give the dataset more cells."
    )
    assert problems[1].startswith("datasets.d: 8 cells give 8 training and 0 validation cells")
    assert "Raise `validation_fraction`" in problems[1]


def test_known_cell_counts():
    assert known_cell_count({"source": "synthetic", "n_cells": 15}) == 15
    assert known_cell_count({"source": "synthetic", "n_cells": 9, "type_sizes": [3, 4]}) == 7
    assert known_cell_count({"source": "h5ad", "path": "x.h5ad"}) is None
    assert known_cell_count({"source": "pbmc68k"}) == PBMC68K_CELLS


def test_the_test_config_passes_the_cell_count_checks():
    config = synthetic_config()
    dataset = config["datasets"]["synthetic"]
    vaes = {k: v for k, v in config["methods"].items() if v["kind"] == "vae"}
    n = known_cell_count(dataset)
    assert too_few_cells(n, "x", n_neighbors=20, **SPLIT, vae_methods=vaes) == []


# --------------------------------------------------------------------------- seeds


def test_repeated_seeds_are_named():
    assert repeated_seeds([0, 1, 2]) is None
    assert repeated_seeds("0") is None  # not a list: the schema says what is wrong
    assert repeated_seeds([3, 0, 3, 1, 0, 3]) == (
        "seeds [3, 0, 3, 1, 0, 3] lists 3, 0 more than once: each seed is one run, and a "
        "seed twice would be the same run twice. List each seed once, e.g. "
        "`seeds: [3, 0, 1]`."
    )


# --------------------------------------------------------------------------- datasets


def test_only_methods_keeps_the_config_order_and_the_baseline():
    methods = {"pca": {"kind": "pca"}, "vae": {"kind": "vae"}, "scvi": {"kind": "scvi"}}
    assert selected_methods(methods, [], "pca") == methods
    assert list(selected_methods(methods, "scvi, pca", "pca")) == ["pca", "scvi"]
    assert selected_methods(methods, ["vae"], "none") == {"vae": {"kind": "vae"}}
    with pytest.raises(ValueError) as unknown:
        selected_methods(methods, "pca,sclvi", "pca")
    assert str(unknown.value) == (
        "only_methods names 'sclvi', not a method of the config. Choose from pca, vae, "
        "scvi (or leave only_methods empty to run every method)."
    )
    with pytest.raises(ValueError, match="leaves out 'pca', the baseline.*Add pca to"):
        selected_methods(methods, "vae,scvi", "pca")


def test_only_datasets_selects_in_the_config_order_and_names_what_is_wrong():
    datasets = {"a": {}, "b": {}, "b_hvg": {"variant_of": "b"}, "c": {}}
    assert selected_datasets(datasets, []) == ["a", "b", "b_hvg", "c"]
    assert selected_datasets(datasets, "") == ["a", "b", "b_hvg", "c"]
    assert selected_datasets(datasets, ["c", "a"]) == ["a", "c"]
    assert selected_datasets(datasets, "c, b") == ["b", "c"]  # as --config gives it
    assert selected_datasets(datasets, "b_hvg,b") == ["b", "b_hvg"]
    with pytest.raises(ValueError) as unknown:
        selected_datasets(datasets, "a,kang")
    assert str(unknown.value) == (
        "only_datasets names 'kang', not a dataset of the config. Choose from a, b, b_hvg, "
        "c (or leave only_datasets empty to run every dataset)."
    )
    with pytest.raises(ValueError, match="variant 'b_hvg' without 'b'.*Add b to only_"):
        selected_datasets(datasets, ["b_hvg"])
    # every dataset: a `variant_of` naming no dataset is check_dataset_variants' error
    assert selected_datasets({"a": {"variant_of": "x"}}, []) == ["a"]
