# One command to set up and run the demo, one to set up and run the checks.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: on these machines 2.13.0 is a local CPU wheel; a loose spec would
# download a multi-GB CUDA build. Elsewhere, set TORCH_SPEC to what suits your machine.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test test-fast lint typecheck pytest clean

$(BIN)/metasched: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev,chem]"
	touch $@

setup: $(BIN)/metasched

demo: setup
	$(BIN)/metasched demo

lint: setup
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests benchmarks experiments

typecheck: setup
	$(BIN)/mypy

# The tests are many small CPU-bound runs: two processes of one thread each use two cores
# better than one process of two threads (make test: see README, Development).
PYTEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal

pytest: setup
	$(PYTEST)

test: lint typecheck pytest

# The same checks without the tests marked slow (learning curves, kill and signal tests,
# memory over many iterations): for a quick loop while editing; CI runs `make test`.
test-fast: lint typecheck
	$(PYTEST) -m "not slow"

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
