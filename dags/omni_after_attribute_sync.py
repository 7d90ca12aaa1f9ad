"""Runs whenever ``omni_warehouse_sync`` has synced attributes into Omni (an asset-scheduled DAG).

The sync task's outlet is the Omni users asset ``omni://<host>/users``; scheduling on the same asset
starts this DAG after each successful sync. The triggering event's ``extra`` holds the sync's counts
(``outcomes``: applied / unchanged / rejected / failed / planned) and whether it was a dry run. On Airflow
2.11 the asset is a dataset and the context key is ``triggering_dataset_events``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from airflow.providers.common.compat.sdk import DAG, task

from omni_provider.airflow_support.lineage import omni_users_asset

OMNI_HOST = os.environ.get("OMNI_HOST", "acme.omniapp.co")

with DAG(
    dag_id="omni_after_attribute_sync",
    description="Follows every Omni attribute sync (asset-scheduled)",
    schedule=[omni_users_asset(OMNI_HOST)],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),  # Airflow 2.11 wants one on a dataset-scheduled DAG
    catchup=False,
    # Unpaused on creation (Airflow pauses new DAGs by default): it only reads the triggering event, and
    # it is meant to run by itself after each sync.
    is_paused_upon_creation=False,
    tags=["omni", "example"],
) as dag:

    @task
    def summarise_sync(**context: Any) -> dict[str, Any]:
        events = context.get("triggering_asset_events") or context.get("triggering_dataset_events") or {}
        synced = [dict(event.extra or {}) for asset_events in events.values() for event in asset_events]
        real = [extra for extra in synced if not extra.get("dry_run")]
        applied = sum(int(extra.get("outcomes", {}).get("applied", 0)) for extra in real)
        print(f"{len(synced)} sync event(s), {applied} user(s) changed in Omni")
        # e.g. refresh an Omni model, notify the data team, or check a sample of users here
        return {"events": len(synced), "applied": applied}

    summarise_sync()
