# normlab — run `make help` for the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel by default; GPU users: make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
STUDY ?= demo
ARGS ?=
PYTEST_ARGS ?=
OUT ?= gpu_check
CPU ?=

.PHONY: help setup demo test test-all lint sweep report bench gpu-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: STUDY=<sweeps/NAME.yaml> ARGS='<extra hydra overrides>' TORCH_SPEC='<pip spec>' OUT=<dir> CPU=1"

setup: $(VENV)/.installed  ## create .venv and install normlab with its dev tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup  ## train bn, gn, ln at batch 2 and 32 on the embedded dataset, print the table
	$(MAKE) --no-print-directory sweep STUDY=demo
	$(MAKE) --no-print-directory report STUDY=demo

test: setup  ## the fast test suite
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: setup  ## every test, the slow ones included
	$(BIN)/python -m pytest -q -m "" $(PYTEST_ARGS)

lint: setup  ## ruff
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

sweep: setup  ## run the study sweeps/$(STUDY).yaml as a Hydra multirun into multirun/$(STUDY)/
	$(BIN)/python -m src.train -m --config-dir sweeps --config-name $(STUDY) $(ARGS)

report: setup  ## tables for multirun/$(STUDY) into results/$(STUDY)/
	$(BIN)/python -m src.report multirun/$(STUDY)

bench: setup  ## step time of normlab's loop vs a hand loop, and sweep throughput; writes results/bench/
	$(BIN)/python -m benchmarks.throughput $(ARGS)

gpu-check: setup  ## every GPU path in one go (<= 8 min) into OUT=<dir>; CPU=1: the reduced CPU form
	$(BIN)/python -m benchmarks.gpu_check --out $(OUT) $(if $(CPU),--cpu) $(ARGS)

clean:  ## remove run outputs and caches (keeps .venv and results/)
	rm -rf multirun outputs gpu_check lightning_logs wandb data/cache .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +
