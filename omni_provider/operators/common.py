"""What the Omni operators share: Omni errors mapped to Airflow's retry or fail, the summary to XCom, and
the one way a sync task runs an engine run (``execute_sync``) with Airflow's report sinks.

Each operator imports from here, never from another operator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omni_provider._compat import AirflowException, AirflowFailException, Context
from omni_provider.airflow_support import lineage
from omni_provider.airflow_support.report_link import ATTRIBUTE_SUMMARY_KEY, log_report_view_link
from omni_provider.airflow_support.report_sinks import (
    FallbackReportSink,
    ReportFileSink,
    ReportNaming,
    ReportTableSink,
    check_report_table,
    report_target,
)
from omni_provider.airflow_support.row_sources import check_sources
from omni_provider.airflow_support.templating import parse_bool
from omni_provider.client import OmniError, OmniScimClient, OmniValidationError
from omni_provider.errors import rerun_may_help
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.deferral import defer_task, deferral_for
from omni_provider.sync.engine.pause import RunDeferred
from omni_provider.sync.engine.report import ReportSink
from omni_provider.sync.engine.run import EngineRun, RowSource, RunOptions


def fail_or_retry(exc: OmniError) -> AirflowException:
    """The Airflow exception for an Omni error: retryable only when a later try could succeed (429, 5xx,
    network, users being added while listing, failed writes a re-plan may apply)."""
    message = str(exc)
    return AirflowException(message) if rerun_may_help(exc) else AirflowFailException(message)


def push_summary(
    context: Context, summary: Mapping[str, Any], log: Any, *, key: str = ATTRIBUTE_SUMMARY_KEY
) -> None:
    """The run's summary to XCom, also when the task fails; a failing push never hides the run's outcome."""
    ti = context.get("ti")
    if ti is None:
        return
    try:
        ti.xcom_push(key=key, value=dict(summary))
    except Exception:
        log.exception("Could not push %s to XCom", key)


def report_sinks(task: Any, naming: ReportNaming) -> tuple[list[ReportSink], ReportSink]:
    """A sync task's report sinks (a file on ObjectStoragePath or local, a SQL table, as configured by its
    ``report_path``, ``report_table`` and ``report_conn_id``) and the local fallback for when one fails."""
    sinks: list[ReportSink] = []
    if task.report_path:
        sinks.append(ReportFileSink(report_target(str(task.report_path), naming), naming, task.log))
    if task.report_table:
        check_report_table(task.report_table)
        conn_id = task.report_conn_id or task.sql_conn_id
        if not conn_id:
            raise OmniValidationError("report_table needs report_conn_id (or sql_conn_id)")
        sinks.append(ReportTableSink(str(conn_id), str(task.report_table)))
    return sinks, FallbackReportSink(naming, task.fallback_report_dir)


def execute_sync(
    task: Any,
    context: Context,
    prepare: Callable[[], EngineRun],
    rows: RowSource,
    *,
    key: str,
    resume: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run a sync task's engine run: ``prepare`` checks the arguments and builds the run (before any
    request; the task keeps it for ``on_kill``), then the run reads ``rows``. The summary goes to XCom
    under ``key`` in every run, failed ones included (then it says how far the run got and why it
    stopped); the outlets' asset events carry the counts; an Omni error becomes Airflow's retry (when a
    re-run may help: failed writes a re-plan may apply, 429, 5xx, network) or fail (bad input, a tripped
    circuit breaker, a lost report).

    A deferrable run (``deferral.py``) that pauses defers the task (``TaskDeferred``; no summary is pushed
    until the run ends); ``resume``: the state a deferred step continues from. A first step finding the
    state of an earlier try younger than ``resume_within`` continues from it (a retry after a crash)."""
    summary: dict[str, Any] = {"stage": "configuration"}
    deferred = False
    try:
        run = prepare()
        summary = run.summary
        if resume is not None:
            result = run.resume(resume)
        elif (earlier := run.resumable_state()) is not None:
            result = run.resume(earlier, after_crash=True)
        else:
            result = run.run(rows)
        lineage.annotate_asset_events(context, task.outlets, run.client.base_url, result)
        return result
    except RunDeferred as paused:
        deferred = True
        defer_task(task, paused)
    except OmniError as exc:
        summary.setdefault("error", str(exc))
        raise fail_or_retry(exc) from None
    except BaseException as exc:
        summary.setdefault("error", str(exc) or type(exc).__name__)
        raise
    finally:
        if not deferred:
            push_summary(context, summary, task.log, key=key)
            log_report_view_link(context, summary, task.log)
        if task._hook is not None:
            task._hook.close()


def prepare_sync(
    task: Any,
    context: Context,
    managed: Sequence[str],
    *,
    kind: str = "user_attribute",
    state_path: str | None = None,
) -> tuple[OmniScimClient, RunOptions]:
    """What every sync task does before it builds its engine run, with no request to Omni: the row source
    and ``dry_run`` checked, the report sinks built (and checked by the run), the client made from the
    connection, the lineage reported (``managed``: the attributes or groups synced), the deferral settings
    of a deferrable task (``state_path``: a resumed step's). Returns the client and the run's shared
    options."""
    check_sources(task.rows, task.sql, task.sql_conn_id, task.sql_batch_size)
    dry_run = parse_bool(task.dry_run, what="dry_run")
    naming = ReportNaming.from_context(context, task.task_id)
    sinks, fallback = report_sinks(task, naming)
    deferral = deferral_for(task, naming, state_path)
    task._hook = OmniScimHook(omni_conn_id=task.omni_conn_id)
    client = task._hook.get_conn()
    task._lineage = lineage.report_sync_lineage(
        task._hook,
        client.base_url,
        sql=task.sql,
        sql_conn_id=task.sql_conn_id,
        task=task,
        attributes=managed,
        dry_run=dry_run,
        kind=kind,
    )
    options: RunOptions = {
        "dry_run": dry_run,
        "max_changes": task.max_changes,
        "max_failed_rows": task.max_failed_rows,
        "sinks": sinks,
        "fallback_sink": fallback,
        "max_workers": task.max_workers,
        "log": task.log,
        "run_id": str(context.get("run_id") or ""),
        "deferral": deferral,
    }
    return client, options
