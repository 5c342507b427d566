# The Lambda runtime's Python, which compiles the layer's .pyc (their minor version must match):
# $PYTHON312 if set, else python3.12 on PATH, else pyenv's 3.12 (the pyenv shim hides it unless
# 3.12 is selected). Empty when there is none. Included by layers/Makefile and deploy.mk.
ifeq ($(origin PYTHON312),undefined)
PYTHON312 := $(shell for p in python3.12 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { command -v "$$p"; break; }; \
	done)
endif
export PYTHON312

# One line, echoed in single quotes (no quote in it).
PYTHON312_MISSING := python3.12 (the Python of the Lambda runtime, which compiles the layer) is not \
on PATH nor in pyenv: install it (pyenv install 3.12, or the python3.12 package of your system) or pass \
PYTHON312=/path/to/python3.12
