"""Where the Omni report view lives (Airflow 3): the API-server app's prefix, the task-instance tab's route,
and the link a sync task logs once its report is written. Imports nothing heavy: workers use it too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

#: Where the provider's FastAPI app (``report_view``) is mounted in the API server.
APP_PREFIX = "/omni-provider"
#: The tab's route under a task instance: ``.../tasks/<task>[/mapped/<i>]/plugin/omni-report``.
VIEW_ROUTE = "omni-report"
#: The tab's page: relative, so it resolves against the UI's base URL (an API server under a sub-path);
#: the UI fills in the placeholders (``{MAP_INDEX}`` only for a mapped task).
VIEW_HREF = (
    APP_PREFIX.lstrip("/") + "/report?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}"
)
#: The XCom keys the operators push their summaries under (each carries report_path); the report view finds
#: a task's report through them.
ATTRIBUTE_SUMMARY_KEY = "sync_summary"
GROUP_SUMMARY_KEY = "group_sync_summary"
RECIPIENT_SUMMARY_KEY = "recipient_sync_summary"
APPLY_SUMMARY_KEY = "apply_summary"
SUMMARY_KEYS = (ATTRIBUTE_SUMMARY_KEY, GROUP_SUMMARY_KEY, RECIPIENT_SUMMARY_KEY, APPLY_SUMMARY_KEY)


def report_view_url(ti: Any) -> str | None:
    """The report tab of this task instance in the Airflow 3 UI, from the task instance's own UI link
    (``log_url``: the API server's base URL, the run and the map index); None when it has none."""
    log_url = getattr(ti, "log_url", None)
    if not isinstance(log_url, str) or not log_url.startswith(("http://", "https://")):
        return None
    parts = urlsplit(log_url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + f"/plugin/{VIEW_ROUTE}", "", ""))


def log_report_view_link(context: Mapping[str, Any], summary: Mapping[str, Any], log: Any) -> None:
    """Once a report file was written, say where to read it in the UI (Airflow 3 only: the view is an
    API-server plugin; on Airflow 2.11 the task log's per-row lines are the view)."""
    from omni_provider._compat import AIRFLOW_V_3_0_PLUS

    if not AIRFLOW_V_3_0_PLUS or not (summary.get("report_path") or summary.get("report_fallback_path")):
        return
    try:
        url = report_view_url(context.get("ti"))
    except Exception:  # a link is a convenience: it never fails the task
        return
    if url:
        log.info("Per-row report in the Airflow UI (Omni report tab of this task): %s", url)
