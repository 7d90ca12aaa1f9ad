"""Sync Omni group membership from a warehouse table with one diffing task.

The table ``group_memberships`` holds one row per (email, team). The managed groups become exactly the
table's (mirror mode): members are added and removed with one PATCH per changed group, never a PUT that
would replace the member list; groups missing in Omni are created. Other groups are never touched. The
per-membership outcome goes to ``$OMNI_SYNC_REPORT_DIR/omni_groups_<run_id>.jsonl``.

Trigger form: "Dry run" previews the sync (the task log lists each change, ``group: + email`` /
``group: - email``, and nothing is written); "Max changes" is the plan's limit for this run.
"""

from __future__ import annotations

import os

from airflow.providers.common.compat.sdk import DAG, Param

from omni_provider.operators.sync_groups import SyncOmniGroupMembershipOperator

REPORT_DIR = os.environ.get("OMNI_SYNC_REPORT_DIR", "/tmp/omni-sync-reports")  # noqa: S108 - a default
#: What ``max_changes`` accepts from the form: a count, or a percentage of the managed memberships.
MAX_CHANGES_PATTERN = r"^\s*\d+(\.\d+)?\s*%?\s*$"

with DAG(
    dag_id="omni_warehouse_groups",
    description="Warehouse table -> Omni group membership, diffed, one PATCH per changed group",
    schedule=None,
    catchup=False,
    tags=["omni", "example"],
    params={
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run (preview)",
            description="Plan and log every change (group: + email / - email) without writing to Omni.",
        ),
        "max_changes": Param(
            # Explicit: the default would refuse removing more than 10% of the managed memberships.
            "25",
            type="string",
            pattern=MAX_CHANGES_PATTERN,
            title="Max changes",
            description='Refuse a plan changing more memberships than this: a count ("25") or a '
            'percentage ("10%"). Nothing is written when it is over.',
        ),
    },
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
        dry_run="{{ params.dry_run }}",
        max_changes="{{ params.max_changes }}",
        max_failed_rows=0,
        report_path=REPORT_DIR + "/omni_groups_{{ run_id | replace(':', '') | replace('+', '_') }}.jsonl",
    )
