"""``SyncOmniUserAttributesOperator``: a warehouse table -> Omni user attributes, diffed, paced, reported."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from omni_provider import lineage
from omni_provider._compat import (
    AirflowException,
    AirflowFailException,
    BaseHook,
    BaseOperator,
    Context,
)
from omni_provider.client import OmniError, OmniValidationError
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.rendered import parse_bool, parse_structure
from omni_provider.operators.report_sink import check_report_table, write_report_file, write_report_table
from omni_provider.operators.update_user import fail_or_retry, load_definitions
from omni_provider.sync import (
    SyncSpec,
    build_plan,
    check_max_changes,
    evaluate_failures,
    resolve_max_changes,
)
from omni_provider.sync.apply import NOT_ATTEMPTED, STOPPED_ERRORS, apply_plan
from omni_provider.sync.outcome import RowOutcome, RowStatus, format_table, tally, tally_by_action
from omni_provider.sync.plan import SyncPlan
from omni_provider.sync.rows import align_column_case

#: Errors that retrying the task cannot fix (shown for the sample of errors in the summary).
ERROR_SAMPLE_SIZE = 10


class SyncOmniUserAttributesOperator(BaseOperator):
    """Make Omni user attributes match a warehouse table, sending only what differs.

    Steps: read the rows (``rows``, e.g. a SQL task's output, or ``sql`` run here in batches so large tables
    never pass through XCom); read every Omni user (one request per 100) and the attribute definitions;
    plan (create / update / unset / unchanged / rejected per row); check the guards; apply the writes paced
    to the connection's rate limit over all its keys; write the per-row report; return a small summary.

    :param rows: list of dicts (column -> value), or a JSON string of one.
    :param sql: query whose result columns include the match column and the attribute columns.
    :param sql_conn_id: any common-sql connection (required with ``sql``).
    :param match_on: ``"userName"`` (email, case-insensitive) or ``"id"`` (Omni user id).
    :param key_column: column holding the key (default: the ``match_on`` name).
    :param attributes: column -> attribute reference name, or a list when the names are the same. Only
        these attributes are ever written.
    :param mode: ``update`` (users must exist), ``upsert`` (create missing users; needs
        ``display_name_column``) or ``mirror`` (also unset managed attributes of users absent from the input).
    :param max_changes: refuse to apply a plan writing more users than this: a count or ``"10%"`` of Omni's
        users. Guards against a broken upstream query blanking everyone.
    :param allow_empty_input: in mirror mode, allow an empty input (which unsets everyone's managed keys).
    :param max_failed_rows: the task fails when rejected rows plus failed writes exceed this (default 0).
    :param max_failed_pct: the same as a percentage of the plan's items.
    :param report_path: where to write the per-row outcomes as JSON lines (a local path or any
        ObjectStoragePath URL such as ``s3://bucket/omni/{{ run_id }}.jsonl``).
    :param report_table: optional table to insert the per-row outcomes into, through ``report_conn_id``
        (default: ``sql_conn_id``).
    :param dry_run: plan and report without writing.
    """

    template_fields: Sequence[str] = (
        "rows",
        "sql",
        "sql_conn_id",
        "attributes",
        "mode",
        "dry_run",
        "max_changes",
        "report_path",
        "report_table",
        "omni_conn_id",
    )
    template_fields_renderers = {"rows": "json", "attributes": "json", "sql": "sql"}
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        attributes: Mapping[str, str] | Sequence[str] | str,
        rows: Sequence[Mapping[str, Any]] | str | None = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        sql_batch_size: int = 5000,
        match_on: str = "userName",
        key_column: str | None = None,
        display_name_column: str | None = None,
        mode: str = "update",
        dry_run: bool | str = False,
        max_changes: int | str | None = None,
        allow_empty_input: bool = False,
        max_failed_rows: int | None = 0,
        max_failed_pct: float | str | None = None,
        report_path: str | None = None,
        report_table: str | None = None,
        report_conn_id: str | None = None,
        omni_conn_id: str = OmniScimHook.default_conn_name,
        max_workers: int | None = None,
        progress_every: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.attributes = attributes
        self.rows = rows
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.sql_batch_size = sql_batch_size
        self.match_on = match_on
        self.key_column = key_column
        self.display_name_column = display_name_column
        self.mode = mode
        # Shadows BaseOperator.dry_run(), a legacy method nothing in Airflow 3.3 calls (checked); the
        # parameter name is the public interface.
        self.dry_run = dry_run  # type: ignore[assignment,method-assign]
        self.max_changes = max_changes
        self.allow_empty_input = allow_empty_input
        self.max_failed_rows = max_failed_rows
        self.max_failed_pct = max_failed_pct
        self.report_path = report_path
        self.report_table = report_table
        self.report_conn_id = report_conn_id
        self.omni_conn_id = omni_conn_id
        self.max_workers = max_workers
        self.progress_every = progress_every
        self._stop = threading.Event()
        self._hook: OmniScimHook | None = None
        self._lineage: lineage.SyncLineage | None = None

    # -- input ---------------------------------------------------------------------------------------------

    def _spec(self) -> SyncSpec:
        return SyncSpec.from_user_args(
            self.attributes,
            match_on=self.match_on,
            mode=self.mode,
            display_name_column=self.display_name_column,
            key_column=self.key_column,
        )

    def _check_sources(self) -> None:
        if (self.rows is None) == (self.sql is None):
            raise OmniValidationError("give exactly one of rows (a list of dicts) or sql (with sql_conn_id)")
        if self.sql is not None and not self.sql_conn_id:
            raise OmniValidationError("sql needs sql_conn_id (any common-sql connection)")
        if self.sql_batch_size < 1:
            raise OmniValidationError("sql_batch_size must be positive")

    def _check_settings(self) -> None:
        """Settings only used after the writes (thresholds, report table), checked before any request."""
        resolve_max_changes(self.max_changes, 0)
        evaluate_failures({}, max_failed_rows=self.max_failed_rows, max_failed_pct=self.max_failed_pct)
        if self.report_table:
            check_report_table(self.report_table)
            if not (self.report_conn_id or self.sql_conn_id):
                raise OmniValidationError("report_table needs report_conn_id (or sql_conn_id)")

    def _read_rows(self) -> list[Mapping[str, Any]]:
        if self.sql is not None:
            return list(self._query_rows())
        rows: Any = self.rows
        if isinstance(rows, str):
            rows = parse_structure(rows, what="rows")
        if not isinstance(rows, Sequence) or isinstance(rows, str | bytes):
            raise OmniValidationError(f"rows must be a list of dicts, got {type(rows).__name__}")
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, Mapping):
                raise OmniValidationError(
                    f"row {number} is a {type(row).__name__}, not a dict of column -> value; with "
                    "SQLExecuteQueryOperator pass "
                    "output_processor=omni_provider.operators.sql_rows.rows_as_dicts"
                )
        return list(rows)

    def _query_rows(self) -> Iterator[dict[str, Any]]:
        """Run ``sql`` on the common-sql connection and stream its rows in batches (no XCom involved)."""
        hook = BaseHook.get_connection(str(self.sql_conn_id)).get_hook()  # type: ignore[no-untyped-call]
        if not hasattr(hook, "get_conn"):
            raise OmniValidationError(f"connection {self.sql_conn_id!r} is not a SQL connection")
        conn = hook.get_conn()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(self.sql)
                columns = [str(col[0]) for col in cursor.description or []]
                while batch := cursor.fetchmany(self.sql_batch_size):
                    for row in batch:
                        yield dict(zip(columns, row, strict=True))
            finally:
                cursor.close()
        finally:
            conn.close()

    # -- run -----------------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            return self._execute(context)
        except OmniError as exc:
            raise fail_or_retry(exc) from None
        finally:
            if self._hook is not None:
                self._hook.close()

    def _execute(self, context: Context) -> dict[str, Any]:
        started = time.monotonic()
        # Configuration errors surface before anything is read or sent.
        spec = self._spec()
        self._check_sources()
        self._check_settings()
        dry_run = parse_bool(self.dry_run, what="dry_run")
        wanted = [
            spec.key,
            *spec.attributes,
            *([spec.display_name_column] if spec.display_name_column else []),
        ]
        rows = align_column_case(self._read_rows(), wanted)
        self.log.info(
            "Read %d input rows; managing attributes %s (%s mode)",
            len(rows),
            spec.managed_attributes,
            spec.mode,
        )

        self._hook = OmniScimHook(omni_conn_id=self.omni_conn_id)
        client = self._hook.get_conn()
        self._lineage = lineage.report_sync_lineage(
            self._hook,
            client.base_url,
            sql=self.sql,
            sql_conn_id=self.sql_conn_id,
            task=self,
            attributes=spec.managed_attributes,
            dry_run=dry_run,
        )
        definitions = load_definitions(client, self.log)
        users = client.list_users()
        self.log.info("Omni has %d users", len(users))
        plan = build_plan(rows, users, spec, definitions)
        self.log.info("Plan: %s", plan.counts())

        summary: dict[str, Any] = {
            "mode": spec.mode.value,
            "dry_run": dry_run,
            "rows": plan.row_count,
            "omni_users": len(users),
            "plan": plan.counts(),
        }
        try:
            check_max_changes(plan, self.max_changes, len(users), allow_empty_input=self.allow_empty_input)
        except OmniError as exc:
            if not dry_run:
                raise AirflowFailException(str(exc)) from None
            self.log.error("Dry run: this plan would be refused: %s", exc)
            summary["refused"] = str(exc)

        settled: dict[int, RowOutcome] = {}
        complete = False
        try:
            applied = apply_plan(
                client,
                plan,
                {u.id: u for u in users},
                definitions=definitions,
                dry_run=dry_run or "refused" in summary,
                max_workers=self.max_workers,
                stop=self._stop,
                on_outcome=settled.__setitem__,
                on_progress=lambda p: self.log.info(p.line()),
                progress_every=self.progress_every,
            )
            # Stopped (on_kill) runs return normally, with the writes never started as "not attempted".
            skipped = sum(1 for o in applied if o.status is RowStatus.FAILED and o.error in STOPPED_ERRORS)
            complete = not skipped
            if skipped:
                self.log.warning(
                    "Stopped before %d writes were confirmed; they are reported as failed and a "
                    "re-run applies what is still different",
                    skipped,
                )
        except BaseException:
            # Interrupted (an error, a task timeout): still report every item, but never let a failing
            # report hide why the run stopped.
            outcomes = self._all_outcomes(plan, settled)
            try:
                summary.update(self._report(context, outcomes, client.stats.snapshot(), started, False))
            except Exception:
                self.log.exception("Could not write the sync report")
            raise
        outcomes = self._all_outcomes(plan, settled)
        summary.update(self._report(context, outcomes, client.stats.snapshot(), started, complete))
        result = self._verdict(plan, outcomes, summary, context)
        lineage.annotate_asset_events(context, self.outlets, client.base_url, result)
        return result

    @staticmethod
    def _all_outcomes(plan: SyncPlan, settled: Mapping[int, RowOutcome]) -> list[RowOutcome]:
        return [
            settled.get(i) or RowOutcome.from_item(item, RowStatus.FAILED, error=NOT_ATTEMPTED)
            for i, item in enumerate(plan.items)
        ]

    def _report(
        self,
        context: Context,
        outcomes: list[RowOutcome],
        stats: dict[str, Any],
        started: float,
        complete: bool,
    ) -> dict[str, Any]:
        by_action = tally_by_action(outcomes)
        part: dict[str, Any] = {
            "outcomes": tally(outcomes),
            "by_action": by_action,
            "requests": stats["requests"],
            "retries": stats["retries"],
            "rate_limited": stats["rate_limited"],
            "seconds": round(time.monotonic() - started, 3),
            "complete": complete,
            "errors_sample": [
                {"row": o.row, "status": o.status.value, "error": o.error}
                for o in outcomes
                if o.status in (RowStatus.FAILED, RowStatus.REJECTED)
            ][:ERROR_SAMPLE_SIZE],
        }
        self.log.info("Sync outcome by action:\n%s", format_table(by_action))
        if self.report_path:
            part["report_path"] = write_report_file(self.report_path, outcomes)
            self.log.info("Per-row report written to %s", part["report_path"])
        if self.report_table:
            conn_id = self.report_conn_id or self.sql_conn_id
            if not conn_id:
                raise OmniValidationError("report_table needs report_conn_id (or sql_conn_id)")
            run_id = str(context.get("run_id") or "")
            write_report_table(conn_id, self.report_table, run_id, outcomes)
            part["report_table"] = self.report_table
        return part

    def _verdict(
        self, plan: SyncPlan, outcomes: list[RowOutcome], summary: dict[str, Any], context: Context
    ) -> dict[str, Any]:
        failed_writes = summary["outcomes"][RowStatus.FAILED.value]
        verdict = evaluate_failures(
            plan.counts(),
            failed_writes=failed_writes,
            max_failed_rows=self.max_failed_rows,
            max_failed_pct=self.max_failed_pct,
        )
        ti = context.get("ti")
        if ti is not None:
            # Pushed even when the task fails below, so the numbers are there to look at.
            ti.xcom_push(key="sync_summary", value=summary)
        if verdict.failed:
            # Never green when a row did not make it, even if the thresholds let the task pass.
            self.log.error(
                "%d of %d items did not sync (%d rejected, %d failed); see errors_sample%s",
                verdict.failed,
                verdict.total,
                summary["outcomes"][RowStatus.REJECTED.value],
                failed_writes,
                f" and {summary['report_path']}" if "report_path" in summary else "",
            )
        else:
            self.log.info("All %d items synced: %s", verdict.total, summary["outcomes"])
        if verdict.should_fail:
            # Failed writes may succeed on a task retry (the plan is re-diffed); rejected rows will not.
            exc_type = AirflowException if failed_writes else AirflowFailException
            raise exc_type(f"Omni sync failed: {verdict.reason}")
        return summary

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Called by the OpenLineage provider (when installed): what the sync read and wrote."""
        return lineage.openlineage_facets(self._lineage)

    def on_kill(self) -> None:
        # Stop sending; execute()'s finally block still writes the report of what was applied.
        self._stop.set()
        # Writes in a retry back-off give up now, not after it (SIGKILL comes 5 s after SIGTERM).
        if self._hook is not None:
            self._hook.cancel()
