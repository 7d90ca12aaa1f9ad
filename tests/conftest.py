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

from omni_provider.emulator import EmulatorConfig, EmulatorServer  # noqa: E402

#: Long enough for Airflow's masker (min 5 chars) and distinctive enough to grep for.
TEST_API_KEY = "omni-test-key-7f3a9c1e5b"
TEST_API_KEY_2 = "omni-test-key-2-d41c8e0b77"


@pytest.fixture
def omni_emulator() -> Iterator[EmulatorServer]:
    """A fresh emulator on a loopback port, no rate limit (tests that need one configure it)."""
    config = EmulatorConfig(api_keys=[TEST_API_KEY, TEST_API_KEY_2], rate_limit_enabled=False)
    with EmulatorServer(config) as server:
        yield server


def omni_connection_json(base_url: str, key: str = TEST_API_KEY, **extra: object) -> str:
    extras = {"rate_limit_per_minute": 1_000_000, **extra}
    return json.dumps({"conn_type": "omni", "host": base_url, "password": key, "extra": extras})


@pytest.fixture
def omni_connection(omni_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """``omni_default`` pointing at the emulator, through AIRFLOW_CONN_OMNI_DEFAULT."""
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(omni_emulator.base_url))
    return omni_emulator


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB in the test AIRFLOW_HOME (dag.test() needs one)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return _HOME / "airflow.db"
