"""Test-wide setup: an isolated AIRFLOW_HOME before Airflow is imported, and shared fixtures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="omni-provider-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parent.parent / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"

#: Long enough for Airflow's masker (min 5 chars) and distinctive enough to grep for.
TEST_API_KEY = "omni-test-key-7f3a9c1e5b"
TEST_API_KEY_2 = "omni-test-key-2-d41c8e0b77"
