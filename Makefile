# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEMO_DATA := demo/data
TENSORFLOW := $(shell sed -n 's/^tensorflow-cpu==//p' requirements.txt)

.PHONY: demo test unit lint setup setup-gpu

setup: $(VENV)/.installed

# The pinned packages, then the workflow's own package tlflow, editable: the
# rules, scripts and tests run this checkout's code.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --editable .
	touch $@

# GPUs: TensorFlow's CUDA build in place of the CPU one, the same version (as
# envs/keras-gpu.yaml). Run it again after `make setup` reinstalled the packages.
setup-gpu: setup
	$(BIN)/pip uninstall --quiet --yes tensorflow-cpu
	$(BIN)/pip install --quiet "tensorflow[and-cuda]==$(TENSORFLOW)"

# Generated shapes and random backbone weights: no download, runs offline.
demo: setup
	test -d $(DEMO_DATA) || $(BIN)/python -m tlflow.synthetic $(DEMO_DATA)
	$(BIN)/snakemake --configfile config/demo.yaml

# The quality gates docs/development.md names, run by CI: Snakemake's linter on the test
# case (.test: its config and images), snakefmt's check of the rules, and ruff's of the
# Python (its formatting and pyflakes, configured in pyproject.toml). Any finding fails.
lint: setup
	$(BIN)/snakemake --lint --configfile .test/config/config.yaml
	$(BIN)/snakefmt --check workflow Snakefile
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# Two workers: the end-to-end tests wait on TensorFlow start-ups more than they
# compute. A module's tests share a worker (its fixtures are built once); the
# SLURM tests run alone afterwards, as they time cluster jobs.
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadscope -m "not slurm"
	$(BIN)/python -m pytest -m slurm

# The fast loop: the tests that run no Snakemake (marker `workflow`, see
# docs/development.md): 236 tests in about 2.5 minutes on 2 cores.
unit: setup
	$(BIN)/python -m pytest -m "not workflow and not slurm"
