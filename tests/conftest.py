"""Test-wide setup: an isolated AIRFLOW_HOME before Airflow is imported, and shared fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="omni-provider-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_ROOT / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
# dag.test() only runs DAGs it finds in a configured bundle: the example DAGs, plus the test DAGs.
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(_ROOT / "dags")},
        },
        {
            "name": "test-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(_ROOT / "tests" / "dag_fixtures")},
        },
    ]
)

import pytest  # noqa: E402 - after the environment above is set
from omni_testkit import PERSONAL_TOKEN, TEST_API_KEY, TEST_API_KEY_2, omni_connection_json  # noqa: E402

from omni_provider.emulator import EmulatorConfig, EmulatorServer  # noqa: E402


@pytest.fixture
def omni_emulator() -> Iterator[EmulatorServer]:
    """A fresh emulator on a loopback port, no rate limit (tests that need one configure it)."""
    config = EmulatorConfig(api_keys=[TEST_API_KEY, TEST_API_KEY_2], rate_limit_enabled=False)
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture
def omni_connection(omni_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """``omni_default`` pointing at the emulator, through AIRFLOW_CONN_OMNI_DEFAULT."""
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(omni_emulator.base_url))
    return omni_emulator


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    """One emulator for a whole session (with a personal token too); tests reset it through their own
    ``emulator`` fixtures."""
    config = EmulatorConfig(
        api_keys=[TEST_API_KEY, TEST_API_KEY_2], personal_tokens=[PERSONAL_TOKEN], rate_limit_enabled=False
    )
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB in the test AIRFLOW_HOME (dag.test() needs one)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return _HOME / "airflow.db"
