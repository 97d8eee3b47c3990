# mlambda: `make up` runs the platform, `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install up test test-ray lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/mlambda up --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check mlambda tests functions bench training

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q

# The Ray engine's tests on a two-node cluster of this machine (not in `make test`: Ray
# 2.52's nodes talk over the machine's own address, and our tests keep to loopback).
test-ray: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,ray]'
	MLAMBDA_RAY_TESTS=1 $(BIN)/pytest -q tests/e2e/test_ray_engine.py

clean:
	rm -rf $(VENV) .mlambda .pytest_cache .mypy_cache .ruff_cache

-include mk/*.mk

# Benchmarks (not tests): wrk from Debian's packages; results go in docs/benchmarks.md.
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk hey)
	$(BIN)/python bench/cold_start.py
	$(BIN)/python -m bench.echo_http
