"""The example ``omni_reviewed_sync`` against the emulator: on Airflow 3 plan -> approve -> apply (the
approval given here by marking the approval task done: ``make demo`` gives it through the REST API), on
Airflow 2.11 the two DAGs (plan; apply triggered with the plan's path and digest as Params)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import airflow_testkit
import pytest
from omni_testkit import make_warehouse

from omni_provider._compat import AIRFLOW_V_3_0_PLUS
from omni_provider.emulator import EmulatorServer
from omni_provider.sync.engine.plan_artifact import PlanStore

pytestmark = pytest.mark.usefixtures("airflow_db")

DAGS = Path(__file__).resolve().parents[2] / "dags"
WAREHOUSE = [
    ("user00001@example.com", "EMEA", "Finance", "pro", 4100, 1),
    ("user00002@example.com", "AMER", "Sales", "standard", 4200, 1),
]


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = make_warehouse(tmp_path / "warehouse.db", WAREHOUSE)
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    monkeypatch.setenv("OMNI_SYNC_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("OMNI_SYNC_STATE_DIR", str(tmp_path / "state"))
    return path


def attributes_of(emu: EmulatorServer, email: str) -> dict[str, Any]:
    user = emu.state.find_by_email(email)
    assert user is not None
    return dict(user.attributes)


def patches(emu: EmulatorServer) -> int:
    return int(emu.stats.snapshot()["requests_by_method"].get("PATCH", 0))


def the_plan(state_dir: Path) -> Path:
    (plan,) = (state_dir / "plans").glob("*.plan.json")
    return plan


def test_the_reviewed_sync_dags_import_cleanly() -> None:
    bag = airflow_testkit.DagBag(str(DAGS))
    assert not bag.import_errors
    if AIRFLOW_V_3_0_PLUS:
        dag = bag.get_dag("omni_reviewed_sync")
        assert [t.task_id for t in dag.topological_sort()] == ["plan", "approve", "apply"]
        assert type(dag.get_task("approve")).__name__ == "ApprovalOperator"
    else:
        assert {"omni_reviewed_sync_plan", "omni_reviewed_sync_apply"} <= set(bag.dag_ids)


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="the one-DAG flow needs Airflow 3.1+ (HITL)")
def test_plan_approve_apply(omni_connection: EmulatorServer, warehouse: Path) -> None:
    emu = omni_connection
    emu.state.seed_users(6)  # 2 writes of 6 users: within max_changes="50%"
    dag = airflow_testkit.load_dag("omni_reviewed_sync", str(DAGS))
    run = dag.test(mark_success_pattern="approve")
    assert run.state == "success"
    assert attributes_of(emu, "user00001@example.com")["region"] == "EMEA"
    assert attributes_of(emu, "user00002@example.com")["region"] == "AMER"
    assert patches(emu) == 2
    # The apply used the plan task's digest: the plan on disk is the one that was applied.
    plan = PlanStore(the_plan(warehouse.parent / "state")).load()
    assert len(plan.items) == 2
    assert "approve" in {t.task_id for t in run.get_task_instances()}


@pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="the two-DAG flow is the Airflow 2.11 example")
def test_plan_dag_then_apply_dag_with_params(omni_connection: EmulatorServer, warehouse: Path) -> None:
    emu = omni_connection
    emu.state.seed_users(6)  # 2 writes of 6 users: within max_changes="50%"
    plan_run = airflow_testkit.load_dag("omni_reviewed_sync_plan", str(DAGS)).test()
    assert plan_run.state == "success"
    assert patches(emu) == 0
    ti = plan_run.get_task_instance("plan")
    plan_path = ti.xcom_pull(task_ids="plan", key="plan_path")
    plan_digest = ti.xcom_pull(task_ids="plan", key="plan_digest")
    assert plan_path == str(the_plan(warehouse.parent / "state"))
    assert "| update | 2 |" in ti.xcom_pull(task_ids="plan", key="review")

    apply_dag = airflow_testkit.load_dag("omni_reviewed_sync_apply", str(DAGS))
    # A wrong digest (the plan replaced after review) is refused with nothing written.
    refused = apply_dag.test(run_conf={"plan_path": plan_path, "plan_digest": "sha256:" + "0" * 64})
    assert refused.state == "failed"
    assert patches(emu) == 0
    applied = apply_dag.test(run_conf={"plan_path": plan_path, "plan_digest": plan_digest})
    assert applied.state == "success"
    assert attributes_of(emu, "user00002@example.com")["region"] == "AMER"
    assert patches(emu) == 2
