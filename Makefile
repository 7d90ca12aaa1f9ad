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
EXTRAS := test,airflow,dagster,sql,emulator,openlineage
# The oldest Airflow we support gets its own venv (without the openlineage provider, so the tests also
# show nothing needs it); it runs the tests that touch Airflow (AIRFLOW2_TESTS).
AIRFLOW2_VERSION := 2.11.2
VENV2 := .venv-af2
BIN2 := $(VENV2)/bin
STAMP2 := $(VENV2)/.installed-stamp
AIRFLOW2_TESTS := tests/hooks tests/operators tests/sync_operator tests/dags tests/lineage tests/layers \
	tests/security tests/reliability/test_interrupt.py tests/reliability/test_bad_input_matrix.py

.PHONY: install install-af2 ui-deps lint typecheck test test-af3 test-af2 ui-test stock-install-check demo demo-dagster bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]' \
		'apache-airflow==$(AIRFLOW_VERSION)' 'dagster==$(DAGSTER_VERSION)'
	touch $(STAMP)

install: $(STAMP)

$(STAMP2): pyproject.toml Makefile
	test -x $(BIN2)/python || $(PYTHON) -m venv $(VENV2)
	$(BIN2)/python -m pip install --quiet --upgrade pip
	$(BIN2)/python -m pip install --quiet -e '.[test,airflow,sql]' 'apache-airflow==$(AIRFLOW2_VERSION)'
	touch $(STAMP2)

install-af2: $(STAMP2)

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

test: lint typecheck test-af3 test-af2

# The whole suite on Airflow 3.3, the real-browser UI test included.
test-af3: install ui-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The Airflow-facing tests again, on Airflow 2.11.
test-af2: install-af2
	$(BIN2)/python -m pytest -q -p no:cacheprovider $(AIRFLOW2_TESTS) $(PYTEST_ARGS)

# Only the real-browser test of the Airflow UI (about 3 minutes); screenshots in .ui-test-artifacts/ on failure.
ui-test: install ui-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/ui/test_browser.py $(PYTEST_ARGS)

# pip-installs the built wheel into fresh stock Airflow 2.11 and 3.3 venvs and runs the example DAGs with
# `airflow dags test` against the emulator (slow: two fresh venvs; not part of `make test`).
stock-install-check: install
	$(BIN)/python scripts/stock_install_check.py --airflow $(AIRFLOW2_VERSION) --airflow $(AIRFLOW_VERSION)

demo: install
	$(BIN)/python scripts/demo.py

demo-dagster: install
	$(BIN)/python scripts/demo_dagster.py

bench: install
	$(BIN)/python bench/bench_sync.py
	$(BIN)/python bench/bench_plan.py
	$(BIN)/python bench/bench_groups.py

clean:
	rm -rf $(VENV) $(VENV2) .demo .demo-dagster .mypy_cache .ruff_cache .pytest_cache
