# GRIDNET — every target creates .venv on its own when it is missing.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
OUT    ?= out/demo

.PHONY: demo test bench lint clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/gridnet simulate scenarios/neighbourhood.toml --out $(OUT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n auto -p no:cacheprovider

bench: $(VENV)/.installed
	$(BIN)/gridnet bench ledger --json
	$(BIN)/gridnet bench market --json
	$(BIN)/gridnet bench relay --json
	$(BIN)/gridnet bench network --json

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
