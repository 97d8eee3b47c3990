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
	$(BIN)/pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/mlambda up --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check mlambda tests functions bench training

typecheck: $(STAMP)
	$(BIN)/mypy

# The tests run in a network namespace of their own that holds only a loopback interface
# (root; unshare from util-linux, ip from iproute2): whatever they start sees no address but
# 127.0.0.1 and reaches nothing beyond this machine. The Ray engine's tests need it: Ray's
# nodes advertise the machine's own address otherwise (see tests/e2e/test_ray_engine.py).
LOOPBACK_ONLY := unshare --net -- sh -c 'ip link set lo up && exec "$$@"' loopback-only

test: $(STAMP) lint typecheck
	$(LOOPBACK_ONLY) $(BIN)/pytest -q

# The Ray engine's tests alone: a two-node cluster of this machine (also part of `make test`).
test-ray: $(STAMP)
	$(LOOPBACK_ONLY) $(BIN)/pytest -q tests/e2e/test_ray_engine.py

clean:
	rm -rf $(VENV) .mlambda .pytest_cache .mypy_cache .ruff_cache

-include mk/*.mk

# Benchmarks (not tests): wrk from Debian's packages; results go in docs/benchmarks.md.
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk hey)
	$(BIN)/python bench/cold_start.py
	$(BIN)/python -m bench.echo_http
