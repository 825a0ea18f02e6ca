# GRIDNET — every target creates .venv on its own when it is missing.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
OUT    ?= out/demo

.PHONY: demo test bench lint clean chromium

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

test: lint chromium
	$(BIN)/pytest -n auto -p no:cacheprovider

# The browser tests drive Debian's chromium (never a browser download): install it when missing.
CHROMIUM := /usr/bin/chromium

chromium: $(CHROMIUM)

$(CHROMIUM):
	@[ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || { echo "error: $(CHROMIUM) is missing; install it as root with 'apt-get install chromium' (the browser tests need it)"; exit 1; }
	@echo "installing Debian's chromium for the browser tests (apt-get)"
	@{ DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; } || { echo "error: apt-get could not install chromium (the browser tests need $(CHROMIUM))"; exit 1; }
	@test -x $(CHROMIUM) || { echo "error: chromium was installed but $(CHROMIUM) is missing"; exit 1; }

bench: $(VENV)/.installed
	$(BIN)/gridnet bench ledger --json
	$(BIN)/gridnet bench market --json
	$(BIN)/gridnet bench auction --json
	$(BIN)/gridnet bench meters --json
	$(BIN)/gridnet bench ev-auction --json
	$(BIN)/gridnet bench relay --json
	$(BIN)/gridnet bench network --json
	$(BIN)/gridnet bench consensus --json
	$(BIN)/gridnet bench world --json
	$(BIN)/gridnet bench sim --json

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
