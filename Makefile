# Two commands for a newcomer: `make demo` and `make test`. Each sets itself up on first use
# (.venv from pyproject.toml, node_modules from package-lock.json) and is quick afterwards.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

# Offline by default: a region and dummy credentials keep SDKs and CDK off the EC2 metadata address.
export AWS_REGION ?= us-east-1
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_EC2_METADATA_DISABLED ?= true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION ?= 18,20
export JSII_DEPRECATED ?= quiet
export CDK_DISABLE_CLI_TELEMETRY ?= true
export PIP_DISABLE_PIP_VERSION_CHECK ?= 1

.PHONY: demo test lint unit bench clean

demo: $(PY_STAMP) $(NODE_STAMP)
	$(PY) -m cdk_serverless_patterns demo

test: lint unit

lint: $(PY_STAMP)
	$(PY) -m ruff check constructs lambda_src integ tests bench
	$(PY) -m ruff format --check constructs lambda_src integ tests bench
	$(PY) -m mypy

unit: $(PY_STAMP) $(NODE_STAMP)
	$(PY) -m pytest

bench: $(PY_STAMP) $(NODE_STAMP)
	$(PY) bench/run.py

$(PY_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed: set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(NODE_STAMP): package-lock.json
	@command -v npm >/dev/null || { echo "Node.js 20+ with npm is needed for the pinned CDK CLI" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache .mypy_cache .ruff_cache dist build
