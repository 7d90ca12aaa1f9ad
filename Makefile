# Two entry points: `make demo` and `make test`. Both create .venv and install everything they need,
# so they work on a fresh machine with only Python 3.11 and the package registries.
#
# Every venv is installed from its lock, locks/<env>.txt (every distribution, name==version, written by
# `make lock`), plus its input, locks/<env>.in (the package itself, editable, with the extras, and the
# Airflow/Dagster versions we test): a fresh machine gets exactly what CI got, whatever the index serves that
# day, and scripts/locks.py checks that the venv holds the lock and nothing else. README: "Locked test
# environments".
PYTHON ?= $(shell command -v python3.11 || command -v python3)
LOCK := $(PYTHON) scripts/locks.py
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The oldest Airflow we support gets its own venv (locks/airflow2.in: Airflow 2.11, without Dagster and
# the openlineage provider, so the tests also show nothing needs them); it runs the tests that touch Airflow.
VENV2 := .venv-af2
BIN2 := $(VENV2)/bin
STAMP2 := $(VENV2)/.installed-stamp
AIRFLOW2_TESTS := tests/hooks tests/operators tests/airflow_support tests/dags tests/layers tests/security tests/recipients \
	tests/reliability/test_interrupt.py tests/reliability/test_bad_input_matrix.py tests/ui/test_browser_airflow2.py
# `make test-latest`: the same suites in throwaway venvs resolved from pyproject.toml's ranges, unpinned.
LATEST := .venv-latest
LATEST2 := .venv-latest-af2

.PHONY: install install-af2 ui-deps lint typecheck test test-af3 test-af2 ui-test stock-install-check demo \
	demo-dagster bench lock test-latest clean

# A venv whose lock or input changed is built anew: installing over it would keep what the lock dropped.
$(STAMP): pyproject.toml locks/main.txt locks/main.in
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r locks/main.txt -r locks/main.in
	$(LOCK) check main $(BIN)/python
	touch $(STAMP)

install: $(STAMP)

$(STAMP2): pyproject.toml locks/airflow2.txt locks/airflow2.in
	rm -rf $(VENV2)
	$(PYTHON) -m venv $(VENV2)
	$(BIN2)/python -m pip install --quiet -r locks/airflow2.txt -r locks/airflow2.in
	$(LOCK) check airflow2 $(BIN2)/python
	touch $(STAMP2)

install-af2: $(STAMP2)

# Resolves every locks/*.in anew in a throwaway venv (the newest releases the ranges allow) and rewrites its
# lock. Run it to take a dependency bump on purpose, then `make test`, and review the locks' diff.
lock:
	$(LOCK) lock

# Not part of `make test` nor of CI: the suites in throwaway venvs built from pyproject.toml's own ranges,
# unpinned (locks/*.in without their pins and holds), so a breaking upstream release is found on purpose.
# Prints what differs from the locks, then the suites' results. README: "Looking ahead: make test-latest".
test-latest: ui-deps
	$(LOCK) latest main $(LATEST)
	$(LOCK) latest airflow2 $(LATEST2)
	@status=0; \
	OMNI_TEST_UNLOCKED=1 $(LATEST)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) || status=1; \
	$(LATEST2)/bin/python -m pytest -q -p no:cacheprovider $(AIRFLOW2_TESTS) $(PYTEST_ARGS) || status=1; \
	$(LOCK) check main $(LATEST)/bin/python --report; $(LOCK) check airflow2 $(LATEST2)/bin/python --report; \
	exit $$status

lint: install
	$(BIN)/ruff check omni_provider tests dags bench scripts examples
	$(BIN)/ruff format --check omni_provider tests dags bench scripts examples

typecheck: install
	$(BIN)/mypy

# The browser tests (tests/ui/test_browser.py on 3.x, test_browser_airflow2.py on 2.11) need Debian's chromium
# and chromedriver. CI runs as root and gets them here; elsewhere, without root, they are skipped with a
# message (under CI=true they fail).
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

# The Airflow-facing tests again, on Airflow 2.11, with the 2.11 UI's browser test (about 30 s).
test-af2: install-af2 ui-deps
	$(BIN2)/python -m pytest -q -p no:cacheprovider $(AIRFLOW2_TESTS) $(PYTEST_ARGS)

# Only the real-browser test of the Airflow UI (about 3 minutes); screenshots in .ui-test-artifacts/ on failure.
ui-test: install ui-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/ui/test_browser.py $(PYTEST_ARGS)

# pip-installs the built wheel into a fresh stock Airflow venv for each locks/stock-airflow-*.in, the way the
# README tells users to (with a constraints file: ours, the lock, where a user passes Airflow's), and runs
# the example DAGs with `airflow dags test` against the emulator (slow: two fresh venvs; not in `make test`).
stock-install-check: install
	$(BIN)/python scripts/stock_install_check.py

demo: install
	$(BIN)/python scripts/demo.py

demo-dagster: install
	$(BIN)/python scripts/demo_dagster.py

bench: install
	$(BIN)/python bench/bench_sync.py
	$(BIN)/python bench/bench_plan.py
	$(BIN)/python bench/bench_groups.py
	$(BIN)/python bench/bench_deferrable.py

clean:
	rm -rf $(VENV) $(VENV2) $(LATEST) $(LATEST2) .demo .demo-dagster .mypy_cache .ruff_cache .pytest_cache
