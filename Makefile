# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEMO_DATA := demo/data

.PHONY: demo test setup

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# Generated shapes and random backbone weights: no download, runs offline.
demo: setup
	test -d $(DEMO_DATA) || PYTHONPATH=workflow $(BIN)/python -m tlflow.synthetic $(DEMO_DATA)
	$(BIN)/snakemake --configfile config/demo.yaml

# Two workers: the end-to-end tests wait on TensorFlow start-ups more than they
# compute. A module's tests share a worker (its fixtures are built once); the
# SLURM tests run alone afterwards, as they time cluster jobs.
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadscope -m "not slurm"
	$(BIN)/python -m pytest -m slurm
