"""Run ``dag.test()`` in a child Python process (import as ``airflow_subprocess_kit``).

For tests that need what only a fresh process gives: Airflow's logging configured at DEBUG from the start,
Airflow's own SIGTERM handler around a running task, everything the process prints. The child gets its own
AIRFLOW_HOME holding a copy of the session's migrated metadata DB (no 10 s ``airflow db migrate``), so its
DB and log files can be inspected afterwards without anything from other tests in them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: The child's program: run each step's DAG with ``dag.test()``, one result line per step.
RUNNER = r"""
import json, os, sys, urllib.request
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 2.11
    from airflow.models.dagbag import DagBag

for step in json.loads(sys.argv[1]):
    os.environ.update(step.get("env", {}))
    if step.get("emulator_config") is not None:  # the emulator's admin route (loopback, no auth)
        request = urllib.request.Request(
            step["emulator_url"] + "/_emulator/config",
            data=json.dumps(step["emulator_config"]).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).read()
    bag = DagBag(step["folder"])
    assert not bag.import_errors, bag.import_errors
    run = bag.get_dag(step["dag_id"]).test(run_conf=step.get("conf"))
    print("OMNI-STEP-RESULT " + json.dumps({"dag_id": step["dag_id"], "run_id": run.run_id,
                                            "state": str(run.state)}), flush=True)
"""


def child_home(tmp_path: Path, migrated_db: Path) -> Path:
    home = tmp_path / "airflow-home"
    home.mkdir()
    shutil.copyfile(migrated_db, home / "airflow.db")
    return home


def child_env(home: Path, bundles: Sequence[Path], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child Airflow process with its own home and DAG bundles."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "AIRFLOW__CORE__DAGS_FOLDER": str(bundles[0]),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                [
                    {
                        "name": f"bundle-{i}",
                        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                        "kwargs": {"path": str(path)},
                    }
                    for i, path in enumerate(bundles)
                ]
            ),
            "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }
    )
    env.update(extra or {})
    return env


def start_runner(steps: Sequence[Mapping[str, Any]], env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, json.dumps(list(steps))],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(ROOT),
    )


def step_results(output: str) -> list[dict[str, Any]]:
    prefix = "OMNI-STEP-RESULT "
    return [json.loads(line[len(prefix) :]) for line in output.splitlines() if line.startswith(prefix)]
