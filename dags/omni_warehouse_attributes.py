"""Push user attributes from a warehouse table into Omni, one mapped task per user.

The SQL runs on any common-sql connection (``omni_warehouse``; the demo points it at a SQLite file).
One task instance per user is right for tens of users; for whole tables use the
``omni_warehouse_sync`` DAG, which diffs and paces a single task.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import DAG, task
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

from omni_provider.airflow_support.sql_rows import rows_as_dicts
from omni_provider.operators.update_user import UpdateOmniUserOperator

ATTRIBUTE_COLUMNS = ("region", "department", "seat_tier")

with DAG(
    dag_id="omni_warehouse_attributes",
    description="Warehouse -> Omni user attributes, a task per user",
    schedule=None,
    catchup=False,
    tags=["omni", "example"],
) as dag:
    read_users = SQLExecuteQueryOperator(
        task_id="read_users",
        conn_id="omni_warehouse",
        sql="SELECT email, region, department, seat_tier FROM user_attributes WHERE active = 1",
        output_processor=rows_as_dicts,
    )

    @task
    def to_update_kwargs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"user_name": row["email"], "attributes": {col: row[col] for col in ATTRIBUTE_COLUMNS}}
            for row in rows
        ]

    UpdateOmniUserOperator.partial(
        task_id="update_user",
        max_active_tis_per_dag=2,  # the API key's rate limit is shared by all of them anyway
        map_index_template="{{ task.user_name }}",
    ).expand_kwargs(to_update_kwargs(read_users.output))
