"""``ApplyOmniPlanOperator``: apply a reviewed plan, exactly, with the sync's pacing, canary, breaker,
report and summary.

A thin adapter over ``sync.planned.load_planned_run`` (which Dagster's ``OmniScimResource.apply_plan``
calls too): it builds the report sinks and the client, loads the plan (refused before any request when its
digest is not ``plan_digest``, it is older than ``max_age`` or it was made for another Omni: a failure
Airflow does not retry), runs it, and pushes the summary to XCom as ``apply_summary``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from omni_provider._compat import BaseOperator, Context
from omni_provider.airflow_support.report_link import APPLY_SUMMARY_KEY
from omni_provider.airflow_support.report_sinks import ReportNaming
from omni_provider.airflow_support.snapshot_store import ObjectStoragePlanStore
from omni_provider.errors import OmniValidationError
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.common import execute_sync, report_sinks
from omni_provider.sync.engine.checks import check_run_options
from omni_provider.sync.engine.plan_artifact import DEFAULT_MAX_AGE
from omni_provider.sync.engine.run import EngineRun
from omni_provider.sync.planned import load_planned_run


def _max_age(value: object) -> timedelta | None:
    """``max_age`` as a duration: a ``timedelta``, a number of seconds, or None (any age)."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    raise OmniValidationError(f"max_age must be a timedelta, a number of seconds or None, got {value!r}")


class ApplyOmniPlanOperator(BaseOperator):
    """Apply the plan a ``PlanOmniUserAttributesOperator`` or ``PlanOmniGroupMembershipOperator`` stored:
    exactly its writes, nothing else, whatever the warehouse holds now.

    Before any write it refuses (and Airflow does not retry) a plan whose digest is not ``plan_digest``
    (replaced or edited after review), one older than ``max_age``, and one made for another Omni than the
    connection's. Then it reads the planned users (groups) from Omni: a user changed since the plan is not
    written and is reported ``rejected`` ("changed in Omni since the plan"); the rest is sent like the sync
    sends (paced, canary first, circuit breaker) and reported per item.

    :param plan_path: the plan file (the plan task's ``plan_path`` XCom; templated).
    :param plan_digest: the digest the reviewer approved (the plan task's ``plan_digest`` XCom; templated).
        None applies whatever the file holds, after checking only that it matches its own digest.
    :param max_age: refuse a plan older than this (a ``timedelta`` or seconds; default 24 hours; None: any).
    :param max_failed_rows: the task fails when rejected (changed since the plan) plus failed items exceed
        this (default 0, as for the sync); the writes are done either way.
    :param max_failed_pct: the same as a percentage of the plan's items.
    :param report_path: ``report_table``, ``report_conn_id``, ``fallback_report_dir``, ``max_workers``: as
        for the sync operators.
    """

    template_fields: Sequence[str] = (
        "plan_path",
        "plan_digest",
        "report_path",
        "report_table",
        "omni_conn_id",
    )
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        plan_path: str,
        plan_digest: str | None = None,
        max_age: timedelta | float | None = DEFAULT_MAX_AGE,
        omni_conn_id: str = OmniScimHook.default_conn_name,
        max_failed_rows: int | None = 0,
        max_failed_pct: float | str | None = None,
        report_path: str | None = None,
        report_table: str | None = None,
        report_conn_id: str | None = None,
        fallback_report_dir: str | None = None,
        max_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan_path = plan_path
        self.plan_digest = plan_digest
        self.max_age = max_age
        self.omni_conn_id = omni_conn_id
        self.max_failed_rows = max_failed_rows
        self.max_failed_pct = max_failed_pct
        self.report_path = report_path
        self.report_table = report_table
        self.report_conn_id = report_conn_id
        self.fallback_report_dir = fallback_report_dir
        self.max_workers = max_workers
        #: The report table's connection falls back to this in the sync operators; a plan reads no SQL.
        self.sql_conn_id: str | None = None
        self._hook: OmniScimHook | None = None
        self._run: EngineRun | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        # The summary is pushed to XCom as "apply_summary" in every run, failed ones included.
        prepare = lambda: self._prepare(context)  # noqa: E731 - checked inside the shared handling
        return execute_sync(self, context, prepare, (), key=APPLY_SUMMARY_KEY)

    def _prepare(self, context: Context) -> EngineRun:
        """Arguments checked, the plan loaded and refused or accepted: the engine's run, before any write."""
        if not isinstance(self.plan_path, str) or not self.plan_path.strip():
            raise OmniValidationError(f"plan_path must be a path or URL, got {self.plan_path!r}")
        max_age = _max_age(self.max_age)
        check_run_options(
            dry_run=False,
            max_changes=None,
            max_failed_rows=self.max_failed_rows,
            max_failed_pct=self.max_failed_pct,
            max_workers=self.max_workers,
            report_path=str(self.report_path) if self.report_path else None,
        )
        sinks, fallback = report_sinks(self, ReportNaming.from_context(context, self.task_id))
        self._hook = OmniScimHook(omni_conn_id=self.omni_conn_id)
        self._run = load_planned_run(
            self._hook.get_conn(),
            ObjectStoragePlanStore(self.plan_path.strip()),
            plan_digest=self.plan_digest,
            max_age=max_age,
            max_failed_rows=self.max_failed_rows,
            max_failed_pct=self.max_failed_pct,
            sinks=sinks,
            fallback_sink=fallback,
            max_workers=self.max_workers,
            log=self.log,
            run_id=str(context.get("run_id") or ""),
        )
        return self._run

    def on_kill(self) -> None:
        # Stop sending; the run still reports every item, and execute() still pushes the summary.
        if self._run is not None:
            self._run.stop()
