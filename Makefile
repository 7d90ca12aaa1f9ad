# Two entry points: `make demo` and `make test`. Both create .venv and install everything they need,
# so they work on a fresh machine with only Python 3.11 and the package registries.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
AIRFLOW_VERSION := 3.3.2
DAGSTER_VERSION := 1.13.28
# Both orchestrators in one venv (they resolve together), so one suite tests both adapters; users install
# only one of them (extras "airflow" or "dagster").
EXTRAS := test,airflow,dagster,sql,emulator

.PHONY: install ui-deps lint typecheck test ui-test demo demo-dagster bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]' \
		'apache-airflow==$(AIRFLOW_VERSION)' 'dagster==$(DAGSTER_VERSION)'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check omni_provider tests dags bench scripts examples
	$(BIN)/ruff format --check omni_provider tests dags bench scripts examples

typecheck: install
	$(BIN)/mypy

# The browser test (tests/ui/test_browser.py) needs Debian's chromium and chromedriver. CI runs as root and
# gets them here; elsewhere, without root, the test is skipped with a message (under CI=true it fails).
ui-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver fonts-liberation; \
	else echo "chromium/chromedriver missing: sudo apt-get install chromium chromium-driver fonts-liberation"; fi

test: lint typecheck ui-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Only the real-browser test of the Airflow UI (about 3 minutes); screenshots in .ui-test-artifacts/ on failure.
ui-test: install ui-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/ui/test_browser.py $(PYTEST_ARGS)

demo: install
	$(BIN)/python scripts/demo.py

demo-dagster: install
	$(BIN)/python scripts/demo_dagster.py

bench: install
	$(BIN)/python bench/bench_sync.py
	$(BIN)/python bench/bench_plan.py
	$(BIN)/python bench/bench_groups.py

clean:
	rm -rf $(VENV) .demo .demo-dagster .mypy_cache .ruff_cache .pytest_cache
