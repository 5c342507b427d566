# Developer entry points. `make test` is the README's test command and what CI runs.
# sam-venv, validate, build, deploy: deploy.mk, the same file `groveflow init` writes as an
# application's Makefile (docs/deploy.md follows both).
PYTHON ?= python3
VENV := .venv

.PHONY: install test build-check lint

# asl-validator (npm, pinned by package-lock.json) checks both ASL files in tests/test_template.py.
install:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'  # the test extra holds the lint tools too
	npm ci --no-audit --no-fund --loglevel=error

# Everything, including `sam build` (no Docker, about 20 s with warm caches) so that
# tests/test_deploy_build.py checks the real build output, and `sam validate --lint`.
# GROVEFLOW_BUILD_TESTS=1 also runs the slow journey from a wheel to `sam build` in an
# application written by `groveflow init` (tests/test_journey_deploy.py).
test: install build
	GROVEFLOW_BUILD_TESTS=1 $(VENV)/bin/python -m pytest

# Build, then check the built output: every function plus its layers under Lambda's 250 MB
# unzipped limit with a margin, and every handler importable from the built layer on python3.12.
build-check: install build
	GROVEFLOW_BUILD_TESTS=1 $(VENV)/bin/python -m pytest tests/test_deploy_build.py -v -s

# The template and ASL checks alone, plus `sam validate --lint` (offline).
lint: install validate
	$(VENV)/bin/python -m pytest tests/test_template.py -q

include deploy.mk
