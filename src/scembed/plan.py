"""The plan of a run, built once from the config: which datasets, methods and seeds run,
where their files go, and each job's params.

:func:`load_plan` checks the config (repeated seeds, the schema, ``only_datasets`` and
``only_methods``, the baseline, each VAE's parameters, the cells each dataset needs,
``variant_of``) and raises ValueError naming the problem and the fix; the workflow
(``workflow/rules/common.smk``) builds it once, turns the error into a WorkflowError,
and its rules read the :class:`Plan`. The config itself is never changed, except for the
schema's defaults that validation fills in.

The params of a rule are :func:`params_value`: keys sorted and numbers typed as the
schema says, so that equivalent configs give equal params and finished runs do not rerun.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from scembed.canonical import canonical, schema_number_keys
from scembed.config_checks import (
    known_cell_count,
    repeated_seeds,
    selected_datasets,
    selected_methods,
    too_few_cells,
)
from scembed.methods import KINDS, method_value
from scembed.schema import load_schema

SUMMARY_FILES = (
    "metrics.tsv",
    "comparison.tsv",
    "summary.md",
    "effects.md",
    "paired_effects.png",
    "variants.tsv",
    "provenance.json",
)
"""The files of {results_dir}/summary/ that a complete run writes: the outputs of the
rules summarize, compare and provenance (tests/test_plan.py checks they agree)."""
DATASET_FIGURES = ("metrics", "umaps", "losses", "heatmap")
"""The figures of {results_dir}/summary/{dataset}/ (.png) of every dataset: rule
plot_dataset's outputs."""
NON_SOURCE_KEYS = ("preprocess", "cluster", "download", "variant_of")
"""A dataset's keys that are not source options: they change neither its download nor
its import (:meth:`Plan.source_params` leaves them out)."""


@functools.cache
def _number_keys() -> tuple[frozenset[str], frozenset[str]]:
    return schema_number_keys(load_schema())


def params_value(value):
    """A rule's params value that equivalent configs give equally: keys sorted, numbers
    typed as the schema says (1 and 1.0 alike), so that a config written back in another
    key order reruns nothing (scembed.canonical)."""
    return canonical(value, *_number_keys())


def names_regex(names) -> str:
    """A wildcard constraint matching exactly these names (nothing when empty)."""
    return "|".join(map(re.escape, names)) if names else "(?!x)x"


@dataclass(frozen=True)
class Plan:
    """What a run does: build it with :func:`load_plan`; treat its lists as read-only."""

    config: dict
    """The validated config (schema defaults filled in), with every method."""
    datasets: list[str]
    """The datasets that run (``only_datasets``), sorted."""
    methods: dict[str, dict]
    """The methods that run (``only_methods``): name -> config entry, in config order."""
    seeds: list[int]
    """The seeds, sorted."""
    results: str
    """The folder of every output (``results_dir``, normalised)."""
    baseline: str
    """The config's ``baseline``: a method, ``auto`` or ``none``."""

    @property
    def method_names(self) -> list[str]:
        """The methods that run, sorted: the order of every job and table."""
        return sorted(self.methods)

    @property
    def batch_datasets(self) -> list[str]:
        """The datasets with a batch (a ``batch_key``): their runs get integration scores."""
        return [name for name in self.datasets if self.batch_key(name)]

    @property
    def variants(self) -> dict[str, str]:
        """Each dataset variant's name -> the dataset it varies (``variant_of``)."""
        return {
            name: self.dataset(name)["variant_of"]
            for name in self.datasets
            if "variant_of" in self.dataset(name)
        }

    def dataset(self, name: str) -> dict:
        """The dataset's validated options (schema defaults filled in)."""
        return self.config["datasets"][name]

    def batch_key(self, name: str) -> str | None:
        """The dataset's batch column (its ``batch_key``), or None."""
        return self.dataset(name).get("batch_key")

    def methods_of_kind(self, *kinds: str) -> list[str]:
        """The methods of these kinds, in config order."""
        return [name for name, spec in self.methods.items() if spec["kind"] in kinds]

    def methods_of_rule(self, rule: str) -> list[str]:
        """The methods whose embedding ``rule`` writes (scembed.methods.KINDS)."""
        return self.methods_of_kind(*(k.kind for k in KINDS.values() if k.rule == rule))

    def history_methods(self) -> list[str]:
        """The methods whose runs write ``history.tsv``, in config order."""
        return self.methods_of_kind(*(k.kind for k in KINDS.values() if k.writes_history))

    def source_params(self, dataset: str) -> dict:
        """The dataset's source options only: a ``preprocess`` or ``cluster`` override,
        or its ``download`` settings (timeouts, retries), must not rerun the download and
        the import."""
        return params_value(
            {
                key: value
                for key, value in self.dataset(dataset).items()
                if key not in NON_SOURCE_KEYS
                # the default of a key added later: finished imports do not rerun for it
                and not (key == "n_batches" and value == 1)
            }
        )

    def preprocess_params(self, dataset: str) -> dict:
        """Top-level ``preprocess`` updated with this dataset's overrides."""
        return self._section(dataset, "preprocess")

    def cluster_params(self, dataset: str) -> dict:
        """Top-level ``cluster`` updated with this dataset's overrides."""
        return self._section(dataset, "cluster")

    def _section(self, dataset: str, section: str) -> dict:
        return params_value({**self.config[section], **self.dataset(dataset).get(section, {})})

    def integration_params(self, dataset: str) -> dict:
        """The dataset's batch column and the clustering's neighbour search
        (``knn_search``), which the LISI's 90-neighbour search follows."""
        return {
            "batch_key": self.batch_key(dataset),
            "knn_search": self.cluster_params(dataset)["knn_search"],
        }

    def compute_threads(self, stage: str) -> int:
        """The threads a job of ``stage`` ("train" or "cluster") computes with (the
        config's ``compute_threads``; 0: the job's Snakemake threads): a params value, so
        that a change reruns the jobs whose numbers it changes."""
        return self.config["compute_threads"][stage]

    def run_config(self) -> dict:
        """The config of the run, as its provenance records it: only the methods that
        run, the seeds sorted."""
        return params_value({**self.config, "methods": self.methods, "seeds": self.seeds})

    def method_device(self, method: str) -> str:
        """The device a training method's jobs train on: its ``device``, else its
        preset's (``kind: vae``) or the schema's default (scembed.methods.method_value)."""
        return method_value(self.methods[method], "device")

    def method_params(self, method: str, dataset: str) -> dict:
        """The method's config; ``use_batch`` only where the dataset has a ``batch_key``,
        so that without one the method's params (and its finished runs) stay as they were."""
        spec = self.methods[method]
        if not self.batch_key(dataset):
            spec = {key: value for key, value in spec.items() if key != "use_batch"}
        return params_value(spec)

    def import_inputs(self, dataset: str) -> dict[str, str]:
        """Files the import reads: the download (zeisel2015 without ``path``) or the
        user's files (``path``, ``labels``)."""
        spec = self.dataset(dataset)
        if spec["source"] == "zeisel2015" and "path" not in spec:
            folder = f"{self.results}/{dataset}/download"
            return {"download": f"{folder}/expression.txt", "provenance": f"{folder}/download.json"}
        return {key: spec[key] for key in ("path", "labels") if key in spec}

    def run_outputs(self, name: str, datasets: list[str] | None = None) -> list[str]:
        """One file per dataset x method x seed (of ``datasets``, default every dataset)."""
        return [
            f"{self.results}/{dataset}/{method}/seed{seed}/{name}"
            for dataset in (self.datasets if datasets is None else datasets)
            for method in self.method_names
            for seed in self.seeds
        ]

    def run_keys(self) -> list[list]:
        """[method, seed] of every run of a dataset, in the order of :meth:`dataset_runs`."""
        return [[method, seed] for method in self.method_names for seed in self.seeds]

    def dataset_runs(self, dataset: str) -> dict:
        """The inputs of a dataset's figures: the metrics table, the clusters of every
        run, the histories of the runs that write one."""
        folder = f"{self.results}/{dataset}"
        return {
            "metrics": f"{self.results}/summary/metrics.tsv",
            "clusters": [
                f"{folder}/{method}/seed{seed}/clusters.tsv" for method, seed in self.run_keys()
            ],
            "histories": [
                f"{folder}/{method}/seed{seed}/history.tsv"
                for method in self.history_methods()
                for seed in self.seeds
            ],
        }

    def final_outputs(self) -> list[str]:
        """The summary, every dataset's figures and, with a batch, its integration figure."""
        summary = [f"{self.results}/summary/{name}" for name in SUMMARY_FILES]
        figures = [
            f"{self.results}/summary/{dataset}/{figure}.png"
            for dataset in self.datasets
            for figure in DATASET_FIGURES
        ]
        integration = [f"{self.results}/summary/{d}/integration.png" for d in self.batch_datasets]
        return summary + figures + integration


def load_plan(config: dict, validate: Callable[[dict], object] | None = None) -> Plan:
    """The plan of ``config``, every check passed; ValueError naming the problem and the fix.

    ``validate`` (the workflow's: Snakemake's ``validate`` with the package's schema)
    checks the config and fills in the schema's defaults; without it, ``config`` must be
    validated already. Repeated seeds are named before it, more clearly than the schema's
    ``uniqueItems``.
    """
    message = repeated_seeds(config.get("seeds"))
    if message:
        raise ValueError(message)
    if validate is not None:
        validate(config)
    datasets = selected_datasets(config["datasets"], config["only_datasets"])
    methods = selected_methods(config["methods"], config["only_methods"], config["baseline"])
    # sorted: the order of the config's keys changes no job, output or params value
    plan = Plan(
        config=config,
        datasets=sorted(datasets),
        methods=methods,
        seeds=sorted(config["seeds"]),
        results=os.path.normpath(config["results_dir"]),
        baseline=config["baseline"],
    )
    if plan.baseline not in ("auto", "none", *plan.method_names):
        raise ValueError(
            f"baseline {plan.baseline!r} is not one of the methods {plan.method_names}; set "
            "`baseline` to one of them, `auto` (pca when there is one) or `none`."
        )
    preset_params = check_method_params(plan)
    check_known_cell_counts(plan, preset_params)
    check_dataset_variants(plan)
    return plan


def check_method_params(plan: Plan) -> dict[str, object]:
    """Each method whose values come from a preset resolves (a VAE's warm-up below its
    epochs, ...): fails before any job, naming the method. Returns the resolved values of
    those methods (name -> their kind's ``preset_params``)."""
    resolved = {}
    for name, spec in plan.methods.items():
        preset_params = KINDS[spec["kind"]].preset_params
        if preset_params is None:
            continue
        try:
            resolved[name] = preset_params(spec)
        except ValueError as err:
            raise ValueError(f"methods.{name}: {err}; change it there.") from None
    return resolved


def check_known_cell_counts(plan: Plan, preset_params: dict[str, object]) -> None:
    """Datasets whose cells the config fixes (synthetic, pbmc68k) must have enough of them
    for the split, ``cluster.n_neighbors`` and each VAE's minibatch (its VAEParams in
    ``preset_params``, from :func:`check_method_params`): fail before any job.
    Datasets read from files are checked by the job that needs the cells (preprocess,
    train_vae, cluster), as soon as their number is known."""
    problems = []
    vae_methods = {name: preset_params[name] for name in plan.methods_of_kind("vae")}
    for name in plan.datasets:
        n_cells = known_cell_count(plan.dataset(name))
        if n_cells is None:
            continue
        preprocess = plan.preprocess_params(name)
        problems += too_few_cells(
            n_cells,
            f"datasets.{name}",
            n_neighbors=plan.cluster_params(name)["n_neighbors"],
            validation_fraction=preprocess["validation_fraction"],
            test_fraction=preprocess["test_fraction"],
            vae_methods=vae_methods,
        )
    if problems:
        raise ValueError("\n".join(problems))


def check_dataset_variants(plan: Plan) -> None:
    """A ``variant_of`` names another dataset of the config (fails before any job)."""
    for name, parent in plan.variants.items():
        if parent == name or parent not in plan.datasets:
            others = [other for other in plan.datasets if other != name]
            raise ValueError(
                f"dataset {name!r}: variant_of {parent!r} is not another dataset of the "
                f"config; name one of {others} (or drop variant_of)."
            )
