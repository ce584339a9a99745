rule embed_pca:
    input:
        f"{RESULTS}/{{dataset}}/preprocessed.h5ad",
    output:
        f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/embedding.h5ad",
    log:
        f"{RESULTS}/logs/embed_pca/{{dataset}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/embed_pca/{{dataset}}/{{method}}/seed{{seed}}.tsv"
    wildcard_constraints:
        method=names_regex(PLAN.methods_of_rule("embed_pca")),
    conda:
        "../envs/scanpy.yaml"
    resources:
        mem_mb=mem_mb("embed_pca"),
    params:
        method=get_method,
    script:
        "../scripts/embed_pca.py"


rule train_vae:
    input:
        f"{RESULTS}/{{dataset}}/preprocessed.h5ad",
    output:
        embedding=f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/embedding.h5ad",
        model=f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/model.pt",
        history=f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/history.tsv",
        loss=f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/loss.png",
    log:
        f"{RESULTS}/logs/train_vae/{{dataset}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_vae/{{dataset}}/{{method}}/seed{{seed}}.tsv"
    wildcard_constraints:
        method=names_regex(PLAN.methods_of_rule("train_vae")),
    conda:
        "../envs/torch.yaml"
    threads: train_threads
    resources:
        mem_mb=mem_mb("train_vae"),
        gpu=gpu_request,
    params:
        method=get_method,
        threads=PLAN.compute_threads("train"),
        failed_checkpoint=f"{RESULTS}/logs/train_vae/{{dataset}}/{{method}}/seed{{seed}}.best.pt",
        # outside the outputs: Snakemake's cleanup of a killed job's outputs keeps it
        checkpoint=f"{RESULTS}/checkpoints/train_vae/{{dataset}}/{{method}}/seed{{seed}}.pt",
    script:
        "../scripts/train_vae.py"


rule train_scvi:
    input:
        f"{RESULTS}/{{dataset}}/preprocessed.h5ad",
    output:
        embedding=f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/embedding.h5ad",
        model=f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/model.pt",
        history=f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/history.tsv",
        loss=f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}/loss.png",
    log:
        f"{RESULTS}/logs/train_scvi/{{dataset}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_scvi/{{dataset}}/{{method}}/seed{{seed}}.tsv"
    wildcard_constraints:
        method=names_regex(PLAN.methods_of_rule("train_scvi")),
    conda:
        "../envs/scvi.yaml"
    threads: train_threads
    resources:
        mem_mb=mem_mb("train_scvi"),
        gpu=gpu_request,
    params:
        method=get_method,
        threads=PLAN.compute_threads("train"),
    script:
        "../scripts/train_scvi.py"
