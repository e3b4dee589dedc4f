# Two commands on a fresh machine: `make run` and `make test`.
# Each creates (once) and reuses the local virtualenv in .venv.
# Benchmarks: `make bench` (a full run, written to docs/benchmarks.md, ~30 min; it needs the
# local PostgreSQL and Redis, and valgrind) and `make bench-quick` (a smoke table, printed,
# under a minute).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
STAMP_BENCH := $(VENV)/.installed-bench

.PHONY: run test lint typecheck pytest clean venv bench bench-quick

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_RUN)

$(STAMP_BENCH): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@ $(STAMP_DEV) $(STAMP_RUN)

venv: $(STAMP_DEV)

## Start the gateway on its embedded defaults (prints a dev token and the URL).
run: $(STAMP_RUN)
	$(BIN)/chatgate serve

## The whole test suite: lint, type check, then every test.
test: lint typecheck pytest

lint: $(STAMP_DEV)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

# The harness's own smoke test needs the bench extra (picows, psutil).
pytest: $(STAMP_DEV) $(STAMP_BENCH)
	$(BIN)/pytest -q

## Benchmarks: chatgate on each store beside python-socketio, bare uvicorn and raw picows.
bench: $(STAMP_BENCH)
	$(BIN)/python -m bench.run --mode full --write docs/benchmarks.md

bench-quick: $(STAMP_BENCH)
	$(BIN)/python -m bench.run --mode quick

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
