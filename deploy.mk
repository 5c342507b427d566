# Build and deploy the groveflow SAM application (docs/deploy.md), with no Docker.
# The repository's Makefile includes this file; `groveflow init DIR` writes it as DIR/Makefile, so
# an application has the same targets as the repository:
#   make sam-venv   the SAM CLI in its own venv, .venv-sam
#   make validate   sam validate --lint (offline)
#   make build      sam build for this machine's architecture (the build groveflow can run as
#                   built here); ARCHITECTURE=arm64 or x86_64 builds for another
#   make deploy     sam build for the architecture deployed (arm64, the template's default, unless
#                   samconfig.toml saved another or ARCHITECTURE= says), then sam deploy (guided:
#                   asks for the parameters, can save them)
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

# The template's Architecture parameter and the layers' wheels (layers/Makefile reads
# ARCHITECTURE from the environment: sam build passes no parameter to a makefile build) are set
# together here, so a build's functions and libraries are for one architecture.
HOST_ARCHITECTURE := $(shell uname -m | sed -e 's/^aarch64$$/arm64/' -e 's/^amd64$$/x86_64/')
SAVED_ARCHITECTURE := $(shell sed -n 's/.*Architecture=\\\{0,1\}"\{0,1\}\(arm64\|x86_64\).*/\1/p' samconfig.toml 2>/dev/null | head -n 1)
DEPLOY_ARCHITECTURE = $(or $(ARCHITECTURE),$(SAVED_ARCHITECTURE),arm64)
sam_build = ARCHITECTURE=$(1) $(SAM_ENV) $(SAM) build --parameter-overrides Architecture=$(1)

.PHONY: sam-venv validate build deploy clean-build python312

# The first target, what `make` alone does: a build for this machine's architecture, the one
# setting that lets groveflow run the functions as built here. The build settings (no container,
# parallel, not cached) are samconfig.toml's.
build: python312 $(SAM_STAMP)
	$(call sam_build,$(or $(ARCHITECTURE),$(HOST_ARCHITECTURE)))

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

# Needs AWS credentials; the stack's name and region are samconfig.toml's. Built for the
# architecture sam deploy will deploy: the one samconfig.toml saved, else the template's
# default; ARCHITECTURE= passes its own (as the only parameter override: sam deploy then ignores
# the saved ones, so with saved parameters change Architecture in samconfig.toml instead).
# Answer the guided Architecture prompt with the value built.
deploy: python312 $(SAM_STAMP)
	$(call sam_build,$(DEPLOY_ARCHITECTURE))
	SAM_CLI_TELEMETRY=0 $(SAM) deploy $(DEPLOY_FLAGS) \
		$(if $(ARCHITECTURE),--parameter-overrides Architecture=$(ARCHITECTURE))

clean-build:
	rm -rf .aws-sam
