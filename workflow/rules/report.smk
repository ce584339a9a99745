rule summarize:
    input:
        metrics=PLAN.run_outputs("metrics.json"),
        integration=PLAN.run_outputs("integration.tsv", PLAN.batch_datasets),
    output:
        report(
            f"{RESULTS}/summary/metrics.tsv",
            caption="../report/metrics_table.rst",
            category="Summary",
        ),
    log:
        f"{RESULTS}/logs/summarize/summarize.log",
    conda:
        "../envs/scanpy.yaml"
    script:
        "../scripts/summarize.py"


rule compare:
    input:
        f"{RESULTS}/summary/metrics.tsv",
    output:
        comparison=report(
            f"{RESULTS}/summary/comparison.tsv",
            caption="../report/comparison.rst",
            category="Summary",
        ),
        headline=report(
            f"{RESULTS}/summary/summary.md",
            caption="../report/headline.rst",
            category="Summary",
        ),
        effects=report(
            f"{RESULTS}/summary/effects.md",
            caption="../report/effects.rst",
            category="Summary",
        ),
        effects_figure=report(
            f"{RESULTS}/summary/paired_effects.png",
            caption="../report/effects.rst",
            category="Summary",
        ),
        variants=f"{RESULTS}/summary/variants.tsv",
    log:
        f"{RESULTS}/logs/compare/compare.log",
    conda:
        "../envs/scanpy.yaml"
    params:
        baseline=PLAN.baseline,
        variants=params_value(PLAN.variants),
    script:
        "../scripts/compare.py"


rule plot_dataset:
    input:
        unpack(get_dataset_runs),
    output:
        metrics=report(
            f"{RESULTS}/summary/{{dataset}}/metrics.png",
            caption="../report/metrics_figure.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
        umaps=report(
            f"{RESULTS}/summary/{{dataset}}/umaps.png",
            caption="../report/umaps.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
        losses=report(
            f"{RESULTS}/summary/{{dataset}}/losses.png",
            caption="../report/losses.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
        heatmap=report(
            f"{RESULTS}/summary/{{dataset}}/heatmap.png",
            caption="../report/heatmap.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/plot_dataset/{{dataset}}.log",
    conda:
        "../envs/scanpy.yaml"
    params:
        runs=PLAN.run_keys(),
    script:
        "../scripts/plot_dataset.py"


rule plot_integration:
    input:
        f"{RESULTS}/summary/metrics.tsv",
    output:
        report(
            f"{RESULTS}/summary/{{dataset}}/integration.png",
            caption="../report/integration.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/plot_integration/{{dataset}}.log",
    # only the datasets with a batch (a `batch_key`) have integration scores
    wildcard_constraints:
        dataset=names_regex(PLAN.batch_datasets),
    conda:
        "../envs/scanpy.yaml"
    script:
        "../scripts/plot_integration.py"


rule provenance:
    input:
        raw=expand(f"{RESULTS}/{{dataset}}/raw.h5ad", dataset=PLAN.datasets),
        metrics=f"{RESULTS}/summary/metrics.tsv",
    output:
        report(
            f"{RESULTS}/summary/provenance.json",
            caption="../report/provenance.rst",
            category="Summary",
        ),
    log:
        f"{RESULTS}/logs/provenance/provenance.log",
    conda:
        "../envs/scanpy.yaml"
    params:
        config=PLAN.run_config(),
        datasets=PLAN.datasets,
        repo=WORKFLOW_DIR,
    script:
        "../scripts/provenance.py"
