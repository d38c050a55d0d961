# Shortcuts over scripts/ (each sets the environment up first if needed).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-slow test-all lint format

setup:  ## create/refresh the virtual environment
	bash scripts/setup.sh --venv $(VENV)

test:  ## the default (fast) test suite
	MAFT_VENV=$(VENV) bash scripts/test.sh

test-slow:  ## only the tests marked slow
	MAFT_VENV=$(VENV) bash scripts/test.sh -m slow

test-all:  ## every test, slow ones included
	MAFT_VENV=$(VENV) bash scripts/test.sh -m ""

lint: setup  ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup  ## apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .
