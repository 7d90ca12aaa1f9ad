# Two entry points: `make demo` and `make test`. Both create .venv and install everything they need,
# so they work on a fresh machine with only Python 3.11 and the package registries.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
AIRFLOW_VERSION := 3.3.2

.PHONY: install lint typecheck test demo bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' 'apache-airflow==$(AIRFLOW_VERSION)'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check omni_provider tests dags bench scripts
	$(BIN)/ruff format --check omni_provider tests dags bench scripts

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

demo: install
	$(BIN)/python scripts/demo.py

bench: install
	$(BIN)/python bench/bench_sync.py
	$(BIN)/python bench/bench_plan.py
	$(BIN)/python bench/bench_groups.py

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache
