# Every target creates the virtual environment it needs; nothing is assumed installed.
SHELL := /bin/bash
# Python 3.13 (the Lambda runtime) when pyenv or the system has it, else python3.
PYTHON ?= $(shell for p in "$$(pyenv root 2>/dev/null)/versions/3.13.0/bin/python3.13" python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck fmt check clean demo local sam bench chaos model load

venv: $(STAMP)

# Progress on stderr (a line per step, and per package pip collects), so that stdout stays
# clean: `make local` still prints its export block first.
$(STAMP): pyproject.toml functions/requirements.txt
	@echo "installing the Python environment into $(VENV) (first run, or pyproject.toml changed: about a minute)" >&2
	@test -x $(BIN)/python || { echo "  [1/3] creating $(VENV) with $(PYTHON)" >&2; $(PYTHON) -m venv $(VENV); }
	@echo "  [2/3] upgrading pip" >&2
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "  [3/3] installing the project and its dev tools:" >&2
	@set -o pipefail; $(BIN)/python -m pip install --progress-bar off -e '.[dev,bench]' 2>&1 \
		| { grep --line-buffered -E '^(Collecting|Successfully installed|ERROR|error)' || true; } \
		| cut -c1-100 | sed -u 's/^/        /' >&2
	@touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m infra.contract.derive_spec --check

typecheck: venv
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint typecheck test

demo: venv
	$(BIN)/python -m infra.local_stack.demo

# `@`: the export block must be the first thing printed.
local: venv
	@$(BIN)/python -m infra.local_stack

# The SAM CLI and cfn-lint in their own environment (aws-sam-cli pins boto3), for `sam build/deploy`.
sam: venv
	@$(BIN)/python -c 'from infra.sam.tools import ensure_sam_venv; print("SAM CLI:", ensure_sam_venv() / "sam")'

bench: venv
	$(BIN)/python -m tests.bench.run

chaos: venv
	$(BIN)/python -m tests.reliability.chaos $(CHAOS_ARGS)

# 20,000 cancels by 8 worker processes against the emulator limited to 200 requests/s, adaptive
# and fixed (LOAD_ARGS="--ids 2000 --rate 100"); a table (.bench/load.txt) and docs/load.png.
load: venv
	$(BIN)/python -m tests.load $(LOAD_ARGS)

# The model-based test of the announce protocol, long profile (MODEL_ARGS="--examples 5000").
model: venv
	$(BIN)/python -m tests.model.run $(MODEL_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam .local-stack .bench
