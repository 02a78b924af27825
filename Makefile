# sessionflow: every set-up step lives here, so a fresh machine needs only `make test` / `make run`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BROKER := $(PYTHON) deploy/kafka/broker.py
PYTEST_ARGS ?=
# `make test` runs the reliability scenarios (private brokers) beside the rest (the shared broker):
# two xdist workers, one stream each (tests/conftest.py). `make test PYTEST_STREAMS=` runs one.
PYTEST_STREAMS ?= -n 2 --dist loadscope

.PHONY: install lock tools test test-unit test-reliability-long lint format run kafka-up kafka-down kafka-reset bench clean

install: $(STAMP) tools

# Installs come from uv.lock, the exact set the tests passed on (faust-streaming's and
# aiokafka's internals matter to streams/runtime). uv itself, pinned, lives in its own small
# virtualenv under .cache; it never downloads an interpreter, it uses $(PYTHON).
UV_VERSION := 0.13.8
UV_HOME := .cache/uv
UV := $(UV_HOME)/bin/uv
SYNC := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never $(UV) sync --locked --quiet --python $(PYTHON)

$(UV):
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(SYNC) --extra dev
	@touch $(STAMP)

# After editing pyproject.toml's dependencies, or to move one package: `make lock` (or
# `make lock UPGRADE=aiohttp`), then `make install` and the whole suite (README, "Dependencies").
lock: $(UV)
	UV_PYTHON_DOWNLOADS=never $(UV) lock --python $(PYTHON) $(if $(UPGRADE),--upgrade-package $(UPGRADE))

# promtool checks the Prometheus config and alert rules, and the end-to-end metrics test runs a
# real Prometheus: both come with Debian's `prometheus` package.
tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing Debian's prometheus package (promtool, prometheus)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
	  || echo "warning: could not install prometheus; its tests will say so"; }

# The whole suite against a real broker; the broker is stopped even when tests fail.
test: install
	@$(MAKE) --no-print-directory kafka-up
	@status=0; $(BIN)/python -m pytest $(PYTEST_STREAMS) $(PYTEST_ARGS) || status=$$?; \
	  $(MAKE) --no-print-directory kafka-down; exit $$status

# The fault-injection scenarios at their large counts (manual; `make test` runs the CI counts).
test-reliability-long: install
	@$(MAKE) --no-print-directory kafka-up
	@status=0; SESSIONFLOW_RELIABILITY_SCALE=long $(BIN)/python -m pytest tests/reliability $(PYTEST_ARGS) || status=$$?; \
	  $(MAKE) --no-print-directory kafka-down; exit $$status

# Throughput and latency against same-run baselines; never part of `make test`.
bench: install
	$(SYNC) --extra dev --extra bench
	@$(MAKE) --no-print-directory kafka-up
	$(BIN)/python -m bench

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

run: install
	@$(MAKE) --no-print-directory kafka-up
	$(BIN)/sessionflow run

kafka-up:
	@$(BROKER) up

kafka-down:
	@$(BROKER) down

kafka-reset:
	@$(BROKER) reset

clean: kafka-down
	rm -rf $(VENV) .cache var .mypy_cache .ruff_cache .pytest_cache .hypothesis
