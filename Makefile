# The two commands a newcomer needs: `make run` and `make test`. Both build the virtual
# environment from uv.lock first, installing uv itself into .tools/ when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
VENV_BIN := .venv/bin

# The browser tests' Chromium: Debian's package, installed by `make test` when missing.
export CHROMIUM ?= /usr/bin/chromium

# Examples per API operation in `make fuzz` (`make test` runs a few, the same each run).
FUZZ_EXAMPLES ?= 500

.PHONY: help install run test lint browser fuzz bench clean

help:
	@echo "make run    start the service and its worker (embedded PostgreSQL/Redis by default)"
	@echo "make test   lint, type-check and run the tests"
	@echo "make fuzz   fuzz every API operation from its OpenAPI schema, FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) each,"
	@echo "            with a new seed each run (printed; FUZZ_SEED=N runs one again), and its"
	@echo "            coverage cases (boundaries, each way to break each parameter)"
	@echo "make bench  run the benchmarks"

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

install: | $(UV)
	$(UV) sync --frozen --extra embedded --python $(PYTHON)

run: install
	$(VENV_BIN)/billing dev

lint: install
	$(VENV_BIN)/ruff format --check .
	$(VENV_BIN)/ruff check .
	$(VENV_BIN)/mypy app migrations tests bench
	$(VENV_BIN)/lint-imports

# The browser tests drive Chromium through Playwright, launched from CHROMIUM (Playwright's
# own browser download needs a CDN; Debian's package comes from the package mirror).
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Chromium for the browser tests (apt-get install chromium)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "the browser tests need Chromium: apt-get install chromium (as root), or CHROMIUM=/path/to/chrome" >&2; \
			exit 1; \
		fi; \
	fi

test: lint browser
	$(VENV_BIN)/pytest

fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_RANDOMIZED=1 FUZZ_COVERAGE=1 $(VENV_BIN)/pytest tests/fuzz

bench: install
	$(VENV_BIN)/python -m bench

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
