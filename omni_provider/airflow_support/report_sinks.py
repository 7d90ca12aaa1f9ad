"""Where a sync's per-row report goes: a JSON-lines file (any ObjectStoragePath URL) or a SQL table.

The report is the run's audit trail, so three rules hold:

- The location is checked before the sync sends anything (``check_report_location``): a local directory
  must be creatable and writable (a probe file is created and removed), a URL's fsspec backend must be
  installed and the location readable with the worker's credentials (one ``exists`` call); a report
  table is created if missing (``check_report_table_location``), which proves the connection works.
- An existing report is never replaced (the engine's rule, ``sync.engine.files.write_beside``): a task
  retry or a cleared task with the same run id writes under a fresh name that carries the try number, and
  the name actually used is returned.
- If the report still cannot be written, the outcomes go to a local fallback file
  (``write_fallback_report``) whose path the operator logs and puts in its summary.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from omni_provider._compat import BaseHook, object_storage_path
from omni_provider.client import OmniValidationError
from omni_provider.sync.engine.files import (
    ReportLocationError,
    check_writable_directory,
    is_url,
    local_path,
    open_new,
    write_beside,
)
from omni_provider.sync.engine.outcome import ReportRecord, write_jsonl

REPORT_COLUMNS = ("run_id", "row_number", "match_key", "action", "status", "user_id", "changed", "error")
#: Where the outcomes go when the configured report cannot be written (on the worker's local disk).
DEFAULT_FALLBACK_DIR = Path(tempfile.gettempdir()) / "omni-sync-reports"
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class ReportNaming:
    """What a report's default file name is made of: the task instance and its try number."""

    dag_id: str
    task_id: str
    run_id: str
    try_number: int | None = None
    map_index: int = -1

    @classmethod
    def from_context(cls, context: Mapping[str, Any], task_id: str) -> ReportNaming:
        ti = context.get("ti")
        dag = context.get("dag")
        dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or "dag"
        try_number = getattr(ti, "try_number", None)
        map_index = getattr(ti, "map_index", -1)
        return cls(
            dag_id=str(dag_id),
            task_id=str(getattr(ti, "task_id", None) or task_id),
            run_id=str(context.get("run_id") or getattr(ti, "run_id", None) or "run"),
            try_number=try_number if isinstance(try_number, int) else None,
            map_index=map_index if isinstance(map_index, int) else -1,
        )

    def file_name(self, suffix: str = ".jsonl") -> str:
        """``<dag>.<task>[.map<i>].<run id>.try<n>.jsonl`` (or another ``suffix``); characters unsafe in a
        path become ``_``."""
        parts = [self.dag_id, self.task_id]
        if self.map_index >= 0:
            parts.append(f"map{self.map_index}")
        parts.append(self.run_id)
        if self.try_number is not None:
            parts.append(f"try{self.try_number}")
        return ".".join(_UNSAFE_NAME_CHARS.sub("_", part) for part in parts) + suffix


def report_target(report_path: str, naming: ReportNaming, suffix: str = ".jsonl") -> str:
    """The file to write: ``report_path`` itself, or the default name inside it when it ends with ``/``."""
    if report_path.endswith("/") or (not is_url(report_path) and local_path(report_path).is_dir()):
        return report_path.rstrip("/") + "/" + naming.file_name(suffix)
    return report_path


def check_url_location(target: str, what: str) -> None:
    """Raise ``ReportLocationError`` unless Airflow's storage layer can reach ``target`` (a URL)."""
    _check_url(target, what)


def check_report_location(target: str) -> None:
    """Raise ``ReportLocationError`` unless the report can plausibly be written there. No Omni request."""
    if is_url(target):
        _check_url(target)
    else:
        check_writable_directory(local_path(target).parent, target)


#: Where Airflow's filesystem for a scheme comes from, for the error message.
_SCHEME_PROVIDERS = {
    "s3": "apache-airflow-providers-amazon (s3fs)",
    "s3a": "apache-airflow-providers-amazon (s3fs)",
    "gs": "apache-airflow-providers-google (gcsfs)",
    "gcs": "apache-airflow-providers-google (gcsfs)",
    "abfs": "apache-airflow-providers-microsoft-azure (adlfs)",
    "abfss": "apache-airflow-providers-microsoft-azure (adlfs)",
    "az": "apache-airflow-providers-microsoft-azure (adlfs)",
}


def _check_url(target: str, what: str = "report_path") -> None:
    scheme = target.split("://", 1)[0].lower()
    needs = _SCHEME_PROVIDERS.get(scheme, "the Airflow provider or fsspec package for it")
    try:
        path = object_storage_path(target)  # Airflow's fsspec layer: s3://, gs://, ...
        path.fs  # noqa: B018 - the filesystem the report is written through (raises if none is registered)
        path.exists()  # one cheap call with the worker's credentials
    except (ImportError, ValueError) as exc:
        raise ReportLocationError(
            f"{what} {target!r}: no storage backend for {scheme}:// URLs is available on this worker "
            f"({_short(exc)}); install {needs}, or attach a filesystem with airflow.sdk.io.attach. "
            "Nothing was sent to Omni"
        ) from None
    except Exception as exc:  # any backend's error means the location is unusable
        raise ReportLocationError(
            f"{what} {target!r} is not usable ({type(exc).__name__}: {_short(exc)}); "
            "check the URL and the worker's credentials. Nothing was sent to Omni"
        ) from None


@dataclass(frozen=True, slots=True)
class WrittenReport:
    #: The URL written (``file://`` for a local path).
    url: str
    #: True when the requested name already existed and a fresh one was used.
    renamed: bool


def _open_new(location: str) -> AbstractContextManager[IO[str]] | None:
    """The engine's ``open_new`` with Airflow's storage layer for URLs (ObjectStoragePath)."""
    if not is_url(location):
        return open_new(location)
    target = object_storage_path(location)
    if target.exists():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.open("w")  # type: ignore[no-any-return]


def write_report_file(target: str, outcomes: Sequence[ReportRecord], naming: ReportNaming) -> WrittenReport:
    """Write one JSON object per row beside, never over, an existing file (the engine's rule,
    ``sync.engine.files.write_beside``); a fresh name carries the try number."""
    tag = f".try{naming.try_number}" if naming.try_number is not None else ""
    written, renamed = write_beside(
        target, lambda stream: write_jsonl(outcomes, stream), tag=tag, opener=_open_new
    )
    return WrittenReport(written if is_url(written) else local_path(written).as_uri(), renamed=renamed)


def write_fallback_report(
    outcomes: Sequence[ReportRecord], naming: ReportNaming, directory: str | Path | None = None
) -> str:
    """Write the outcomes to the worker's local disk when the configured report failed; returns the URL."""
    folder = Path(directory) if directory is not None else DEFAULT_FALLBACK_DIR
    target = str(folder.expanduser().resolve() / naming.file_name())
    return write_report_file(target, outcomes, naming).url


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_report_table(table: str) -> None:
    """Refuse anything but a plain ``[[database.]schema.]table`` name: it is spliced into SQL text."""
    parts = table.split(".") if isinstance(table, str) else []
    if not 1 <= len(parts) <= 3 or not all(p.isascii() and p.replace("_", "").isalnum() for p in parts):
        raise OmniValidationError(f"report_table {table!r} must be a plain [[database.]schema.]table name")


def report_table_hook(conn_id: str) -> Any:
    """The connection's common-sql hook."""
    hook = BaseHook.get_connection(conn_id).get_hook()  # type: ignore[no-untyped-call]
    if not hasattr(hook, "insert_rows"):
        raise OmniValidationError(f"connection {conn_id!r} is not a SQL connection (no insert_rows)")
    return hook


def _create_report_table(hook: Any, table: str) -> None:
    columns = ", ".join(f"{c} {'INTEGER' if c == 'row_number' else 'VARCHAR(2000)'}" for c in REPORT_COLUMNS)
    hook.run(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")


def check_report_table_location(conn_id: str, table: str) -> None:
    """Before any Omni request: the connection exists, is SQL, and can create the table (one statement)."""
    check_report_table(table)
    try:
        _create_report_table(report_table_hook(conn_id), table)
    except OmniValidationError:
        raise
    except Exception as exc:  # a missing connection, bad credentials, no CREATE permission...
        raise ReportLocationError(
            f"report_table {table!r} on connection {conn_id!r} is not usable ({type(exc).__name__}: "
            f"{_short(exc)}). Nothing was sent to Omni"
        ) from None


def _table_row(run_id: str, record: Mapping[str, Any]) -> tuple[Any, ...]:
    """A report record (of any sync target) as a row of ``REPORT_COLUMNS``: a membership's key is its user,
    and what it changed is its group."""
    changed = record.get("changed")
    if changed is None:
        changed = [record["group"]] if record.get("group") else []
    return (
        run_id,
        record.get("row"),
        record.get("key", record.get("user")),
        record.get("action"),
        record.get("status"),
        record.get("user_id"),
        json.dumps(list(changed)),
        (record.get("error") or "")[:2000] or None,
    )


def write_report_table(conn_id: str, table: str, run_id: str, outcomes: Sequence[ReportRecord]) -> None:
    """Insert the rows through the connection's common-sql hook (the table is created if missing)."""
    check_report_table(table)
    hook = report_table_hook(conn_id)
    _create_report_table(hook, table)
    rows = [_table_row(run_id, o.to_record()) for o in outcomes]
    hook.insert_rows(table, rows, target_fields=list(REPORT_COLUMNS), commit_every=1000)


# -- the engine's report sinks (``sync.engine.report.ReportSink``) on Airflow's storage and SQL --


class ReportFileSink:
    """The per-row report as JSON lines at ``target`` (local path or ObjectStoragePath URL), never
    replacing an existing file."""

    def __init__(self, target: str, naming: ReportNaming, log: Any) -> None:
        self.target = target
        self.naming = naming
        self.log = log
        self.label = f"report file {target}"

    def check(self) -> None:
        check_report_location(self.target)

    def write(self, outcomes: Sequence[ReportRecord], *, run_id: str) -> dict[str, Any]:
        written = write_report_file(self.target, outcomes, self.naming)
        if written.renamed:
            self.log.warning(
                "A report already exists at %s (an earlier try of this run?); it is kept and this try's "
                "report is %s",
                self.target,
                written.url,
            )
        else:
            self.log.info("Per-row report written to %s", written.url)
        return {"report_path": written.url}


class ReportTableSink:
    """The per-row report inserted into a SQL table through a common-sql connection."""

    def __init__(self, conn_id: str, table: str) -> None:
        self.conn_id = conn_id
        self.table = table
        self.label = f"report table {table}"

    def check(self) -> None:
        check_report_table_location(self.conn_id, self.table)

    def write(self, outcomes: Sequence[ReportRecord], *, run_id: str) -> dict[str, Any]:
        write_report_table(self.conn_id, self.table, run_id, outcomes)
        return {"report_table": self.table}


class FallbackReportSink:
    """Where the outcomes go when a configured sink failed after the writes: the worker's local disk."""

    def __init__(self, naming: ReportNaming, directory: str | None) -> None:
        self.naming = naming
        self.directory = directory
        self.label = "local fallback report"

    def check(self) -> None:
        """Nothing to check: it is only used when another sink failed."""

    def write(self, outcomes: Sequence[ReportRecord], *, run_id: str) -> dict[str, Any]:
        return {"report_path": write_fallback_report(outcomes, self.naming, self.directory)}
