# The report of a failed or stopped run (onerror) and its removal once the summary is
# complete (onsuccess): which runs are missing, the step where each stopped, and why.
# The steps are read from the rules themselves, so they follow any change of a rule, and
# a run's embedding rule from its method's kind (scembed.methods.KINDS).


def get_run_steps(dataset, method, seed):
    """The jobs one run needs, in order, as scembed.diagnosis.Step (rule, the file it
    makes, its log), read from the rules themselves; the last makes metrics.json."""
    from snakemake.io import apply_wildcards
    from scembed.diagnosis import Step

    embed_rule = KINDS[PLAN.methods[method]["kind"]].rule
    names = ["import_dataset", "preprocess", embed_rule]
    if "download" in PLAN.import_inputs(dataset):
        names.insert(0, "download_zeisel")
    wildcards = {"dataset": dataset, "method": method, "seed": seed}
    steps = [
        Step(
            name,
            apply_wildcards(getattr(rules, name).output[0], wildcards),
            apply_wildcards(getattr(rules, name).log[0], wildcards),
        )
        for name in names
    ]
    metrics = apply_wildcards(rules.cluster.output.metrics, wildcards)
    log = apply_wildcards(rules.cluster.log[0], wildcards)
    return steps + [Step("cluster", metrics, log)]


def get_summary_steps():
    """The jobs of the summary and the figures: one Step per file of the rules
    summarize, compare, provenance and plot_dataset (of each dataset)."""
    from snakemake.io import apply_wildcards
    from scembed.diagnosis import Step

    steps = [
        Step(name, output, getattr(rules, name).log[0])
        for name in ("summarize", "compare", "provenance")
        for output in getattr(rules, name).output
    ]
    for dataset in PLAN.datasets:
        log = apply_wildcards(rules.plot_dataset.log[0], {"dataset": dataset})
        steps += [
            Step("plot_dataset", apply_wildcards(output, {"dataset": dataset}), log)
            for output in rules.plot_dataset.output
        ]
    return steps


def report_incomplete_run(snakemake_log):
    """`onerror` (a failure, or a run stopped with Ctrl-C): write
    {results_dir}/summary/incomplete.md, missing.tsv, metrics.partial.tsv and
    effects.partial.md (see scembed.incomplete) and log which runs are missing and why.
    Never raises: the failed jobs and Snakemake's own error stay what the run reports.
    """
    try:
        from scembed.incomplete import write_report

        runs = {
            (dataset, method, seed): get_run_steps(dataset, method, seed)
            for dataset in PLAN.datasets
            for method in PLAN.method_names
            for seed in PLAN.seeds
        }
        message = write_report(
            f"{RESULTS}/summary",
            runs,
            get_summary_steps(),
            RUN_STARTED,
            snakemake_log,
            baseline=PLAN.baseline,
            variants=PLAN.variants,
        )
        if message:
            logger.error(message)
    except Exception as err:
        logger.warning(
            f"Could not write {RESULTS}/summary/incomplete.md ({type(err).__name__}: {err}); "
            "the failed jobs and their logs are named above."
        )


def forget_incomplete_run():
    """`onsuccess`: once every summary file exists, remove the report of an earlier
    incomplete run, so that it never outlives a complete summary. Never raises."""
    try:
        from scembed.incomplete import remove_report

        if all(os.path.exists(path) for path in PLAN.final_outputs()):
            removed = remove_report(f"{RESULTS}/summary")
            if removed:
                logger.info(
                    "The summary is complete: removed "
                    + ", ".join(map(str, removed))
                    + " of an earlier incomplete run."
                )
    except Exception as err:
        logger.warning(
            f"Could not remove the files of an earlier incomplete run from "
            f"{RESULTS}/summary ({type(err).__name__}: {err}); delete incomplete.md, "
            "missing.tsv and metrics.partial.tsv there by hand."
        )
