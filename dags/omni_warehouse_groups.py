"""Sync Omni group membership from a warehouse table with one diffing task.

The table ``group_memberships`` holds one row per (email, team). The managed groups become exactly the
table's (mirror mode): members are added and removed with one PATCH per changed group, never a PUT that
would replace the member list; groups missing in Omni are created. Other groups are never touched. The
per-membership outcome goes to ``$OMNI_SYNC_REPORT_DIR/omni_groups_<run_id>.jsonl``.
"""

from __future__ import annotations

import os

from airflow.providers.common.compat.sdk import DAG

from omni_provider.operators.sync_groups import SyncOmniGroupMembershipOperator

REPORT_DIR = os.environ.get("OMNI_SYNC_REPORT_DIR", "/tmp/omni-sync-reports")  # noqa: S108 - a default

with DAG(
    dag_id="omni_warehouse_groups",
    description="Warehouse table -> Omni group membership, diffed, one PATCH per changed group",
    schedule=None,
    catchup=False,
    tags=["omni", "example"],
) as dag:
    SyncOmniGroupMembershipOperator(
        task_id="sync_groups",
        sql="SELECT email, team FROM group_memberships",
        sql_conn_id="omni_warehouse",
        user_column="email",
        group_column="team",
        groups=["Finance", "Sales", "Engineering"],
        mode="mirror",
        create_missing_groups=True,
        # Explicit: the default would refuse removing more than 10% of the managed memberships.
        max_changes=25,
        max_failed_rows=0,
        report_path=REPORT_DIR + "/omni_groups_{{ run_id | replace(':', '') | replace('+', '_') }}.jsonl",
    )
