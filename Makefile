# The two commands of the README. Both set up .venv first (quick when already done).
VENV ?= .venv
WORKSPACE ?= workspace
MODEL ?= demo
BIN := $(VENV)/bin
# pytest-xdist workers: most of a test's time is waiting on a child process (a trainer, a
# merge, an import), so two share a 2-core machine well. docs/testing.md says how groups keep
# the golden path and the fixed snapshot folders to one worker.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadgroup

.PHONY: setup run test test-all lint test-fast

setup:
	@bash scripts/setup.sh

run: setup
	@if [ "$(MODEL)" = demo ]; then $(BIN)/xtuner-wizard --workspace "$(WORKSPACE)" demo-model; fi
	@$(BIN)/xtuner-wizard --workspace "$(WORKSPACE)" --model "$(MODEL)"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider $(XDIST) -m "not long" --durations=15 $(PYTEST_ARGS)

# Everything, the longer real runs too: before landing a change to engine/runs, engine/export
# or the configs.
test-all: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider $(XDIST) --durations=15 $(PYTEST_ARGS)

# Skips the tests that train for real (minutes): for the edit-test loop only.
test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow and not long" $(PYTEST_ARGS)
