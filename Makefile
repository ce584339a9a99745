# One command each, from a fresh clone: the first target that needs it creates .venv.
# The study that chose `preset: improved` has its own Makefile: experiments/README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
SNAKEMAKE := $(BIN)/snakemake --profile profiles/local --cores $(CORES)
# `make report` reports CONFIG's run into REPORT (the run's results_dir); make run and
# make demo pass both
CONFIG ?= config/config.yaml
REPORT ?= results/report.html

.PHONY: venv run demo report test test-unit lint format bench bench-cluster bench-scale gpu-check dry-run test-slurm clean

# torch first, as PyTorch advises: off this machine plain `torch==2.13.0` is the CUDA build
# on Linux; TORCH_INDEX=https://download.pytorch.org/whl/cpu picks the CPU build.
TORCH_INDEX ?=
$(BIN)/snakemake: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(BIN)/snakemake

run: $(BIN)/snakemake ## the book's analysis on Zeisel 2015 (downloads the data) -> results/
	$(SNAKEMAKE) --configfile config/config.yaml
	$(MAKE) report CONFIG=config/config.yaml REPORT=results/report.html

demo: $(BIN)/snakemake ## the same offline on 700 PBMCs that ship with scanpy -> results/demo/
	$(SNAKEMAKE) --configfile config/demo.yaml
	$(MAKE) report CONFIG=config/demo.yaml REPORT=results/demo/report.html

report: $(BIN)/snakemake ## HTML report of a finished run: make report CONFIG=my.yaml REPORT=results/mine/report.html
	$(BIN)/snakemake --report $(REPORT) --configfile $(CONFIG)

# pytest-xdist: one worker per core; in `make test` each test file stays on one worker (its
# module fixtures, workflow runs among them, run once); the unit tests are spread test by test
TEST_WORKERS ?= 2
test: $(BIN)/snakemake lint ## lint, then every test (unit, workflow, fault): CI's command
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-unit: $(BIN)/snakemake ## the quick loop: every test that starts no Snakemake and compiles no uncached kernel (under a minute)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load -m "not workflow and not slurm and not compiled and not installed" --durations=5

lint: $(BIN)/snakemake
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check workflow
	$(BIN)/ruff check src workflow/scripts tests tools
	$(BIN)/ruff format --check src workflow/scripts tests tools

format: $(BIN)/snakemake
	$(BIN)/snakefmt workflow
	$(BIN)/ruff check --fix src workflow/scripts tests tools
	$(BIN)/ruff format src workflow/scripts tests tools

bench: $(BIN)/snakemake ## book-style training loop vs ours; preset improved vs scVI (per epoch, to the end)
	$(BIN)/python tools/bench_vae.py
	$(BIN)/python tools/bench_scvi.py

bench-cluster: $(BIN)/snakemake ## a clustering job in a fresh process, cold and warm numba cache, per stage -> results/bench/cluster.tsv
	$(BIN)/python tools/bench_cluster.py

bench-scale: $(BIN)/snakemake ## the workflow on 10^4, 10^5, 10^6 droplet cells: time and memory per rule -> results/bench/scale.tsv (~1-2 h)
	$(BIN)/python tools/bench_scale.py

gpu-check: $(BIN)/snakemake ## on a GPU node: preset improved and SCVI, CUDA vs CPU, cells/s, the levers, batch size -> docs/gpu.md (exits 1 without CUDA)
	$(BIN)/python tools/gpu_check.py

dry-run: $(BIN)/snakemake ## plan the shipped configs with the local and Slurm profiles (submits nothing)
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
