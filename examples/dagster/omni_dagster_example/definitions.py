"""A warehouse table of user attributes, and the Omni users kept in line with it.

Settings come from the environment, read when a run starts (``make demo-dagster`` sets them all against
the local Omni emulator):

* ``OMNI_HOST``: the Omni instance URL; ``OMNI_API_KEY``: an Organization API key (never shown in the UI:
  it is an ``EnvVar``);
* ``OMNI_EXAMPLE_WAREHOUSE``: a SQLite file with a ``user_attributes`` table (email, region, department,
  seat_tier, cost_centre); a real project reads its warehouse through its own resource;
* ``OMNI_SYNC_REPORT_DIR``: where each run's per-row report goes (default ``omni-reports``);
* ``OMNI_RATE_LIMIT_PER_MINUTE``: the key's rate limit (default 60, Omni's).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from typing import Any

import dagster as dg

from omni_provider.dagster import OmniScimResource, build_omni_user_attributes_asset

ATTRIBUTES = ["region", "department", "seat_tier", "cost_centre"]


@dg.asset(group_name="omni", kinds={"sqlite"})
def warehouse_user_attributes() -> list[dict[str, Any]]:
    """One row per person: the warehouse's truth about their Omni attributes."""
    with closing(sqlite3.connect(os.environ["OMNI_EXAMPLE_WAREHOUSE"])) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(f"SELECT email, {', '.join(ATTRIBUTES)} FROM user_attributes ORDER BY email")
        return [dict(row) for row in rows]


omni_user_attributes = build_omni_user_attributes_asset(
    "omni_user_attributes",
    source="warehouse_user_attributes",
    attributes=ATTRIBUTES,
    key_column="email",
    mode="update",
    # Refuse a run that would rewrite more than half of Omni's users (a broken upstream query).
    max_changes="50%",
    report_path=os.path.join(os.environ.get("OMNI_SYNC_REPORT_DIR", "omni-reports"), "omni-{run_id}.jsonl"),
    group_name="omni",
)

# A preview from the UI: Jobs -> preview_omni_user_attributes -> Launch. The same asset with the launch
# config ``dry_run: true``: its run log and materialization list each planned change, nothing is written.
# (Any launch of the asset may set ``dry_run`` and ``max_changes`` in the launchpad the same way.)
preview_omni_user_attributes = dg.define_asset_job(
    "preview_omni_user_attributes",
    selection=[warehouse_user_attributes, omni_user_attributes],
    config={"ops": {"omni_user_attributes": {"config": {"dry_run": True}}}},
    description="Dry run of omni_user_attributes: lists what would change in Omni, writes nothing.",
)

defs = dg.Definitions(
    assets=[warehouse_user_attributes, omni_user_attributes],
    jobs=[preview_omni_user_attributes],
    resources={
        "omni": OmniScimResource(
            host=dg.EnvVar("OMNI_HOST"),
            api_key=dg.EnvVar("OMNI_API_KEY"),
            # Omni allows 60 requests a minute per key unless support raised it.
            rate_limit_per_minute=float(os.environ.get("OMNI_RATE_LIMIT_PER_MINUTE", "60")),
        )
    },
)
