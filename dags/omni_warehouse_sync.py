"""Sync a warehouse table into Omni user attributes with one diffing, paced task.

Reads the table through any common-sql connection (``omni_warehouse``; the demo points it at a SQLite
file), compares with every Omni user, and sends only what differs, at the connection's rate limit. The
per-row outcome goes to ``$OMNI_SYNC_REPORT_DIR/<dag>.<task>.<run id>.try<n>.jsonl`` (a folder ending in
``/``; any ObjectStoragePath URL works), so a retry never overwrites an earlier try's report.

The task's outlet is the Omni users asset (``omni://<host>/users``, a dataset on Airflow 2.11): when it
succeeds, Airflow records an asset event carrying the sync's counts, and ``omni_after_attribute_sync``
runs. ``OMNI_HOST`` names the instance of the ``omni_default`` connection.
"""

from __future__ import annotations

import os

from airflow.providers.common.compat.sdk import DAG

from omni_provider.airflow_support.lineage import omni_users_asset
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator

REPORT_DIR = os.environ.get("OMNI_SYNC_REPORT_DIR", "/tmp/omni-sync-reports")  # noqa: S108 - a default
OMNI_HOST = os.environ.get("OMNI_HOST", "acme.omniapp.co")

with DAG(
    dag_id="omni_warehouse_sync",
    description="Warehouse table -> Omni user attributes, diffed and paced",
    schedule=None,
    catchup=False,
    tags=["omni", "example"],
) as dag:
    SyncOmniUserAttributesOperator(
        task_id="sync_attributes",
        sql="SELECT email, region, department, seat_tier, cost_centre FROM user_attributes WHERE active = 1",
        sql_conn_id="omni_warehouse",
        match_on="userName",
        key_column="email",
        attributes=["region", "department", "seat_tier", "cost_centre"],
        mode="update",
        max_changes="50%",  # a broken query must not rewrite most of the company
        max_failed_rows=0,
        outlets=[omni_users_asset(OMNI_HOST)],  # "Omni attributes were synced" for downstream DAGs
        report_path=REPORT_DIR + "/",  # a folder: one report per try, named after the run and the try
    )
