# sessionflow: every set-up step lives here, so a fresh machine needs only `make test` / `make run`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BROKER := $(PYTHON) deploy/kafka/broker.py
PYTEST_ARGS ?=

.PHONY: install tools test test-unit test-reliability-long lint format run kafka-up kafka-down kafka-reset bench clean

install: $(STAMP) tools

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

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
	@status=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || status=$$?; \
	  $(MAKE) --no-print-directory kafka-down; exit $$status

# The fault-injection scenarios at their large counts (manual; `make test` runs the CI counts).
test-reliability-long: install
	@$(MAKE) --no-print-directory kafka-up
	@status=0; SESSIONFLOW_RELIABILITY_SCALE=long $(BIN)/python -m pytest tests/reliability $(PYTEST_ARGS) || status=$$?; \
	  $(MAKE) --no-print-directory kafka-down; exit $$status

# Throughput and latency against same-run baselines; never part of `make test`.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
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
