# lightformer — every target installs what it needs into .venv on a fresh machine.
# Quick start: `make demo`, `make test`.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# Re-install when pyproject.toml changes.
STAMP_DEMO := $(VENV)/.stamp-demo-$(shell cksum pyproject.toml | cut -d' ' -f1)
STAMP_TEST := $(VENV)/.stamp-test-$(shell cksum pyproject.toml | cut -d' ' -f1)
# pytest workers (pytest-xdist): one per core, at most 4; `make test PYTEST_WORKERS=0` runs in
# one process. --dist loadfile keeps a file's tests on one worker, so a module's fixtures (a
# Verilator build, a trained model) are made once. --durations: the 20 slowest tests close every
# run, to see where the time budget goes. `make test PYTEST_ARGS=...` replaces these flags.
PYTEST_WORKERS ?= auto
PYTEST_ARGS ?= --numprocesses=$(PYTEST_WORKERS) --maxprocesses=4 --dist=loadfile --durations=20

.PHONY: demo test test-all lint bench study clean distclean help

help:
	@echo "make demo      run the demo (installs .venv on first use)"
	@echo "make test      lint + unit + cocotb/Verilator + one board synthesis (what CI runs)"
	@echo "make test-all  everything, including tests marked slow"
	@echo "make bench     write benchmark JSON + plots under build/bench/"
	@echo "make study     quick CPU run of the attention/compression study (docs/results.md)"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP_DEMO): $(VENV)/bin/python pyproject.toml
	$(PIP) install -q -e ".[sim]"
	@touch $@

$(STAMP_TEST): $(VENV)/bin/python pyproject.toml
	$(PIP) install -q -e ".[sim,toolchain,ml,dev]"
	@touch $@ $(STAMP_DEMO)

demo: $(STAMP_DEMO)
	$(VENV)/bin/lightformer demo

lint: $(STAMP_TEST)
	$(VENV)/bin/ruff check .

test: $(STAMP_TEST) lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP_TEST) lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP_TEST)
	$(PY) bench/gemm_utilization.py --json build/bench/gemm.json
	$(VENV)/bin/lightformer bench attention --json build/bench/attention.json

study: $(STAMP_TEST)
	$(PY) bench/attention_study.py --quick --out build/bench/attention_study.json
	$(PY) bench/results_table.py build/bench/attention_study.json --out build/bench/results.md

clean:
	rm -rf build .pytest_cache .ruff_cache

distclean: clean
	rm -rf $(VENV)
