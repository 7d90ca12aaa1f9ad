"""Sync a warehouse table into Omni user attributes with one diffing, paced task.

Reads the table through any common-sql connection (``omni_warehouse``; the demo points it at a SQLite
file), compares with every Omni user, and sends only what differs, at the connection's rate limit. The
per-row outcome goes to ``$OMNI_SYNC_REPORT_DIR/<dag>.<task>.<run id>.try<n>.jsonl`` (a folder ending in
``/``; any ObjectStoragePath URL works), so a retry never overwrites an earlier try's report.

The task's outlet is the Omni users asset (``omni://<host>/users``, a dataset on Airflow 2.11): when it
succeeds, Airflow records an asset event carrying the sync's counts, and ``omni_after_attribute_sync``
runs. ``OMNI_HOST`` names the instance of the ``omni_default`` connection.

Trigger form: "Dry run" previews the sync (the task log lists each change ``email: attribute old -> new``
and nothing is written); "Max changes" is the plan's write limit for this run. Unattended runs
(``airflow dags test``, a schedule) take the defaults: a real sync within the 50% limit.
"""

from __future__ import annotations

import os

from airflow.providers.common.compat.sdk import DAG, Param

from omni_provider.airflow_support.lineage import omni_users_asset
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator

REPORT_DIR = os.environ.get("OMNI_SYNC_REPORT_DIR", "/tmp/omni-sync-reports")  # noqa: S108 - a default
OMNI_HOST = os.environ.get("OMNI_HOST", "acme.omniapp.co")
#: What ``max_changes`` accepts from the form: a count, or a percentage of Omni's users.
MAX_CHANGES_PATTERN = r"^\s*\d+(\.\d+)?\s*%?\s*$"

with DAG(
    dag_id="omni_warehouse_sync",
    description="Warehouse table -> Omni user attributes, diffed and paced",
    schedule=None,
    catchup=False,
    tags=["omni", "example"],
    params={
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run (preview)",
            description="Plan and log every change (email: attribute old -> new) without writing to Omni.",
        ),
        "max_changes": Param(
            "50%",  # a broken query must not rewrite most of the company
            type="string",
            pattern=MAX_CHANGES_PATTERN,
            title="Max changes",
            description='Refuse a plan writing more users than this: a count ("25") or a percentage of '
            'Omni\'s users ("10%"). Nothing is written when it is over.',
        ),
    },
) as dag:
    SyncOmniUserAttributesOperator(
        task_id="sync_attributes",
        sql="SELECT email, region, department, seat_tier, cost_centre FROM user_attributes WHERE active = 1",
        sql_conn_id="omni_warehouse",
        match_on="userName",
        key_column="email",
        attributes=["region", "department", "seat_tier", "cost_centre"],
        mode="update",
        dry_run="{{ params.dry_run }}",
        max_changes="{{ params.max_changes }}",
        max_failed_rows=0,
        outlets=[omni_users_asset(OMNI_HOST)],  # "Omni attributes were synced" for downstream DAGs
        report_path=REPORT_DIR + "/",  # a folder: one report per try, named after the run and the try
    )
