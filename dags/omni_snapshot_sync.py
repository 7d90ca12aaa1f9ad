"""The warehouse sync for large organisations: diffed against a snapshot, so most runs list no users.

The same table and attributes as ``omni_warehouse_sync``, with ``diff_against="snapshot"``: the first run
(and every 7th, and any run whose snapshot is missing or unusable) lists every Omni user and writes the
snapshot; the runs between diff against it and send only the attribute definitions' read, the changed
rows, and one look-up per row Omni's snapshot does not know. The summary's ``diff_against`` and
``diff_reason`` say which it was; a full run reports users changed outside the sync (``drift``).

The snapshot is ``$OMNI_SYNC_STATE_DIR/omni_snapshot_sync.json`` (any ObjectStoragePath URL works, e.g.
``s3://bucket/omni-state/``); one file per sync, and one run at a time (``max_active_runs=1``).
"""

from __future__ import annotations

import os

from airflow.providers.common.compat.sdk import DAG

from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator

STATE_DIR = os.environ.get("OMNI_SYNC_STATE_DIR", "/tmp/omni-sync-state")  # noqa: S108 - a default
REPORT_DIR = os.environ.get("OMNI_SYNC_REPORT_DIR", "/tmp/omni-sync-reports")  # noqa: S108 - a default

with DAG(
    dag_id="omni_snapshot_sync",
    description="Warehouse table -> Omni user attributes, diffed against the last run's snapshot",
    schedule=None,
    catchup=False,
    max_active_runs=1,  # two runs at once would share one snapshot
    tags=["omni", "example"],
) as dag:
    SyncOmniUserAttributesOperator(
        task_id="sync_attributes",
        sql="SELECT email, region, department, seat_tier, cost_centre FROM user_attributes WHERE active = 1",
        sql_conn_id="omni_warehouse",
        key_column="email",
        attributes=["region", "department", "seat_tier", "cost_centre"],
        mode="update",
        max_changes="50%",
        diff_against="snapshot",
        snapshot_path=STATE_DIR + "/omni_snapshot_sync.json",
        full_resync_every=7,
        report_path=REPORT_DIR + "/",
    )
