rule cluster:
    input:
        "results/{dataset}/{method}/seed{seed}/embedding.h5ad",
    output:
        clusters="results/{dataset}/{method}/seed{seed}/clusters.tsv",
        umap="results/{dataset}/{method}/seed{seed}/umap.png",
        metrics="results/{dataset}/{method}/seed{seed}/metrics.json",
    log:
        "results/logs/cluster/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/cluster/{dataset}/{method}/seed{seed}.tsv"
    conda:
        "../envs/scanpy.yaml"
    params:
        cluster=get_cluster_params,
    script:
        "../scripts/cluster.py"
