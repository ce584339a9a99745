# Reproduce, then surpass, the textbook single-cell analysis of Zeisel et al. 2015:
# preprocessing, a PCA baseline and the book's VAE, Leiden clustering and ARI, over seeds.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/embed.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/incomplete.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),


onsuccess:
    forget_incomplete_run()


onerror:
    report_incomplete_run(log)
