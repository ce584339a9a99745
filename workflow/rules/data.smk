localrules:
    download_zeisel,


rule download_zeisel:
    output:
        data=f"{RESULTS}/{{dataset}}/download/expression.txt",
        provenance=f"{RESULTS}/{{dataset}}/download/download.json",
    log:
        f"{RESULTS}/logs/download_zeisel/{{dataset}}.log",
    conda:
        "../envs/scanpy.yaml"
    params:
        dataset=get_source_params,
    script:
        "../scripts/download_zeisel.py"


rule import_dataset:
    input:
        unpack(get_import_inputs),
    output:
        f"{RESULTS}/{{dataset}}/raw.h5ad",
    log:
        f"{RESULTS}/logs/import_dataset/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/import_dataset/{{dataset}}.tsv"
    conda:
        "../envs/scanpy.yaml"
    resources:
        mem_mb=mem_mb("import_dataset"),
    params:
        dataset=get_source_params,
        name="{dataset}",
    script:
        "../scripts/import_dataset.py"


rule preprocess:
    input:
        f"{RESULTS}/{{dataset}}/raw.h5ad",
    output:
        f"{RESULTS}/{{dataset}}/preprocessed.h5ad",
    log:
        f"{RESULTS}/logs/preprocess/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/preprocess/{{dataset}}.tsv"
    conda:
        "../envs/scanpy.yaml"
    resources:
        mem_mb=mem_mb("preprocess"),
    params:
        preprocess=get_preprocess_params,
    script:
        "../scripts/preprocess.py"
