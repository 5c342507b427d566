# Build and deploy the groveflow SAM application (docs/deploy.md), with no Docker.
# The repository's Makefile includes this file; `groveflow init DIR` writes it as DIR/Makefile, so
# an application has the same targets as the repository:
#   make sam-venv   the SAM CLI in its own venv, .venv-sam
#   make validate   sam validate --lint (offline)
#   make build      sam build: the layers from pinned manylinux wheels (layers/Makefile)
#   make deploy     sam build, then sam deploy (guided: asks for the parameters, can save them)
PYTHON ?= python3
# aws-sam-cli lives in its own venv: it pins boto3 and friends, which would fight anything else.
SAM_VENV := .venv-sam
SAM_CLI_VERSION := 1.170.0
SAM := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.aws-sam-cli-$(SAM_CLI_VERSION)
# PYTHON312: the Lambda runtime's Python, found on PATH or in pyenv (layers/Makefile uses it too).
include layers/python312.mk
# Offline `sam` commands still want a region and credentials to exist; nothing is called.
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1}
OFFLINE_CREDENTIALS := AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline
# `make deploy DEPLOY_FLAGS=` deploys with the settings a guided deploy saved in samconfig.toml.
DEPLOY_FLAGS ?= --guided

.PHONY: sam-venv validate build deploy clean-build python312

# The first target, what `make` alone does. The build settings (no container, parallel, not
# cached) are samconfig.toml's.
build: python312 $(SAM_STAMP)
	$(SAM_ENV) $(SAM) build

$(SAM_STAMP):
	@$(PYTHON) -c 'import sys, ensurepip, venv; assert sys.version_info >= (3, 10)' 2>/dev/null || { \
		echo '$(PYTHON) cannot make a venv for the SAM CLI, which needs Python 3.10 or later with venv: install it (e.g. apt-get install python3-venv) or pass PYTHON=/path/to/python3' >&2; exit 1; }
	$(PYTHON) -m venv $(SAM_VENV)
	echo '*' > $(SAM_VENV)/.gitignore
	$(SAM_VENV)/bin/pip install -q --disable-pip-version-check aws-sam-cli==$(SAM_CLI_VERSION)
	touch $(SAM_STAMP)

sam-venv: $(SAM_STAMP)

python312:
	@test -n "$(PYTHON312)" || { echo '$(PYTHON312_MISSING)' >&2; exit 1; }

validate: $(SAM_STAMP)
	$(SAM_ENV) $(OFFLINE_CREDENTIALS) $(SAM) validate --lint

# Needs AWS credentials; the stack's name and region are samconfig.toml's.
deploy: build
	SAM_CLI_TELEMETRY=0 $(SAM) deploy $(DEPLOY_FLAGS)

clean-build:
	rm -rf .aws-sam
