"""Where a sync operator's input rows come from: a list of dicts (or its JSON, or an XComArg's value), or a
SQL query run on any common-sql connection and streamed in batches (large tables never pass through XCom)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from omni_provider._compat import BaseHook
from omni_provider.airflow_support.templating import parse_structure
from omni_provider.client import OmniValidationError


def check_sources(rows: object, sql: str | None, sql_conn_id: str | None, batch_size: int) -> None:
    if (rows is None) == (sql is None):
        raise OmniValidationError("give exactly one of rows (a list of dicts) or sql (with sql_conn_id)")
    if sql is not None and not sql_conn_id:
        raise OmniValidationError("sql needs sql_conn_id (any common-sql connection)")
    if batch_size < 1:
        raise OmniValidationError("sql_batch_size must be positive")


def read_rows(
    rows: object, sql: str | None, sql_conn_id: str | None, batch_size: int
) -> list[Mapping[str, Any]]:
    if sql is not None:
        return list(query_rows(sql, str(sql_conn_id), batch_size))
    if isinstance(rows, str):
        rows = parse_structure(rows, what="rows")
    if not isinstance(rows, Sequence) or isinstance(rows, str | bytes):
        raise OmniValidationError(f"rows must be a list of dicts, got {type(rows).__name__}")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise OmniValidationError(
                f"row {number} is a {type(row).__name__}, not a dict of column -> value; with "
                "SQLExecuteQueryOperator pass "
                "output_processor=omni_provider.airflow_support.sql_rows.rows_as_dicts"
            )
    return list(rows)


def query_rows(sql: str, sql_conn_id: str, batch_size: int) -> Iterator[dict[str, Any]]:
    """Run ``sql`` on the common-sql connection and stream its rows in batches."""
    hook = BaseHook.get_connection(sql_conn_id).get_hook()  # type: ignore[no-untyped-call]
    if not hasattr(hook, "get_conn"):
        raise OmniValidationError(f"connection {sql_conn_id!r} is not a SQL connection")
    conn = hook.get_conn()
    try:
        cursor = conn.cursor()
        try:
            cursor.execute(sql)
            columns = [str(col[0]) for col in cursor.description or []]
            while batch := cursor.fetchmany(batch_size):
                for row in batch:
                    yield dict(zip(columns, row, strict=True))
        finally:
            cursor.close()
    finally:
        conn.close()
