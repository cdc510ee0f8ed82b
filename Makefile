# draco-em developer entry points. Both targets work on a fresh machine with only Python.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch must be installed before the package, or pip resolves a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup test test-all demo lint typecheck check clean

$(BIN)/draco: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test,eer]"
	touch $(BIN)/draco

setup: $(BIN)/draco

test: setup
	OMP_NUM_THREADS=2 $(BIN)/pytest -q

test-all: setup
	OMP_NUM_THREADS=2 $(BIN)/pytest -q -m "slow or not slow"

demo: setup
	$(BIN)/draco demo -o demo_output

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# mypy on src/ (settings in pyproject.toml [tool.mypy]).
typecheck: setup
	$(BIN)/mypy

# What CI runs: lint, type-check, then the tests.
check: lint typecheck test

clean:
	rm -rf $(VENV) build dist demo_output .pytest_cache
