"""Airflow names the tests need, for Airflow 2.11 and 3.x (import as ``airflow_testkit``).

The package's own Airflow names come from ``omni_provider._compat``; these are the extra ones only tests
use (loading DAG folders, raising Airflow's task timeout, attaching an fsspec filesystem).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from omni_provider._compat import AIRFLOW_V_3_0_PLUS

if AIRFLOW_V_3_0_PLUS:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowTaskTimeout
    from airflow.sdk.io import attach
else:  # Airflow 2.11
    from airflow.exceptions import AirflowTaskTimeout
    from airflow.io.store import attach
    from airflow.models.dag import DAG
    from airflow.models.dagbag import DagBag

#: What ``airflow dags test`` needs first: ``db migrate`` on both (2.11 also accepts it).
DB_MIGRATE = ["db", "migrate"]


class RecordingTI:
    """Stands in for the task instance in ``context["ti"]``: keeps what the operator pushes to XCom, which
    must be JSON-serialisable as real XCom values are."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        json.dumps(value)
        self.pushed[key] = value


def load_dag(dag_id: str, folder: str) -> Any:
    """One DAG of a folder, after checking the whole folder imports cleanly."""
    bag = DagBag(folder)  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES=False in the test environment
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def sync_dags_to_db(folder: str, bundle_name: str = "dags-folder") -> None:
    """Register a folder's DAGs in the metadata DB, as the DAG processor would (so asset events queue runs
    of the DAGs scheduled on them)."""
    bag = DagBag(folder)
    assert not bag.import_errors, bag.import_errors
    if AIRFLOW_V_3_0_PLUS:
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import sync_bag_to_db

        DagBundlesManager().sync_bundles_to_db()  # the DAG rows point at their bundle's row
        sync_bag_to_db(bag, bundle_name, None)
    else:
        bag.sync_to_db()


def asset_events(uri: str, db_path: str) -> list[dict[str, Any]]:
    """The extras of the asset events (dataset events on 2.11) recorded for ``uri``, oldest first, and the
    DAGs queued to run because of them."""
    import json
    import sqlite3

    kind = "asset" if AIRFLOW_V_3_0_PLUS else "dataset"
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            f"SELECT e.extra FROM {kind}_event e JOIN {kind} a ON a.id = e.{kind}_id "  # noqa: S608 - fixed names
            "WHERE a.uri = ? ORDER BY e.id",
            (uri,),
        ).fetchall()
        queued = db.execute(
            f"SELECT q.target_dag_id FROM {kind}_dag_run_queue q JOIN {kind} a ON a.id = q.{kind}_id "  # noqa: S608
            "WHERE a.uri = ?",
            (uri,),
        ).fetchall()
    return [{"extra": json.loads(extra or "{}"), "queued": sorted(q for (q,) in queued)} for (extra,) in rows]


def allow_execute_in_this_thread() -> None:
    """Let a test call ``execute()`` in a worker thread (to call ``on_kill`` from outside meanwhile, as
    Airflow's signal handler does). Airflow 2.11's ``ExecutorSafeguard`` keeps its state in a thread-local
    made in the main thread only; Airflow itself always runs ``execute`` there."""
    if not AIRFLOW_V_3_0_PLUS:
        from airflow.models.baseoperator import ExecutorSafeguard

        if not hasattr(ExecutorSafeguard._sentinel, "callers"):
            ExecutorSafeguard._sentinel.callers = {}


class _Records(logging.Handler):
    def __init__(self, into: list[dict[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append({"event": record.getMessage(), "log_level": record.levelname.lower()})


@contextlib.contextmanager
def capture_task_logs() -> Iterator[list[dict[str, Any]]]:
    """Log events of operators (``{"event": ..., "log_level": "info"}``): Airflow 3 operators log through
    structlog, Airflow 2.11 operators through the stdlib ``airflow.task`` logger."""
    if AIRFLOW_V_3_0_PLUS:
        import structlog

        with structlog.testing.capture_logs() as logs:
            yield logs
        return
    logs: list[dict[str, Any]] = []
    logger = logging.getLogger("airflow.task")
    handler, level = _Records(logs), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield logs
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "DAG",
    "AirflowTaskTimeout",
    "DagBag",
    "allow_execute_in_this_thread",
    "asset_events",
    "attach",
    "capture_task_logs",
    "load_dag",
    "sync_dags_to_db",
]
