# One command each, from a fresh clone: the first target that needs it creates .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
# `make report` reports the last run (its config files in results/.last-config, its
# DATASETS in results/.last-datasets), unless CONFIG or DATASETS is given
LAST_CONFIG := $(shell cat results/.last-config 2>/dev/null)
LAST_DATASETS := $(shell cat results/.last-datasets 2>/dev/null)
CONFIG ?= $(or $(LAST_CONFIG),config/config.yaml)
REPORT_DATASETS = $(or $(DATASETS),$(if $(filter file,$(origin CONFIG)),$(LAST_DATASETS)))
remember = mkdir -p results && echo "$(1)" > results/.last-config && echo "$(DATASETS)" > results/.last-datasets
# the last of the config files that sets results_dir wins, as in Snakemake
RESULTS_DIR = $(shell $(BIN)/python -c "import sys, yaml; dirs = [(yaml.safe_load(open(f)) or {}).get('results_dir') for f in sys.argv[1:]]; print(next((d for d in reversed(dirs) if d), 'results'))" $(CONFIG))
# DATASETS=kang_pbmc,worm_neuron (or "kang_pbmc worm_neuron") runs only those datasets
# of the config (its only_datasets)
DATASETS ?=
empty :=
comma := ,
only_datasets = $(if $(strip $(1)), --config only_datasets=$(subst $(empty) $(empty),$(comma),$(strip $(1))))
SNAKEMAKE := $(BIN)/snakemake$(call only_datasets,$(DATASETS))

.PHONY: venv run demo ablation finalists genes test lint format bench bench-scale report dry-run test-slurm clean

$(BIN)/snakemake: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

venv: $(BIN)/snakemake

run: $(BIN)/snakemake ## the book's analysis on Zeisel 2015 (downloads the data) -> results/
	$(call remember,config/config.yaml)
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) --configfile config/config.yaml
	$(MAKE) report CONFIG=config/config.yaml

demo: $(BIN)/snakemake ## the same on pbmc68k, offline -> results/demo/
	$(call remember,config/demo.yaml)
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) --configfile config/demo.yaml
	$(MAKE) report CONFIG=config/demo.yaml

# The grids (ablation, finalists, genes) are hundreds of small training jobs: one thread
# each runs a job per core, 2.8x the throughput of two threads per job on 2 cores (README).
# Without a CUDA device the training jobs hold no `gpu` (profiles/local's gpu=1 would run
# them one at a time, leaving the other cores idle); with one, they take turns on it.
NO_CUDA = $(shell $(BIN)/python -c "import torch; print('' if torch.cuda.is_available() else 'yes')" 2>/dev/null)
GRID_THREADS ?= --set-threads train_vae=1 train_scvi=1 $(if $(NO_CUDA),--set-resources train_vae:gpu=0 train_scvi:gpu=0)

# The ablation takes hours on 2 cores; screen first with fewer seeds, e.g.
#   make ablation ABLATION_CONFIGS="config/ablation.yaml my-seeds.yaml"  (seeds: [0, 1])
ABLATION_CONFIGS ?= config/ablation.yaml
ablation: $(BIN)/snakemake ## each change to the book's VAE alone and combined, 5 datasets -> results/ablation/
	$(call remember,$(ABLATION_CONFIGS))
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) $(GRID_THREADS) --keep-going --configfile $(ABLATION_CONFIGS)
	$(MAKE) report CONFIG="$(ABLATION_CONFIGS)"

finalists: $(BIN)/snakemake ## the ablation's four finalists (pca, vae, vae_improved, scvi), 5 datasets x 5 seeds -> results/finalists/
	$(call remember,config/finalists.yaml)
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) $(GRID_THREADS) --keep-going --configfile config/finalists.yaml
	$(MAKE) report CONFIG=config/finalists.yaml

genes: $(BIN)/snakemake ## gene selection (seurat_v3, 2000 genes) as variants of the real datasets, 5 seeds -> results/genes/
	$(call remember,config/genes.yaml)
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) $(GRID_THREADS) --keep-going --configfile config/genes.yaml
	$(MAKE) report CONFIG=config/genes.yaml

report: $(BIN)/snakemake ## HTML report of the last run (or: make report CONFIG=my.yaml)
	$(BIN)/snakemake$(call only_datasets,$(REPORT_DATASETS)) --report $(RESULTS_DIR)/report.html --configfile $(CONFIG)

# pytest-xdist: one worker per core; each test file stays on one worker (its fixtures run once)
TEST_WORKERS ?= 2
test: $(BIN)/snakemake lint ## unit, workflow and fault tests
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(BIN)/snakemake
	$(SNAKEMAKE) --lint
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/ruff check scripts tests tools
	$(BIN)/ruff format --check scripts tests tools

format: $(BIN)/snakemake
	$(BIN)/snakefmt Snakefile rules
	$(BIN)/ruff check --fix scripts tests tools
	$(BIN)/ruff format scripts tests tools

bench: $(BIN)/snakemake ## book-style training loop vs ours; preset improved vs scVI (per epoch, to the end)
	$(BIN)/python tools/bench_vae.py
	$(BIN)/python tools/bench_scvi.py

bench-scale: $(BIN)/snakemake ## the workflow on 10^4, 10^5, 10^6 droplet cells: time and memory per rule -> results/bench/scale.tsv (~1-2 h)
	$(BIN)/python tools/bench_scale.py

dry-run: $(BIN)/snakemake ## plan default, demo and likelihood configs, local and Slurm profile (submits nothing)
	$(BIN)/python tools/dry_run.py

# Root only: installs slurmctld/slurmd/slurm-client/munge if missing, starts a one-node
# cluster (tests/slurm/cluster.sh), runs the Slurm tests, and always stops the daemons.
test-slurm: $(BIN)/snakemake ## the synthetic workflow through sbatch on a throw-away one-node Slurm
	@trap 'bash tests/slurm/cluster.sh stop' EXIT; \
	bash tests/slurm/cluster.sh start && \
	eval "$$(bash tests/slurm/cluster.sh env)" && \
	SCEMBED_REQUIRE_SLURM=1 timeout -k 10 900 $(BIN)/python -m pytest -m slurm -v -s tests/slurm

clean:
	rm -rf results/* .snakemake
	touch results/.gitkeep
