# voxelbone — two commands for a new user:
#   make demo   run the default scenario, write results/demo/ (metrics.csv, plots, renders)
#   make test   build the docs strictly and run the whole test suite
# Each target creates .venv and installs what it needs; reruns skip the install
# unless pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Install the GPU extra only where an NVIDIA driver is present.
GPU_EXTRA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo ",gpu")
# One worker per core; a module's tests stay on one worker, so the runs they share through
# lru_cache are computed once (spread test by test, both workers ran them: tests/test_invariance.py
# alone did 156 s of work on 2 workers against 95 s on one).
PYTEST_ARGS ?= -n auto --dist loadscope
DEMO_ARGS ?=

.PHONY: demo demo-mechanics test docs bench clean help

help:
	@echo "make demo   - run the default scenario into results/demo/"
	@echo "make test   - run the test suite"
	@echo "make docs   - build the documentation site into build/site/"
	@echo "make bench  - run the quick benchmark (prints a table)"
	@echo "make demo-mechanics - a run with load-driven remodelling into results/demo-mechanics/"

demo: $(VENV)/.stamp-run
	$(BIN)/voxelbone run --out results/demo $(DEMO_ARGS)

# Load-driven remodelling: micro-FE every 28 days, stiffness beside aBMD, bone coloured by SED
demo-mechanics: $(VENV)/.stamp-run
	$(BIN)/voxelbone run --scenario samples/mechanics_demo.toml --out results/demo-mechanics $(DEMO_ARGS)

test: $(VENV)/.stamp-dev docs
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The documentation site, built strictly: a broken reference or a stale generated table fails.
docs: $(VENV)/.stamp-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

bench: $(VENV)/.stamp-run
	$(BIN)/voxelbone bench --quick

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[sweep$(GPU_EXTRA)]"
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev$(GPU_EXTRA)]"
	@touch $@ $(VENV)/.stamp-run

clean:
	rm -rf $(VENV) build dist results .pytest_cache
