import copy
import functools
import os
import time

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
# The conda envs (workflow/envs/*.yaml) pip-install the library from ${SCEMBED_SOURCE}: by
# default the clone this workflow runs from (docs/deployment.md).
if os.path.isfile(os.path.join(os.path.dirname(WORKFLOW_DIR), "pyproject.toml")):
    os.environ.setdefault("SCEMBED_SOURCE", os.path.dirname(WORKFLOW_DIR))
try:
    import scembed
except ImportError:
    raise WorkflowError(
        "the scembed library is not installed in this Python environment; install it "
        "from the workflow's clone with `pip install -e <clone>` (make venv does), or "
        "`pip install <clone>` where the workflow is used as a module."
    ) from None
from scembed.methods import KINDS  # noqa: E402
from scembed.plan import load_plan, names_regex, params_value  # noqa: E402
from scembed.schema import SCHEMA_PATH  # noqa: E402
from scembed.versions import version_mismatches  # noqa: E402

# The plan, built once: the datasets, methods and seeds that run, each job's params, and
# every check of the config before any job (scembed.plan). The config is not changed.
try:
    PLAN = load_plan(
        config, validate=functools.partial(validate, schema=str(SCHEMA_PATH))
    )
except ValueError as err:
    raise WorkflowError(str(err)) from None
RESULTS = PLAN.results  # the folder of every output
RUN_STARTED = time.time()  # a job log written since then was written by this run

# the pins of the clone the workflow runs from (none where it is a module from elsewhere)
for message in version_mismatches(
    requirements=os.path.join(os.path.dirname(WORKFLOW_DIR), "requirements.txt")
):
    logger.warning(f"Warning: {message}")


def check_scvi_installed():
    """A `kind: scvi` method needs scvi-tools where the jobs run: here, unless conda
    builds envs/scvi.yaml for them. Fail before any job, saying how to install it."""
    from snakemake.settings.types import DeploymentMethod
    from scembed.versions import missing_scvi_message, scvi_available

    scvi_methods = PLAN.methods_of_kind("scvi")
    uses_conda = (
        DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    )
    if scvi_methods and not uses_conda and not scvi_available():
        raise WorkflowError(missing_scvi_message(scvi_methods))


check_scvi_installed()


wildcard_constraints:
    dataset=names_regex(PLAN.datasets),
    method=names_regex(PLAN.method_names),
    seed=r"\d+",


# --------------------------------------------------------------------------- inputs, params


def get_import_inputs(wildcards):
    """Files the import reads: the download (zeisel2015 without `path`) or the user's file."""
    return PLAN.import_inputs(wildcards.dataset)


def get_source_params(wildcards):
    """The dataset's source options (its download and import rerun only for them)."""
    return PLAN.source_params(wildcards.dataset)


def get_preprocess_params(wildcards):
    """Top-level `preprocess` updated with this dataset's overrides."""
    return PLAN.preprocess_params(wildcards.dataset)


def get_cluster_params(wildcards):
    """Top-level `cluster` updated with this dataset's overrides."""
    return PLAN.cluster_params(wildcards.dataset)


def get_method(wildcards):
    """The method's config (`use_batch` only where the dataset has a `batch_key`)."""
    return PLAN.method_params(wildcards.method, wildcards.dataset)


def get_integration_params(wildcards):
    """The dataset's batch column and the clustering's neighbour search (`knn_search`)."""
    return PLAN.integration_params(wildcards.dataset)


def get_dataset_runs(wildcards):
    """Clusters of every run, histories of the runs that write one, the metrics table."""
    return PLAN.dataset_runs(wildcards.dataset)


# --------------------------------------------------------------------------- resources


def mem_mb(rule):
    """The rule's memory request (MB), from the size of the data its job reads
    (scembed.resources), growing with each retry: `resources: mem_mb=mem_mb("rule")`.
    Snakemake evaluates it again when the job is scheduled, once its inputs exist."""

    def estimate(wildcards, input, attempt):
        from scembed.resources import job_mem_mb

        is_import = rule == "import_dataset"
        dataset = PLAN.dataset(wildcards.dataset) if is_import else None
        return job_mem_mb(rule, list(input), attempt, dataset)

    return estimate


def train_threads(wildcards):
    """A training job's cores where the profile sets no `set-threads` for it: its compute
    threads (4 when they follow the scheduler), so CPU trainings run side by side."""
    return PLAN.compute_threads("train") or 4


def cluster_threads(wildcards, input):
    """A clustering job's cores where the profile sets no `set-threads` for it: from the
    cells of its embedding (scembed.resources), evaluated again once the file exists."""
    from scembed.resources import cluster_threads as threads_of

    return threads_of(input[0])


def gpu_request(wildcards):
    """A training job's `gpu` resource where the profile sets none for it: 1 where it
    trains on a GPU of this machine, 0 on the CPU (scembed.resources.gpu_request), its
    device resolved as the job resolves it (the method's, its preset's or the schema's).
    """
    from scembed.resources import gpu_request as units

    return units(PLAN.method_device(wildcards.method))
