# normlab — run `make help` for the targets.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel by default; GPU users: make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
# Your own interpreter instead of .venv (e.g. PY=$$CONDA_PREFIX/bin/python); an active conda env other
# than base is used by default. Its torch is kept if it has one, else TORCH_SPEC is installed.
ifneq ($(filter-out base,$(CONDA_DEFAULT_ENV)),)
PY ?= $(CONDA_PREFIX)/bin/python
endif
PY ?=
STUDY ?= demo
ARGS ?=
PILOT ?=
SD ?=
PYTEST_ARGS ?=
REPORT_OUT ?= results
OUT ?= gpu_check
CPU ?=
WANDB ?=
# The install is redone when pyproject.toml, the constraints or the torch spec (or PY) change.
SPEC_KEY := $(shell printf '%s|%s' '$(TORCH_SPEC)' '$(PY)' | cksum | cut -d' ' -f1)
ifeq ($(PY),)
RUN := $(VENV)/bin/python
STAMP_DIR := $(VENV)
else
RUN := $(PY)
STAMP_DIR := .setup
endif
STAMP := $(STAMP_DIR)/.installed-$(SPEC_KEY)
SHOW_TORCH := import torch; cuda = torch.cuda.is_available(); print(f"torch {torch.__version__}: " + (f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build") + (f", GPU {torch.cuda.get_device_name(0)}" if cuda else ", no GPU visible"))

.PHONY: help setup demo test test-all lint sweep report plan wandb-sync bench gpu-check gpu-study clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: STUDY=<conf/experiment/NAME.yaml> ARGS='<extra hydra overrides>' TORCH_SPEC='<pip spec>' PY=<python>"
	@echo "             REPORT_OUT=<dir> WANDB=1 (make report; default results) OUT=<dir> CPU=1 (make gpu-check)"
	@echo "  studies (make sweep STUDY=<name>, or python -m src.train -m experiment=<name>; conf/experiment/<name>.yaml):"
	@$(if $(wildcard $(RUN)),$(RUN),$(PYTHON)) -m src.studies 2>/dev/null || ls conf/experiment

setup: $(STAMP)  ## install normlab with its dev tools (into .venv, or into PY's environment)

$(STAMP): pyproject.toml constraints.txt
ifeq ($(PY),)
	test -x $(RUN) || $(PYTHON) -m venv $(VENV)
	$(RUN) -m pip install --quiet --upgrade pip
	# another torch spec than the last install's: replace the installed torch (pip would keep it)
	if ls $(STAMP_DIR)/.installed-* >/dev/null 2>&1; then $(RUN) -m pip install --quiet --force-reinstall --no-deps $(TORCH_SPEC); else $(RUN) -m pip install --quiet $(TORCH_SPEC); fi
else
	mkdir -p $(STAMP_DIR)
	$(RUN) -c "import torch" 2>/dev/null || $(RUN) -m pip install --quiet $(TORCH_SPEC)
endif
	$(RUN) -m pip install --quiet -c constraints.txt -e ".[dev]"
	@$(RUN) -c '$(SHOW_TORCH)'
	rm -f $(STAMP_DIR)/.installed-*
	touch $@

demo: setup  ## train bn, gn at batch 2 and 32 (8 seeds, packed) on the embedded dataset, print the table and verdicts
	$(MAKE) --no-print-directory sweep STUDY=demo
	# into multirun/ (untracked): results/demo/ is the committed reference
	$(MAKE) --no-print-directory report STUDY=demo REPORT_OUT=multirun/demo/report

test: setup  ## the fast test suite
	$(RUN) -m pytest -q $(PYTEST_ARGS)

test-all: setup  ## every test, the slow ones included
	$(RUN) -m pytest -q -m "" $(PYTEST_ARGS)

lint: setup  ## ruff
	$(RUN) -m ruff check src tests benchmarks
	$(RUN) -m ruff format --check src tests benchmarks

sweep: setup  ## run the study conf/experiment/$(STUDY).yaml (via sweeps/$(STUDY).yaml) as a Hydra multirun into multirun/$(STUDY)/
	$(RUN) -m src.train -m --config-dir sweeps --config-name $(STUDY) $(ARGS)

report: setup  ## tables for multirun/$(STUDY) into $(REPORT_OUT)/$(STUDY)/; WANDB=1 also publishes them as a W&B run
	$(RUN) -m src.report multirun/$(STUDY) --out $(REPORT_OUT) $(if $(WANDB),--wandb)

plan: setup  ## seeds per cell each claim of conf/experiment/$(STUDY).yaml needs for report.power (80 %), from PILOT=<run dirs> or SD=<points>; ARGS='--metric val_error --where k=v --out DIR'
	$(RUN) -m src.report --plan conf/experiment/$(STUDY).yaml $(if $(PILOT),--pilot $(PILOT)) $(if $(SD),--sd $(SD)) $(ARGS)

wandb-sync: setup  ## upload every offline W&B run of multirun/$(STUDY)/ (training runs and report) and print where
	$(RUN) -m src.wandb_sync $(STUDY)

bench: setup  ## step time of normlab's loop vs a hand loop, sweep throughput, packed vs unpacked runs per hour (about 45 min on 2 cores); writes results/bench/
	$(RUN) -m benchmarks.throughput $(ARGS)
	$(RUN) -m benchmarks.packing
	$(RUN) -m benchmarks.fused

gpu-study: setup  ## STUDY=<name> OUT=<dir> BUDGET_S=480: train what fits the budget (fused, probed packs), bundle the rest to resume anywhere; CPU=1: the rehearsal
	$(RUN) -m src.gpu_study $(STUDY) --out $(OUT) --budget-s $(or $(BUDGET_S),480) $(if $(CPU),--cpu) $(ARGS)

gpu-check: setup  ## every GPU path in one go (<= 8 min) into OUT=<dir>; CPU=1: the reduced CPU form
	$(RUN) -m benchmarks.gpu_check --out $(OUT) $(if $(CPU),--cpu) $(ARGS)

clean:  ## remove run outputs and caches (keeps .venv and results/)
	rm -rf multirun outputs debug gpu_check .setup lightning_logs wandb data/cache .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +
