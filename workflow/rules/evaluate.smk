rule cluster:
    input:
        f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/embedding.h5ad",
    output:
        clusters=f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/clusters.tsv",
        umap=f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/umap.png",
        metrics=f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/metrics.json",
    log:
        f"{RESULTS}/logs/cluster/{{dataset}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cluster/{{dataset}}/{{method}}/seed{{seed}}.tsv"
    # before the next embedding: runs finish one by one, so a grid stopped early keeps
    # finished runs (effects.partial.md); without it the scheduler trains everything first
    priority: 1
    conda:
        "../envs/scanpy.yaml"
    threads: cluster_threads
    resources:
        mem_mb=mem_mb("cluster"),
    params:
        cluster=get_cluster_params,
        threads=PLAN.compute_threads("cluster"),
    script:
        "../scripts/cluster.py"


rule integration:
    input:
        f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/embedding.h5ad",
    output:
        f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/integration.tsv",
    log:
        f"{RESULTS}/logs/integration/{{dataset}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/integration/{{dataset}}/{{method}}/seed{{seed}}.tsv"
    # only the datasets with a batch (a `batch_key`) have integration scores
    wildcard_constraints:
        dataset=names_regex(PLAN.batch_datasets),
    conda:
        "../envs/scanpy.yaml"
    resources:
        mem_mb=mem_mb("integration"),
    params:
        integration=get_integration_params,
        threads=PLAN.compute_threads("cluster"),
    script:
        "../scripts/integration.py"
