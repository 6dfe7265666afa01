# Cappuccino: two commands set everything up on a fresh machine.
#   make run   - create the virtualenv, install, run the whole pipeline on the embedded synthetic market (demo budget)
#   make test  - create the virtualenv, install, run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Test processes: the suite waits on subprocesses and servers as much as it computes, so two
# workers keep both cores busy; each worker runs its tests serially with its own Prefect harness.
TEST_WORKERS ?= 2

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install run test bench ui clean

install: $(STAMP)

# Reinstall only when the dependency list changes. torch goes first and pinned: this
# machine serves a CPU build of 2.13.0; an unpinned torch would pull GBs of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(VENV)/bin/cappuccino run --demo

test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

bench: install
	$(PY) -m benchmarks.run

ui: install
	bash scripts/ui.sh

clean:
	rm -rf $(VENV) .cappuccino .pytest_cache
