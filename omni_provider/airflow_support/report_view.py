"""The Omni report tab of a task instance in the Airflow 3 UI: a server-rendered page (no JS build) served
by the provider's API-server plugin and shown in the UI's iframe (``external_views``, destination
``task_instance``).

Security:
- Every request is authenticated and authorized as the UI's own API is: the JWT the UI keeps in its
  cookie (or a bearer token), and read access to the DAG's task instances and XComs
  (``requires_access_dag``). Without them: 401/403 and nothing read.
- The page reads only the report of the task instance named: its location comes from that task
  instance's sync summary in XCom (``report_path``), never from the URL, and only a ``.jsonl`` file is
  read. Only lines that are report records are shown, field by field.
- Every value is escaped (Jinja2 autoescape): an attribute value may be ``<script>``. Reports hold no
  secrets; a read error is shown by its type only (a URL may carry credentials).

Airflow 3 only (it imports the API server); ``plugin.py`` loads it only there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse
from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.orm import Session

from omni_provider._compat import object_storage_path
from omni_provider.airflow_support.report_link import SUMMARY_KEYS
from omni_provider.airflow_support.report_rows import ParsedReport, order_rows, parse_report
from omni_provider.sync.engine.files import is_url, local_path

#: Table rows shown at most (the counts cover the whole report).
MAX_ROWS = 2000

app = FastAPI(title="Omni provider report view", docs_url=None, redoc_url=None, openapi_url=None)


@dataclass(frozen=True, slots=True)
class Page:
    """What the template shows; ``message`` alone when there is no report to show."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    message: str = ""
    location: str = ""
    report: ParsedReport | None = None
    status: str | None = None
    truncated: bool = False
    #: Why the run failed (the summary's ``error``), shown above the table.
    summary_error: str = ""


def read_summary(
    session: Session, dag_id: str, run_id: str, task_id: str, map_index: int
) -> dict[str, Any] | None:
    """The task instance's sync summary from XCom (the attribute or the group sync's key), or None."""
    rows = session.scalars(
        select(XComModel).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.task_id == task_id,
            XComModel.map_index == map_index,
            XComModel.key.in_(SUMMARY_KEYS),
        )
    ).all()
    for row in rows:
        value = row.value
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, dict):
            return value
    return None


def task_instance_exists(session: Session, dag_id: str, run_id: str, task_id: str, map_index: int) -> bool:
    found = session.scalar(
        select(TaskInstance.id).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id == run_id,
            TaskInstance.task_id == task_id,
            TaskInstance.map_index == map_index,
        )
    )
    return found is not None


def shown_location(location: str) -> str:
    """The report's location without any credentials a URL may carry (``user:secret@host``)."""
    if not is_url(location):
        return location
    parts = urlsplit(location)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def is_report_file(location: str) -> bool:
    """Only a ``.jsonl`` file is read (for a local path: the file it really is, links followed)."""
    name = urlsplit(location).path if is_url(location) else str(local_path(location))
    return name.endswith(".jsonl")


def read_report(location: str) -> tuple[ParsedReport, bool]:
    """The report at ``location`` (an ObjectStoragePath URL, or a local path / ``file://`` URL as the report
    sinks write them) as table rows, read through Airflow's ObjectStoragePath."""
    target = location if is_url(location) else local_path(location).as_uri()
    with object_storage_path(target).open("r") as stream:
        return parse_report(stream, max_rows=MAX_ROWS)


def build_page(session: Session, dag_id: str, run_id: str, task_id: str, map_index: int) -> Page | None:
    """The page of a task instance's report; None when there is no such task instance."""
    page = Page(dag_id, run_id, task_id, map_index)
    if not task_instance_exists(session, dag_id, run_id, task_id, map_index):
        return None
    summary = read_summary(session, dag_id, run_id, task_id, map_index)
    if summary is None:
        return replace(
            page,
            message="No Omni sync report for this task instance yet: it has not run or is still running, "
            "or it is not an Omni sync task.",
        )
    page = replace(page, summary_error=str(summary.get("error") or ""))
    location = summary.get("report_path") or summary.get("report_fallback_path")
    if not isinstance(location, str) or not location:
        where = summary.get("report_table")
        return replace(
            page,
            message=f"This run wrote its per-row report to the table {where}, not to a file."
            if where
            else "This run wrote no per-row report file (no report_path, or it stopped before reporting).",
        )
    shown = shown_location(location)
    if not is_report_file(location):
        return replace(page, location=shown, message="The report location is not a .jsonl report file.")
    try:
        report, truncated = read_report(location)
    except FileNotFoundError:
        return replace(
            page,
            location=shown,
            message="The report file is not readable from the API server (it may be on a worker's local "
            "disk: use an object-storage report_path, such as s3://, to see reports here).",
        )
    except Exception as exc:  # any storage backend's error; its text may carry a URL, so the type only
        return replace(page, location=shown, message=f"Could not read the report ({type(exc).__name__}).")
    if not report.counts:
        return replace(page, location=shown, message="The file holds no Omni report records.")
    return replace(page, location=shown, report=report, truncated=truncated)


def _filter_link(page: Page, status: str | None) -> str:
    query = {
        "dag_id": page.dag_id,
        "run_id": page.run_id,
        "task_id": page.task_id,
        "map_index": page.map_index,
    }
    if status:
        query["status"] = status
    return "?" + urlencode(query)


#: Autoescape on: every value in the page is escaped (an attribute value may be ``<script>``).
_ENV = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_ENV.globals["filter_link"] = _filter_link
_TEMPLATE = _ENV.from_string((files(__package__) / "templates" / "report_view.html").read_text("utf-8"))


def render(page: Page) -> str:
    rows = order_rows(page.report.filtered(page.status)) if page.report else []
    return _TEMPLATE.render(page=page, rows_shown=rows, max_rows=MAX_ROWS)


@app.get(
    "/report",
    response_class=HTMLResponse,
    dependencies=[
        Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.TASK_INSTANCE)),
        Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.XCOM)),
    ],
)
def report_page(
    session: SessionDep,
    dag_id: Annotated[str, Query(min_length=1)],
    run_id: Annotated[str, Query(min_length=1)],
    task_id: Annotated[str, Query(min_length=1)],
    map_index: str = "-1",
    status: str | None = None,
) -> HTMLResponse:
    """The report of one task instance; ``map_index`` is the UI's ``{MAP_INDEX}`` (left as is for a task
    that is not mapped), ``status`` the filter."""
    index = int(map_index) if map_index.lstrip("-").isdigit() else -1
    page = build_page(session, dag_id, run_id, task_id, index)
    if page is None:
        missing = Page(dag_id, run_id, task_id, index, message="No such task instance.")
        return HTMLResponse(render(missing), status_code=404)
    if page.report is not None and status in page.report.counts:
        page = replace(page, status=status)
    return HTMLResponse(render(page))
