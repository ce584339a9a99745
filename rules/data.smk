localrules:
    download_zeisel,


rule download_zeisel:
    output:
        data="results/{dataset}/download/expression.txt",
        provenance="results/{dataset}/download/download.json",
    log:
        "results/logs/download_zeisel/{dataset}.log",
    conda:
        "../envs/scanpy.yaml"
    params:
        dataset=get_dataset,
    script:
        "../scripts/download_zeisel.py"


rule import_dataset:
    input:
        unpack(get_import_inputs),
    output:
        "results/{dataset}/raw.h5ad",
    log:
        "results/logs/import_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/import_dataset/{dataset}.tsv"
    conda:
        "../envs/scanpy.yaml"
    params:
        dataset=get_dataset,
        name="{dataset}",
    script:
        "../scripts/import_dataset.py"


rule preprocess:
    input:
        "results/{dataset}/raw.h5ad",
    output:
        "results/{dataset}/preprocessed.h5ad",
    log:
        "results/logs/preprocess/{dataset}.log",
    benchmark:
        "results/benchmarks/preprocess/{dataset}.tsv"
    conda:
        "../envs/scanpy.yaml"
    params:
        preprocess=get_preprocess_params,
    script:
        "../scripts/preprocess.py"
