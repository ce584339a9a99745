import copy
import functools
import os
import re
import sys
from types import SimpleNamespace
import time

import yaml

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate


def use_only_the_given_configfiles():
    """A --configfile REPLACES config/config.yaml instead of being merged into it: merging
    would silently keep the default datasets (and their download) in every user's run.
    Plain --config KEY=VALUE overrides still apply on top of whichever file is in use.

    Snakemake has no supported switch for this; it reads two of its internals
    (``workflow.overwrite_configfiles``, ``workflow.config_settings.overwrite_config``).
    tests/test_workflow.py::test_configfile_replaces_default_config fails when an upgrade
    breaks them.
    """
    if workflow.overwrite_configfiles:
        config.clear()
        config.update(copy.deepcopy(workflow.config_settings.overwrite_config))
        logger.info(
            "Using only the config given with --configfile (config/config.yaml is "
            "replaced, not extended; keys it leaves out take the schema's defaults)."
        )


# The workflow's own folder (workflow/, not the host's when it is used as a Snakemake
# module): its git commit and pins are found from here.
WORKFLOW_DIR = os.path.dirname(os.path.abspath(str(workflow.current_basedir)))
if workflow.modifier.is_main_snakefile():  # as a module, the host passes its config
    use_only_the_given_configfiles()
try:
    import scembed
except ImportError:
    raise WorkflowError(
        "the scembed library is not installed in this Python environment; install it "
        "from the workflow's clone with `pip install -e <clone>` (make venv does), or "
        "`pip install <clone>` where the workflow is used as a module."
    ) from None
from scembed.canonical import canonical, schema_number_keys  # noqa: E402
from scembed.schema import SCHEMA_PATH, load_schema  # noqa: E402
from scembed.config_checks import (  # noqa: E402
    known_cell_count,
    repeated_seeds,
    selected_datasets,
    selected_methods,
    too_few_cells,
)

if repeated_seeds(config.get("seeds")):  # clearer than the schema's uniqueItems dump
    raise WorkflowError(repeated_seeds(config["seeds"]))
validate(config, schema=str(SCHEMA_PATH))  # the package's: the one home of defaults
NUMBER_KEYS = schema_number_keys(load_schema())

from scembed.versions import version_mismatches  # noqa: E402

# the pins of the clone the workflow runs from (none where it is a module from elsewhere)
for message in version_mismatches(
    requirements=os.path.join(os.path.dirname(WORKFLOW_DIR), "requirements.txt")
):
    logger.warning(f"Warning: {message}")


def get_batch_key(dataset):
    """The dataset's batch column (its `batch_key`), or None. Its runs get integration
    scores (rule integration)."""
    return config["datasets"][dataset].get("batch_key")


try:  # `only_datasets` and `only_methods` narrow the run (all when empty)
    DATASETS = selected_datasets(config["datasets"], config["only_datasets"])
    config["methods"] = selected_methods(
        config["methods"], config["only_methods"], config["baseline"]
    )
except ValueError as err:
    raise WorkflowError(str(err)) from None
# sorted: the order of the config's keys changes no job, output or params value
DATASETS = sorted(DATASETS)
METHODS = sorted(config["methods"])
# the datasets with a batch (a `batch_key`): their runs get integration scores
BATCH_DATASETS = [name for name in DATASETS if get_batch_key(name)]
SEEDS = sorted(config["seeds"])
RESULTS = os.path.normpath(config["results_dir"])  # the folder of every output
RUN_STARTED = time.time()  # a job log written since then was written by this run

if config["baseline"] not in ("auto", "none", *METHODS):
    raise ValueError(
        f"baseline {config['baseline']!r} is not one of the methods {METHODS}; set "
        "`baseline` to one of them, `auto` (pca when there is one) or `none`."
    )


def methods_of_kind(*kinds):
    return [name for name, spec in config["methods"].items() if spec["kind"] in kinds]


def check_scvi_installed():
    """A `kind: scvi` method needs scvi-tools where the jobs run: here, unless conda
    builds envs/scvi.yaml for them. Fail before any job, saying how to install it."""
    from snakemake.settings.types import DeploymentMethod
    from scembed.versions import missing_scvi_message, scvi_available

    scvi_methods = methods_of_kind("scvi")
    uses_conda = (
        DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    )
    if scvi_methods and not uses_conda and not scvi_available():
        raise WorkflowError(missing_scvi_message(scvi_methods))


def names_regex(names):
    """A wildcard constraint matching exactly these names (nothing when empty)."""
    return "|".join(map(re.escape, names)) if names else "(?!x)x"


wildcard_constraints:
    dataset=names_regex(DATASETS),
    method=names_regex(METHODS),
    seed=r"\d+",


check_scvi_installed()


def check_known_cell_counts():
    """Datasets whose cells the config fixes (synthetic, pbmc68k) must have enough of them
    for the split, `cluster.n_neighbors` and each VAE's minibatch: fail before any job.
    Datasets read from files are checked by the job that needs the cells (preprocess,
    train_vae, cluster), as soon as their number is known."""
    problems = []
    for name in DATASETS:
        n_cells = known_cell_count(config["datasets"][name])
        if n_cells is None:
            continue
        wildcards = SimpleNamespace(dataset=name)
        preprocess = get_preprocess_params(wildcards)
        problems += too_few_cells(
            n_cells,
            f"datasets.{name}",
            n_neighbors=get_cluster_params(wildcards)["n_neighbors"],
            validation_fraction=preprocess["validation_fraction"],
            test_fraction=preprocess["test_fraction"],
            vae_methods={m: config["methods"][m] for m in methods_of_kind("vae")},
        )
    if problems:
        raise WorkflowError("\n".join(problems))


def get_final_outputs():
    summary = [
        f"{RESULTS}/summary/{name}"
        for name in (
            "metrics.tsv",
            "comparison.tsv",
            "summary.md",
            "effects.md",
            "paired_effects.png",
            "variants.tsv",
            "provenance.json",
        )
    ]
    figures = expand(
        f"{RESULTS}/summary/{{dataset}}/{{figure}}.png",
        dataset=DATASETS,
        figure=["metrics", "umaps", "losses", "heatmap"],
    )
    integration = expand(
        f"{RESULTS}/summary/{{dataset}}/integration.png", dataset=BATCH_DATASETS
    )
    return summary + figures + integration


def get_dataset(wildcards):
    """The dataset's validated options (schema defaults filled in)."""
    return config["datasets"][wildcards.dataset]


def params_value(value):
    """A rule's params value that equivalent configs give equally: keys sorted, numbers
    typed as the schema says (1 and 1.0 alike), so that a config written back in another
    key order reruns nothing (scembed.canonical)."""
    return canonical(value, *NUMBER_KEYS)


def get_source_params(wildcards):
    """The dataset's source options only: a `preprocess` or `cluster` override of the
    dataset, or its `download` settings (timeouts, retries), must not rerun the download
    and the import."""
    dataset = get_dataset(wildcards)
    return params_value(
        {
            key: value
            for key, value in dataset.items()
            if key not in ("preprocess", "cluster", "download", "variant_of")
            # the default of a key added later: finished imports do not rerun for it
            and not (key == "n_batches" and value == 1)
        }
    )


def get_dataset_variants():
    """Each dataset variant's name -> the dataset it varies (`variant_of`)."""
    return {
        name: config["datasets"][name]["variant_of"]
        for name in DATASETS
        if "variant_of" in config["datasets"][name]
    }


def check_dataset_variants():
    """A `variant_of` names another dataset of the config (fails before any job runs)."""
    for name, parent in get_dataset_variants().items():
        if parent == name or parent not in DATASETS:
            others = [other for other in DATASETS if other != name]
            raise ValueError(
                f"dataset {name!r}: variant_of {parent!r} is not another dataset of the "
                f"config; name one of {others} (or drop variant_of)."
            )


def get_method(wildcards):
    """The method's config; `use_batch` only where the dataset has a `batch_key`, so that
    without one the method's params (and its finished runs) stay as they were."""
    method = config["methods"][wildcards.method]
    if not get_dataset(wildcards).get("batch_key"):
        method = {key: value for key, value in method.items() if key != "use_batch"}
    return params_value(method)


def get_preprocess_params(wildcards):
    """Top-level `preprocess` updated with this dataset's overrides."""
    return params_value(
        {**config["preprocess"], **get_dataset(wildcards).get("preprocess", {})}
    )


def get_cluster_params(wildcards):
    """Top-level `cluster` updated with this dataset's overrides."""
    return params_value(
        {**config["cluster"], **get_dataset(wildcards).get("cluster", {})}
    )


check_known_cell_counts()
check_dataset_variants()


def get_import_inputs(wildcards):
    """Files the import reads: the download (zeisel2015 without `path`) or the user's file."""
    dataset = get_dataset(wildcards)
    if dataset["source"] == "zeisel2015" and "path" not in dataset:
        folder = f"{RESULTS}/{wildcards.dataset}/download"
        return {
            "download": f"{folder}/expression.txt",
            "provenance": f"{folder}/download.json",
        }
    files = {}
    if "path" in dataset:
        files["path"] = dataset["path"]
    if "labels" in dataset:
        files["labels"] = dataset["labels"]
    return files


def mem_mb(rule):
    """The rule's memory request (MB), from the size of the data its job reads
    (scembed.resources), growing with each retry: `resources: mem_mb=mem_mb("rule")`.
    Snakemake evaluates it again when the job is scheduled, once its inputs exist."""

    def estimate(wildcards, input, attempt):
        from scembed.resources import job_mem_mb

        dataset = get_dataset(wildcards) if rule == "import_dataset" else None
        return job_mem_mb(rule, list(input), attempt, dataset)

    return estimate


def cluster_threads(wildcards, input):
    """The clustering job's threads, from the number of cells in its embedding
    (scembed.resources): `threads: cluster_threads`. Evaluated again when the job is
    scheduled, once the embedding exists."""
    from scembed.resources import cluster_threads as threads_of

    return threads_of(input[0])


def get_compute_threads(stage):
    """The threads a job of `stage` ("train" or "cluster") computes with (config key
    compute_threads; 0: the job's Snakemake threads): a params value, so that a change
    reruns the jobs whose numbers it changes."""
    return config["compute_threads"][stage]


def train_threads(wildcards):
    """A training job's scheduled threads: its compute threads (4 when they follow the
    scheduler), so that CPU training jobs run side by side, one per core by default."""
    return config["compute_threads"]["train"] or 4


@functools.cache
def local_gpu_count():
    """GPUs of the machine Snakemake runs on (scembed.resources.local_gpus), looked up
    once per run."""
    from scembed.resources import local_gpus

    return local_gpus()


def gpu_request(wildcards):
    """The `gpu` resource of a training job: 1 where it trains on a GPU of this machine
    (profiles/local's `gpu` count lets that many run at once), 0 where it trains on the
    CPU. profiles/slurm sets it to 1, for the GPU node, whatever the login node has."""
    from scembed.resources import gpu_units

    device = config["methods"][wildcards.method].get("device", "auto")
    return gpu_units(device, local_gpu_count())


def get_run_outputs(name):
    """One file per dataset x method x seed, e.g. get_run_outputs("metrics.json")."""
    return expand(
        f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/{name}",
        dataset=DATASETS,
        method=METHODS,
        seed=SEEDS,
    )


def get_integration_outputs():
    """integration.tsv of every run of a dataset with a batch (none without one)."""
    return expand(
        f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/integration.tsv",
        dataset=BATCH_DATASETS,
        method=METHODS,
        seed=SEEDS,
    )


def get_integration_params(wildcards):
    """The dataset's batch column and the clustering's neighbour search (`knn_search`),
    which the LISI's 90-neighbour search follows."""
    return {
        "batch_key": get_batch_key(wildcards.dataset),
        "knn_search": get_cluster_params(wildcards)["knn_search"],
    }


def get_dataset_run_keys(wildcards):
    """(method, seed) of every run of the dataset, in the order of get_dataset_runs."""
    return [[method, seed] for method in METHODS for seed in SEEDS]


def get_dataset_runs(wildcards):
    """Clusters of every run, histories of VAE runs, and the metrics table."""
    folder = f"{RESULTS}/{wildcards.dataset}"
    return {
        "metrics": f"{RESULTS}/summary/metrics.tsv",
        "clusters": [
            f"{folder}/{method}/seed{seed}/clusters.tsv"
            for method, seed in get_dataset_run_keys(wildcards)
        ],
        "histories": [
            f"{folder}/{method}/seed{seed}/history.tsv"
            for method in methods_of_kind("vae", "scvi")
            for seed in SEEDS
        ],
    }
