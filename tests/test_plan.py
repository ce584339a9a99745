"""The plan of a run (scembed.plan.load_plan): built once from the config, which it never
changes; the runs, files and params it gives; and each refusal, naming the fix."""

from __future__ import annotations

import copy
import csv
import functools

import pytest
from conftest import snakemake, synthetic_config, write_config
from snakemake.utils import validate

from scembed import presets
from scembed.methods import KINDS
from scembed.plan import Plan, load_plan, names_regex, params_value
from scembed.schema import SCHEMA_PATH, load_schema

VALIDATE = functools.partial(validate, schema=str(SCHEMA_PATH))


def plan_of(config: dict) -> Plan:
    return load_plan(config, validate=VALIDATE)


def two_datasets(**overrides) -> dict:
    """The test config with a second dataset `other` (with a batch) and an scvi method."""
    config = synthetic_config(**{"seeds": [3, 0, 1], **overrides})
    config["datasets"] = {
        "synthetic": config["datasets"]["synthetic"],
        "other": {"source": "synthetic", "n_cells": 500, "n_genes": 100, "n_batches": 2},
    }
    config["datasets"]["other"]["batch_key"] = "batch"
    config["methods"]["scvi"] = {"kind": "scvi", "use_batch": False}
    return config


def test_the_plan_sorts_filters_and_leaves_the_config_alone():
    config = two_datasets(only_methods="scvi, pca", results_dir="out/./runs/")
    VALIDATE(config)  # the schema's defaults, the one change the plan makes
    given = copy.deepcopy(config)
    plan = plan_of(config)
    assert plan.datasets == ["other", "synthetic"]
    assert list(plan.methods) == ["pca", "scvi"]  # the config's order
    assert plan.method_names == ["pca", "scvi"]
    assert plan.seeds == [0, 1, 3]
    assert plan.results == "out/runs"
    assert plan.batch_datasets == ["other"]
    assert list(config["methods"]) == ["pca", "vae", "scvi"]  # every method stays
    assert config["methods"]["vae"]["max_epochs"] == 15
    plan.final_outputs()
    plan.dataset_runs("other")
    plan.run_config()
    plan.method_device("scvi")
    assert config == given  # building and reading the plan change nothing


def test_the_methods_of_each_rule_and_those_with_a_history():
    plan = plan_of(two_datasets())
    assert plan.methods_of_rule("embed_pca") == ["pca"]
    assert plan.methods_of_rule("train_vae") == ["vae"]
    assert plan.methods_of_rule("train_scvi") == ["scvi"]
    assert plan.history_methods() == ["vae", "scvi"]
    assert names_regex(plan.methods_of_rule("train_vae")) == "vae"
    assert names_regex([]) == "(?!x)x"  # a rule without methods matches nothing


def test_the_files_of_a_run():
    plan = plan_of(two_datasets(only_methods=["pca", "scvi"], seeds=[1, 0]))
    assert plan.run_outputs("metrics.json")[:3] == [
        "results/other/pca/seed0/metrics.json",
        "results/other/pca/seed1/metrics.json",
        "results/other/scvi/seed0/metrics.json",
    ]
    assert plan.run_outputs("integration.tsv", plan.batch_datasets) == [
        f"results/other/{m}/seed{s}/integration.tsv" for m in ("pca", "scvi") for s in (0, 1)
    ]
    final = plan.final_outputs()
    assert final[:2] == ["results/summary/metrics.tsv", "results/summary/comparison.tsv"]
    assert "results/summary/synthetic/umaps.png" in final
    assert final[-1] == "results/summary/other/integration.png"  # only with a batch
    assert "results/summary/synthetic/integration.png" not in final
    runs = plan.dataset_runs("synthetic")
    assert plan.run_keys() == [["pca", 0], ["pca", 1], ["scvi", 0], ["scvi", 1]]
    assert runs["clusters"][0] == "results/synthetic/pca/seed0/clusters.tsv"
    assert runs["histories"] == [f"results/synthetic/scvi/seed{s}/history.tsv" for s in (0, 1)]


def test_the_imports_inputs():
    config = two_datasets()
    config["datasets"]["cortex"] = {"source": "zeisel2015"}
    config["datasets"]["mine"] = {"source": "10x", "path": "a.h5", "labels": "l.csv"}
    plan = plan_of(config)
    assert plan.import_inputs("cortex") == {
        "download": "results/cortex/download/expression.txt",
        "provenance": "results/cortex/download/download.json",
    }
    assert plan.import_inputs("mine") == {"path": "a.h5", "labels": "l.csv"}
    assert plan.import_inputs("synthetic") == {}


def test_params_are_canonical_and_keep_finished_runs():
    config = two_datasets()
    config["datasets"]["synthetic"]["cluster"] = {"resolution": 2}
    plan = plan_of(config)
    cluster = plan.cluster_params("synthetic")
    assert cluster["resolution"] == 2.0 and isinstance(cluster["resolution"], float)
    assert list(cluster) == sorted(cluster)
    assert plan.cluster_params("other")["resolution"] == 1.0  # the top-level default
    assert plan.preprocess_params("synthetic")["n_top_genes"] == 200  # the override
    # use_batch only where the dataset has a batch: finished runs without one stay
    assert plan.method_params("scvi", "other")["use_batch"] is False
    assert "use_batch" not in plan.method_params("scvi", "synthetic")
    # a source's params leave out what does not change the import, and n_batches' default
    source = plan.source_params("synthetic")
    assert "preprocess" not in source and "n_batches" not in source
    assert plan.source_params("other")["n_batches"] == 2
    assert params_value({"b": 1, "a": {"lr": 1}}) == {"a": {"lr": 1.0}, "b": 1}
    assert plan.variants == {}


def test_the_params_of_integration_threads_and_provenance():
    config = two_datasets(compute_threads={"train": 2}, seeds=[1, 0])
    config["datasets"]["other"]["cluster"] = {"knn_search": "exact"}
    plan = plan_of(config)
    assert plan.integration_params("other") == {"batch_key": "batch", "knn_search": "exact"}
    assert plan.integration_params("synthetic") == {"batch_key": None, "knn_search": "auto"}
    assert (plan.compute_threads("train"), plan.compute_threads("cluster")) == (2, 1)
    run_config = plan.run_config()
    assert run_config["seeds"] == [0, 1] and list(run_config) == sorted(run_config)
    assert run_config["methods"] == params_value(plan.methods)


def test_a_methods_device_is_its_own_else_its_presets_else_the_schemas(monkeypatch):
    """The gpu a training job asks for follows the device the job trains on: a preset's
    device counts where the method gives none (every shipped preset says auto, so a
    preset is changed here to show that the preset is read)."""
    config = two_datasets()
    config["methods"]["vae_cpu"] = {"kind": "vae", "max_epochs": 15, "device": "cpu"}
    config["methods"]["vae_stable"] = {"kind": "vae", "max_epochs": 15, "preset": "stable"}
    stable = {**presets.PRESETS["stable"], "device": "cuda:1"}
    monkeypatch.setitem(presets.PRESETS, "stable", stable)
    plan = plan_of(config)
    assert plan.method_device("vae_cpu") == "cpu"
    assert plan.method_device("vae_stable") == "cuda:1"
    for name in ("vae", "vae_stable"):  # the preset's value, as the job resolves it
        spec = plan.methods[name]
        assert "device" not in spec
        assert plan.method_device(name) == KINDS["vae"].preset_params(spec).device
    scvi_default = load_schema()["$defs"]["scvi"]["properties"]["device"]["default"]
    assert plan.method_device("scvi") == scvi_default


REFUSALS = {
    "repeated seed": ({"seeds": [0, 1, 0]}, "seeds [0, 1, 0] lists 0 more than once"),
    "unknown baseline": (
        {"baseline": "pcaa"},
        "baseline 'pcaa' is not one of the methods ['pca', 'scvi', 'vae']; set `baseline`",
    ),
    "unknown method": ({"only_methods": "pca,sclvi"}, "only_methods names 'sclvi'"),
    "baseline left out": ({"only_methods": "vae", "baseline": "pca"}, "leaves out 'pca'"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_the_problem_and_the_fix(case):
    overrides, message = REFUSALS[case]
    with pytest.raises(ValueError) as refused:
        plan_of({**two_datasets(), **overrides})
    assert message in str(refused.value)


def test_a_variant_of_an_unknown_dataset_is_refused():
    config = two_datasets()
    config["datasets"]["other"]["variant_of"] = "synthetc"
    with pytest.raises(ValueError, match="dataset 'other': variant_of 'synthetc' is not another"):
        plan_of(config)
    config["datasets"]["other"]["variant_of"] = "synthetic"
    assert plan_of(config).variants == {"other": "synthetic"}


def test_too_few_cells_are_named_for_each_dataset_at_once():
    config = two_datasets()
    config["datasets"]["synthetic"]["n_cells"] = 15
    config["datasets"]["other"]["n_cells"] = 12
    with pytest.raises(ValueError) as refused:
        plan_of(config)
    lines = str(refused.value).splitlines()
    assert lines[0].startswith("datasets.other: 12 cells, but cluster.n_neighbors is 20")
    assert any(line.startswith("datasets.synthetic: 15 cells") for line in lines)


def test_a_vae_whose_preset_does_not_resolve_is_named():
    config = two_datasets()
    config["methods"]["vae"]["kl_warmup_epochs"] = 15  # max_epochs 15
    with pytest.raises(ValueError, match=r"^methods.vae: kl_warmup_epochs \(15\) must be below"):
        plan_of(config)


def test_a_config_validated_already_needs_no_validator():
    config = two_datasets()
    VALIDATE(config)
    assert load_plan(config) == plan_of(two_datasets())


@pytest.mark.workflow
def test_the_final_outputs_are_what_the_summary_rules_write(tmp_path):
    """SUMMARY_FILES and DATASET_FIGURES (the plan's final outputs, `rule all`'s input)
    name every file the rules write under summary/: a file added to, or dropped from, the
    rules summarize, compare, provenance, plot_dataset or plot_integration fails here.
    Snakemake's --summary lists the outputs of every job the plan needs, without running."""
    config = two_datasets(only_methods="pca, vae")
    plan = plan_of(copy.deepcopy(config))
    configfile = write_config(tmp_path / "config.yaml", config)
    result = snakemake(tmp_path / "work", "--configfile", str(configfile), "--summary")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = list(csv.DictReader(result.stdout.splitlines(), delimiter="\t"))
    written = {
        row["output_file"]
        for row in rows
        if row["output_file"].startswith(f"{plan.results}/summary/")
    }
    assert written == set(plan.final_outputs())
    assert {row["rule"] for row in rows if row["output_file"] in written} == {
        "summarize",
        "compare",
        "provenance",
        "plot_dataset",
        "plot_integration",
    }
