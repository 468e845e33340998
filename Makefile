# The two set-up commands of the README:
#   make run    create .venv (CPU torch) and run the whole workflow on the embedded Haxby data
#   make test   create .venv and run the test suite (fast tests, then the slow end-to-end ones)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# as many Snakemake cores as this machine has: more would run jobs side by side on the same cores
CORES ?= $(shell nproc 2>/dev/null || echo 4)
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv run test test-fast test-slurm lint clean bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# The CPU build of torch first, so the package's `torch>=2.2` does not pull a CUDA build.
	$(BIN)/pip install "$(TORCH_SPEC)"
	$(BIN)/pip install -e ".[test]"
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/snakemake --cores $(CORES) --resources gpu=1

test: venv
	$(BIN)/pytest
	$(BIN)/pytest -m slow

test-fast: venv
	$(BIN)/pytest

# The workflow on a real one-node SLURM cluster (root: installs Debian's SLURM, starts its daemons,
# stops them afterwards, also when the tests fail).
test-slurm: venv
	bash tests/slurm/cluster.sh start
	$(BIN)/pytest -m slurm; status=$$?; bash tests/slurm/cluster.sh stop; exit $$status

lint: venv
	$(BIN)/snakemake --lint

clean:
	rm -rf results .snakemake

bench: venv
	$(BIN)/pip install "monai==1.6.1" einops
	$(BIN)/python bench/run_benchmarks.py
