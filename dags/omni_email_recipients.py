"""Sync the attributes of Omni's email-only recipients (people who get deliveries without an Omni login)
from a warehouse table, 20 recipients per request.

The table ``delivery_recipients`` holds one row per partner: the region and tier their scheduled
deliveries are filtered by. Missing recipients are created (upsert mode); a recipient that already holds
those values gets no request; attributes the table does not manage (set by hand in Omni) are kept. The
per-row outcome goes to ``$OMNI_SYNC_REPORT_DIR/omni_recipients_<run_id>.jsonl``.
"""

from __future__ import annotations

import os

from airflow.providers.common.compat.sdk import DAG

from omni_provider.operators.sync_recipients import SyncOmniEmailRecipientsOperator

REPORT_DIR = os.environ.get("OMNI_SYNC_REPORT_DIR", "/tmp/omni-sync-reports")  # noqa: S108 - a default

with DAG(
    dag_id="omni_email_recipients",
    description="Warehouse table -> Omni email-only recipients' attributes, diffed, 20 per request",
    schedule=None,
    catchup=False,
    tags=["omni", "example"],
) as dag:
    SyncOmniEmailRecipientsOperator(
        task_id="sync_recipients",
        sql="SELECT email, region, partner_tier FROM delivery_recipients",
        sql_conn_id="omni_warehouse",
        attributes={"region": "region", "partner_tier": "seat_tier"},
        mode="upsert",
        max_failed_rows=0,
        report_path=REPORT_DIR + "/omni_recipients_{{ run_id | replace(':', '') | replace('+', '_') }}.jsonl",
    )
