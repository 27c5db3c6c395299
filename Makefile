# The commands the README promises. `make install` creates .venv; every other target uses it.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install install-bench train test test-fast lint format summary clean

install: $(BIN)/alexnet-train

$(BIN)/alexnet-train: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev,export]'
	touch $@

install-bench: install  ## bench=imagenet's peers: webdataset and mosaicml-streaming (whose numpy pin is skipped)
	$(BIN)/pip install -e '.[dev,bench]'
	$(BIN)/pip install --no-deps 'mosaicml-streaming==0.13.0'

train: install  ## make train ARGS="model=paper trainer.max_epochs=1"
	$(BIN)/alexnet-train $(ARGS)

summary: install  ## make summary ARGS="model=paper"
	$(BIN)/alexnet-summary $(ARGS)

test: install  ## every test, the slow end-to-end ones included
	$(BIN)/pytest -q

test-fast: install  ## the quick loop while developing
	$(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf .pytest_cache .ruff_cache build dist src/*.egg-info
