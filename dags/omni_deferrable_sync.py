"""The warehouse sync of ``omni_warehouse_sync`` as a deferrable task: it holds no worker slot while Omni's
rate window is full.

With ``deferrable=True`` the task sends what the window allows now; when the next request would wait at
least ``min_defer_seconds`` it saves the run's state (``state_path``: the plan, the outcomes so far) and
defers to a ``DateTimeTrigger`` for the moment the window is empty again. The triggerer waits; a worker
then runs ``execute_complete``, which goes on from the state. The summary (XCom), the per-row report, the
lineage and the asset event are those of a run that did not defer, plus ``deferrals``.
``execution_timeout`` counts across the deferrals.

``OMNI_DEFERRABLE_CONN_ID`` names the Omni connection (default ``omni_default``); the demo gives it a small
limit and a short window (5 requests per 20 s) so a few writes defer several times.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.providers.common.compat.sdk import DAG

from omni_provider.airflow_support.lineage import omni_users_asset
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator

REPORT_DIR = os.environ.get("OMNI_SYNC_REPORT_DIR", "/tmp/omni-sync-reports")  # noqa: S108 - a default
STATE_DIR = os.environ.get("OMNI_SYNC_STATE_DIR", REPORT_DIR)
OMNI_HOST = os.environ.get("OMNI_HOST", "acme.omniapp.co")
CONN_ID = os.environ.get("OMNI_DEFERRABLE_CONN_ID", "omni_default")

with DAG(
    dag_id="omni_deferrable_sync",
    description="Warehouse table -> Omni user attributes, deferring while the rate window is full",
    schedule=None,
    catchup=False,
    tags=["omni", "example"],
) as dag:
    SyncOmniUserAttributesOperator(
        task_id="sync_attributes",
        sql="SELECT email, region, department, seat_tier, cost_centre FROM user_attributes WHERE active = 1",
        sql_conn_id="omni_warehouse",
        omni_conn_id=CONN_ID,
        key_column="email",
        attributes=["region", "department", "seat_tier", "cost_centre"],
        max_changes="90%",
        outlets=[omni_users_asset(OMNI_HOST)],
        report_path=REPORT_DIR + "/",
        deferrable=True,
        state_path=STATE_DIR + "/",  # a folder: one state file per run, found again by a retry
        execution_timeout=timedelta(hours=6),  # counted across the deferrals
    )
