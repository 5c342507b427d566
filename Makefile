# Developer entry points. `make test` is the README's test command and what CI runs.
PYTHON ?= python3
VENV := .venv

.PHONY: install test

install:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'

test: install
	$(VENV)/bin/python -m pytest
