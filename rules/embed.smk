rule embed_pca:
    input:
        "results/{dataset}/preprocessed.h5ad",
    output:
        "results/{dataset}/{method}/seed{seed}/embedding.h5ad",
    log:
        "results/logs/embed_pca/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/embed_pca/{dataset}/{method}/seed{seed}.tsv"
    wildcard_constraints:
        method=names_regex(methods_of_kind("pca")),
    conda:
        "../envs/scanpy.yaml"
    params:
        method=get_method,
    script:
        "../scripts/embed_pca.py"


rule train_vae:
    input:
        "results/{dataset}/preprocessed.h5ad",
    output:
        embedding="results/{dataset}/{method}/seed{seed}/embedding.h5ad",
        model="results/{dataset}/{method}/seed{seed}/model.pt",
        history="results/{dataset}/{method}/seed{seed}/history.tsv",
        loss="results/{dataset}/{method}/seed{seed}/loss.png",
    log:
        "results/logs/train_vae/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_vae/{dataset}/{method}/seed{seed}.tsv"
    wildcard_constraints:
        method=names_regex(methods_of_kind("vae")),
    conda:
        "../envs/torch.yaml"
    threads: 4
    resources:
        gpu=1,
    params:
        method=get_method,
        failed_checkpoint="results/logs/train_vae/{dataset}/{method}/seed{seed}.best.pt",
    script:
        "../scripts/train_vae.py"
