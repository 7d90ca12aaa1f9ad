"""Review before it writes: plan the warehouse -> Omni attribute sync, have a person approve the plan in
the Airflow UI, then apply exactly what was approved.

Airflow 3.1+ (the standard provider's ``ApprovalOperator``): one DAG, ``omni_reviewed_sync``:

    plan (PlanOmniUserAttributesOperator: reads, plans, checks the guards, writes nothing, stores the plan)
      -> approve (ApprovalOperator: the plan's review as the body; Approve or Reject in "Required Actions")
      -> apply (ApplyOmniPlanOperator: the approved plan_digest; skipped when the reviewer rejects)

Airflow 2.11 has no human-in-the-loop operators: the same flow is two DAGs. ``omni_reviewed_sync_plan``
stores the plan and shows its review in the task log and XCom; after review, trigger
``omni_reviewed_sync_apply`` with the plan's ``plan_path`` and ``plan_digest`` as Params (the trigger
form asks for them). Either way the apply refuses a plan edited or replaced after review (its digest), one
older than 24 hours, or one made for another Omni, and skips users changed in Omni since the plan.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.providers.common.compat.sdk import DAG

from omni_provider.operators.apply_plan import ApplyOmniPlanOperator
from omni_provider.operators.plan import PlanOmniUserAttributesOperator

try:  # Airflow 3.1+ with the standard provider
    from airflow.providers.standard.operators.hitl import ApprovalOperator
except Exception:  # Airflow 2.11 (ImportError, or the provider's "needs Airflow 3.1+"): two DAGs below
    ApprovalOperator = None

STATE_DIR = os.environ.get("OMNI_SYNC_STATE_DIR", "/tmp/omni-sync-state")  # noqa: S108 - a default
REPORT_DIR = os.environ.get("OMNI_SYNC_REPORT_DIR", "/tmp/omni-sync-reports")  # noqa: S108 - a default
ATTRIBUTES = ["region", "department", "seat_tier", "cost_centre"]
SQL = "SELECT email, region, department, seat_tier, cost_centre FROM user_attributes WHERE active = 1"
#: What every DAG of this file shares: started by hand (or by the warehouse's own schedule upstream).
COMMON: dict[str, object] = {"schedule": None, "catchup": False, "tags": ["omni", "example", "review"]}


def plan_task(**kwargs: object) -> PlanOmniUserAttributesOperator:
    """The sync's arguments, plus where the plan goes: one file per DAG run."""
    return PlanOmniUserAttributesOperator(
        task_id="plan",
        sql=SQL,
        sql_conn_id="omni_warehouse",
        key_column="email",
        attributes=ATTRIBUTES,
        mode="update",
        max_changes="50%",
        plan_path=STATE_DIR + "/plans/",  # a folder: <dag>.<task>.<run id>.plan.json
        **kwargs,  # type: ignore[arg-type]
    )


def apply_task(plan_path: str, plan_digest: str) -> ApplyOmniPlanOperator:
    return ApplyOmniPlanOperator(
        task_id="apply",
        plan_path=plan_path,
        plan_digest=plan_digest,  # the digest the reviewer saw: an edited or replaced plan is refused
        max_age=timedelta(hours=24),
        report_path=REPORT_DIR + "/",
    )


if ApprovalOperator is not None:
    with DAG(
        dag_id="omni_reviewed_sync",
        description="Warehouse -> Omni user attributes: plan, approve in the UI, apply exactly the plan",
        **COMMON,
    ) as reviewed:
        plan = plan_task()
        approve = ApprovalOperator(
            task_id="approve",
            subject="Apply this Omni user attribute plan?",
            body="{{ ti.xcom_pull(task_ids='plan', key='review') }}",
            response_timeout=timedelta(hours=23),  # within the apply's max_age
        )
        apply = apply_task(
            "{{ ti.xcom_pull(task_ids='plan', key='plan_path') }}",
            "{{ ti.xcom_pull(task_ids='plan', key='plan_digest') }}",
        )
        plan >> approve >> apply
else:
    from airflow.models.param import Param

    with DAG(
        dag_id="omni_reviewed_sync_plan",
        description="Warehouse -> Omni user attributes: the plan to review (then trigger ..._apply)",
        **COMMON,
    ) as plan_dag:
        plan_task()

    with DAG(
        dag_id="omni_reviewed_sync_apply",
        description="Apply a reviewed Omni plan: its path and approved digest as Params",
        **COMMON,
        params={
            "plan_path": Param("", type="string", description="plan_path from the plan task's XCom"),
            "plan_digest": Param("", type="string", description="plan_digest from the plan task's XCom"),
        },
    ) as apply_dag:
        apply_task("{{ params.plan_path }}", "{{ params.plan_digest }}")
