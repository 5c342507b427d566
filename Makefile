# Developer entry points. `make test` is the README's test command and what CI runs.
PYTHON ?= python3
VENV := .venv
# aws-sam-cli lives in its own venv: it pins boto3 (==1.43.108) and friends, which would fight
# moto and boto3 in .venv.
SAM_VENV := .venv-sam
SAM_CLI_VERSION := 1.170.0
SAM := $(SAM_VENV)/bin/sam
# The Lambda runtime's Python, for the layer's .pyc (layers/Makefile): python3.12 on PATH, or
# pyenv's 3.12 when the pyenv shim hides it.
PYTHON312 ?= $(shell for p in python3.12 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { command -v "$$p"; break; }; \
	done)
export PYTHON312
# Offline `sam` commands still want a region and credentials to exist; nothing is called.
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1}

.PHONY: install test sam-venv build build-check lint clean-build

# asl-validator (npm, pinned by package-lock.json) checks both ASL files in tests/test_template.py.
install:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'  # the test extra holds the lint tools too
	npm ci --no-audit --no-fund --loglevel=error

# Everything, including `sam build` (no Docker, about 20 s with warm caches) so that
# tests/test_deploy_build.py checks the real build output, and `sam validate --lint`.
test: install build
	$(VENV)/bin/python -m pytest

SAM_STAMP := $(SAM_VENV)/.aws-sam-cli-$(SAM_CLI_VERSION)

$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	echo '*' > $(SAM_VENV)/.gitignore
	$(SAM_VENV)/bin/pip install -q aws-sam-cli==$(SAM_CLI_VERSION)
	touch $(SAM_STAMP)

sam-venv: $(SAM_STAMP)

# `sam build` without Docker: the layer comes from layers/Makefile (manylinux wheels).
build: $(SAM_STAMP)
	@test -n "$(PYTHON312)" || { echo "python3.12 not found: the layer's bytecode must match the python3.12 runtime" >&2; exit 1; }
	$(SAM_ENV) $(SAM) build

# Build, then check the built output: every function plus its layers under Lambda's 250 MB
# unzipped limit with a margin, and every handler importable from the built layer on python3.12.
build-check: install build
	GROVEFLOW_BUILD_TESTS=1 $(VENV)/bin/python -m pytest tests/test_deploy_build.py -v -s

# The template and ASL checks alone, plus `sam validate --lint` (offline).
lint: install $(SAM_STAMP)
	$(VENV)/bin/python -m pytest tests/test_template.py -q
	$(SAM_ENV) AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline $(SAM) validate --lint

clean-build:
	rm -rf .aws-sam
