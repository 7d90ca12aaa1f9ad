"""The example ``omni_reviewed_sync`` against the emulator: on Airflow 3 plan -> approve -> apply (the
approval given here by marking the approval task done: ``make demo`` gives it through the REST API), on
Airflow 2.11 the two DAGs (plan; apply triggered with the plan's path and digest as Params)."""

from __future__ import annotations

from pathlib import Path

import airflow_testkit
import pytest
from test_example_dags import attributes_of
from test_example_dags import warehouse as warehouse  # the example DAGs' warehouse fixture, shared

from omni_provider._compat import AIRFLOW_V_3_0_PLUS
from omni_provider.emulator import EmulatorServer
from omni_provider.sync.engine.plan_artifact import PlanStore

pytestmark = pytest.mark.usefixtures("airflow_db", "warehouse")

DAGS = Path(__file__).resolve().parents[2] / "dags"


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
def test_plan_approve_apply(omni_connection: EmulatorServer, tmp_path: Path) -> None:
    emu = omni_connection
    emu.state.seed_users(6)  # 3 writes (the warehouse's active rows) of 6 users: within max_changes="50%"
    dag = airflow_testkit.load_dag("omni_reviewed_sync", str(DAGS))
    run = dag.test(mark_success_pattern="approve")
    assert run.state == "success"
    assert attributes_of(emu, "user00001@example.com")["region"] == "EMEA"
    assert attributes_of(emu, "user00002@example.com")["region"] == "AMER"
    assert attributes_of(emu, "user00004@example.com")["region"] == "us-east"  # inactive: not in the plan
    assert patches(emu) == 3
    # The apply used the plan task's digest: the plan on disk is the one that was applied.
    plan = PlanStore(the_plan(tmp_path / "state")).load()
    assert len(plan.items) == 3
    assert "approve" in {t.task_id for t in run.get_task_instances()}


@pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="the two-DAG flow is the Airflow 2.11 example")
def test_plan_dag_then_apply_dag_with_params(omni_connection: EmulatorServer, tmp_path: Path) -> None:
    emu = omni_connection
    emu.state.seed_users(6)  # 3 writes (the warehouse's active rows) of 6 users: within max_changes="50%"
    plan_run = airflow_testkit.load_dag("omni_reviewed_sync_plan", str(DAGS)).test()
    assert plan_run.state == "success"
    assert patches(emu) == 0
    ti = plan_run.get_task_instance("plan")
    plan_path = ti.xcom_pull(task_ids="plan", key="plan_path")
    plan_digest = ti.xcom_pull(task_ids="plan", key="plan_digest")
    assert plan_path == str(the_plan(tmp_path / "state"))
    assert "| update | 3 |" in ti.xcom_pull(task_ids="plan", key="review")

    apply_dag = airflow_testkit.load_dag("omni_reviewed_sync_apply", str(DAGS))
    # A wrong digest (the plan replaced after review) is refused with nothing written.
    refused = apply_dag.test(run_conf={"plan_path": plan_path, "plan_digest": "sha256:" + "0" * 64})
    assert refused.state == "failed"
    assert patches(emu) == 0
    applied = apply_dag.test(run_conf={"plan_path": plan_path, "plan_digest": plan_digest})
    assert applied.state == "success"
    assert attributes_of(emu, "user00002@example.com")["region"] == "AMER"
    assert patches(emu) == 3
