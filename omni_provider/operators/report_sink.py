"""Where a sync's per-row report goes: a JSON-lines file (any ObjectStoragePath URL) or a SQL table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from omni_provider._compat import BaseHook, object_storage_path
from omni_provider.client import OmniValidationError
from omni_provider.sync.outcome import RowOutcome, write_jsonl

REPORT_COLUMNS = ("run_id", "row_number", "match_key", "action", "status", "user_id", "changed", "error")


def _storage_url(path: str) -> str:
    # A bare path means the worker's local disk; ObjectStoragePath wants a scheme for that.
    return path if "://" in path else Path(path).expanduser().resolve().as_uri()


def write_report_file(path: str, outcomes: Sequence[RowOutcome]) -> str:
    """Write one JSON object per row; returns the URL written."""
    url = _storage_url(path)
    target = object_storage_path(url)  # Airflow's fsspec layer: s3://, gs://, file://...
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w") as stream:
        write_jsonl(outcomes, stream)
    return url


def check_report_table(table: str) -> None:
    """Refuse anything but a plain ``[[database.]schema.]table`` name: it is spliced into SQL text."""
    parts = table.split(".") if isinstance(table, str) else []
    if not 1 <= len(parts) <= 3 or not all(p.isascii() and p.replace("_", "").isalnum() for p in parts):
        raise OmniValidationError(f"report_table {table!r} must be a plain [[database.]schema.]table name")


def write_report_table(conn_id: str, table: str, run_id: str, outcomes: Sequence[RowOutcome]) -> None:
    """Insert the rows through the connection's common-sql hook (the table is created if missing)."""
    check_report_table(table)
    hook = BaseHook.get_connection(conn_id).get_hook()  # type: ignore[no-untyped-call]
    if not hasattr(hook, "insert_rows"):
        raise OmniValidationError(f"connection {conn_id!r} is not a SQL connection (no insert_rows)")
    columns = ", ".join(f"{c} {'INTEGER' if c == 'row_number' else 'VARCHAR(2000)'}" for c in REPORT_COLUMNS)
    hook.run(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    rows = [
        (
            run_id,
            o.row,
            o.key,
            o.action,
            o.status.value,
            o.user_id,
            json.dumps(list(o.changed)),
            (o.error or "")[:2000] or None,
        )
        for o in outcomes
    ]
    hook.insert_rows(table, rows, target_fields=list(REPORT_COLUMNS), commit_every=1000)
