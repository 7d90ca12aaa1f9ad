"""``SyncOmniUserAttributesOperator``: a warehouse table -> Omni user attributes, diffed, paced, reported."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from omni_provider import lineage
from omni_provider._compat import (
    AirflowException,
    AirflowFailException,
    BaseOperator,
    Context,
)
from omni_provider.client import OmniError, OmniValidationError
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.rendered import parse_bool
from omni_provider.operators.report_sink import (
    ReportNaming,
    check_report_location,
    check_report_table,
    check_report_table_location,
    report_target,
    write_fallback_report,
    write_report_file,
    write_report_table,
)
from omni_provider.operators.row_source import check_sources, read_rows
from omni_provider.operators.update_user import fail_or_retry, load_definitions
from omni_provider.sync import (
    SyncSpec,
    check_max_changes,
    evaluate_failures,
    resolve_max_changes,
)
from omni_provider.sync.apply import NOT_ATTEMPTED, WritesHaltedError, apply_plan, is_stopped_error
from omni_provider.sync.current import plan_on_complete_users
from omni_provider.sync.keys import read_keys
from omni_provider.sync.outcome import RowOutcome, RowStatus, format_table, tally, tally_by_action
from omni_provider.sync.plan import SyncPlan
from omni_provider.sync.rows import align_column_case

#: Errors that retrying the task cannot fix (shown for the sample of errors in the summary).
ERROR_SAMPLE_SIZE = 10


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        users. Guards against a broken upstream query blanking everyone. When not given, a mirror run is
        still refused if it would unset attributes of more than 10% of Omni's users.
    :param allow_empty_input: in mirror mode, allow an empty input (which unsets everyone's managed keys).
    :param max_failed_rows: the task fails when rejected rows plus failed writes exceed this (default 0).
    :param max_failed_pct: the same as a percentage of the plan's items.
    :param report_path: where to write the per-row outcomes as JSON lines (a local path or any
        ObjectStoragePath URL such as ``s3://bucket/omni/{{ run_id }}.jsonl``). Ending in ``/`` (or naming an
        existing local directory) it is a folder, and the file is named
        ``<dag>.<task>.<run id>.try<n>.jsonl``. Checked before anything is sent; an existing file is never
        replaced (a fresh name with the try number is used and logged).
    :param fallback_report_dir: local folder for the per-row outcomes when the report cannot be written
        after the writes (default: ``omni-sync-reports`` in the worker's temp directory).
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
        fallback_report_dir: str | None = None,
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
        self.fallback_report_dir = fallback_report_dir
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
        check_sources(self.rows, self.sql, self.sql_conn_id, self.sql_batch_size)

    def _check_settings(self) -> None:
        """Settings only used after the writes (thresholds, report table), checked before any request."""
        resolve_max_changes(self.max_changes, 0)
        evaluate_failures({}, max_failed_rows=self.max_failed_rows, max_failed_pct=self.max_failed_pct)
        if self.report_table:
            check_report_table(self.report_table)
            if not (self.report_conn_id or self.sql_conn_id):
                raise OmniValidationError("report_table needs report_conn_id (or sql_conn_id)")

    def _check_report_sinks(self, naming: ReportNaming) -> str | None:
        """The report file to write (checked writable) and a usable report table, before any request."""
        target = None
        if self.report_path:
            target = report_target(str(self.report_path), naming)
            check_report_location(target)
        if self.report_table:
            check_report_table_location(str(self.report_conn_id or self.sql_conn_id), str(self.report_table))
        return target

    def _read_rows(self) -> list[Mapping[str, Any]]:
        return read_rows(self.rows, self.sql, self.sql_conn_id, self.sql_batch_size)

    # -- run -----------------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        # The summary is pushed to XCom as "sync_summary" in every run, failed ones included: then it says
        # how far the run got ("stage") and why it stopped ("error").
        summary: dict[str, Any] = {"stage": "configuration"}
        try:
            return self._execute(context, summary)
        except OmniError as exc:
            summary.setdefault("error", str(exc))
            raise fail_or_retry(exc) from None
        except BaseException as exc:
            summary.setdefault("error", str(exc) or type(exc).__name__)
            raise
        finally:
            self._push_summary(context, summary)
            if self._hook is not None:
                self._hook.close()

    def _push_summary(self, context: Context, summary: dict[str, Any]) -> None:
        ti = context.get("ti")
        if ti is None:
            return
        try:
            ti.xcom_push(key="sync_summary", value=summary)
        except Exception:  # never let a failing push hide the run's own outcome
            self.log.exception("Could not push sync_summary to XCom")

    def _execute(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        # Configuration errors surface before anything is read or sent.
        spec = self._spec()
        self._check_sources()
        self._check_settings()
        dry_run = parse_bool(self.dry_run, what="dry_run")
        summary.update(mode=spec.mode.value, dry_run=dry_run)
        naming = ReportNaming.from_context(context, self.task_id)
        target = self._check_report_sinks(naming)
        wanted = [
            spec.key,
            *spec.attributes,
            *([spec.display_name_column] if spec.display_name_column else []),
        ]
        summary["stage"] = "reading"
        rows = align_column_case(self._read_rows(), wanted)
        summary["rows"] = len(rows)
        self.log.info(
            "Read %d input rows; managing attributes %s (%s mode)",
            len(rows),
            spec.managed_attributes,
            spec.mode,
        )
        # A missing key column (any mode) or an unreadable key (mirror) stops the run before any request.
        read_keys(rows, spec)

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
        summary["stage"] = "planning"
        plan, users = plan_on_complete_users(client, rows, users, spec, definitions)
        summary["omni_users"] = len(users)
        self.log.info("Plan: %s", plan.counts())
        summary["plan"] = plan.counts()
        try:
            check_max_changes(plan, self.max_changes, len(users), allow_empty_input=self.allow_empty_input)
        except OmniError as exc:
            if not dry_run:
                raise AirflowFailException(str(exc)) from None
            self.log.error("Dry run: this plan would be refused: %s", exc)
            summary["refused"] = str(exc)

        summary["stage"] = "applying"
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
            skipped = sum(1 for o in applied if o.status is RowStatus.FAILED and is_stopped_error(o.error))
            complete = not skipped
            if skipped:
                self.log.warning(
                    "Stopped before %d writes were confirmed; they are reported as failed and a "
                    "re-run applies what is still different",
                    skipped,
                )
        except WritesHaltedError as halted:
            # The circuit breaker: Omni applied a write differently than assumed. Report every row, keep
            # the summary, and fail without a retry (a retry would send the same kind of write again).
            summary["stopped"] = halted.reason
            try:
                summary.update(
                    self._report(
                        context, naming, target, halted.outcomes, client.stats.snapshot(), started, False
                    )
                )
            except Exception:
                self.log.exception("Could not write the sync report")
            self.log.error("%s", halted)
            raise AirflowFailException(str(halted)) from None
        except BaseException:
            # Interrupted (an error, a task timeout): still report every item, but never let a failing
            # report hide why the run stopped. The stage stays "applying": that is where it stopped.
            outcomes = self._all_outcomes(plan, settled)
            try:
                summary.update(
                    self._report(context, naming, target, outcomes, client.stats.snapshot(), started, False)
                )
            except Exception:
                self.log.exception("Could not write the sync report")
            raise
        summary["stage"] = "reporting"
        outcomes = self._all_outcomes(plan, settled)
        summary.update(
            self._report(context, naming, target, outcomes, client.stats.snapshot(), started, complete)
        )
        result = self._verdict(plan, summary)
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
        naming: ReportNaming,
        target: str | None,
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
        problems: list[str] = []
        if target is not None:
            try:
                written = write_report_file(target, outcomes, naming)
            except Exception as exc:
                problems.append(f"report file {target}: {type(exc).__name__}: {_short(exc)}")
            else:
                part["report_path"] = written.url
                if written.renamed:
                    self.log.warning(
                        "A report already exists at %s (an earlier try of this run?); it is kept and this "
                        "try's report is %s",
                        target,
                        written.url,
                    )
                else:
                    self.log.info("Per-row report written to %s", written.url)
        if self.report_table:
            try:
                conn_id = str(self.report_conn_id or self.sql_conn_id)
                write_report_table(conn_id, self.report_table, str(context.get("run_id") or ""), outcomes)
            except Exception as exc:
                problems.append(f"report table {self.report_table}: {type(exc).__name__}: {_short(exc)}")
            else:
                part["report_table"] = self.report_table
        if problems:
            part["report_error"] = "; ".join(problems)
            part["report_fallback_path"] = self._fallback_report(outcomes, naming, part["report_error"])
        return part

    def _fallback_report(self, outcomes: list[RowOutcome], naming: ReportNaming, error: str) -> str | None:
        """Keep the per-row outcomes on the worker's disk; last resort: in the log itself."""
        try:
            url = write_fallback_report(outcomes, naming, self.fallback_report_dir)
        except Exception as exc:
            self.log.error(
                "Could not write the sync report (%s) nor the local fallback (%s); the per-row outcomes "
                "follow in this log",
                error,
                _short(exc),
            )
            for outcome in outcomes:
                self.log.error("outcome %s", json.dumps(outcome.to_record(), default=str))
            return None
        self.log.error(
            "Could not write the sync report (%s); the per-row outcomes are in the local fallback file %s "
            "on this worker",
            error,
            url,
        )
        return url

    def _verdict(self, plan: SyncPlan, summary: dict[str, Any]) -> dict[str, Any]:
        failed_writes = summary["outcomes"][RowStatus.FAILED.value]
        verdict = evaluate_failures(
            plan.counts(),
            failed_writes=failed_writes,
            max_failed_rows=self.max_failed_rows,
            max_failed_pct=self.max_failed_pct,
        )
        report_lost = "report_error" in summary
        where = summary.get("report_path") or summary.get("report_fallback_path")
        if verdict.failed:
            # Never green when a row did not make it, even if the thresholds let the task pass.
            self.log.error(
                "%d of %d items did not sync (%d rejected, %d failed); see errors_sample%s",
                verdict.failed,
                verdict.total,
                summary["outcomes"][RowStatus.REJECTED.value],
                failed_writes,
                f" and {where}" if where else "",
            )
        else:
            self.log.info("All %d items synced: %s", verdict.total, summary["outcomes"])
        lost = (
            f"; the report could not be written ({summary['report_error']}), the per-row outcomes are in "
            f"{summary.get('report_fallback_path') or 'the task log'}"
            if report_lost
            else ""
        )
        if verdict.should_fail:
            # Failed writes may succeed on a task retry (the plan is re-diffed); rejected rows will not.
            exc_type = AirflowException if failed_writes else AirflowFailException
            raise exc_type(f"Omni sync failed: {verdict.reason}{lost}")
        if report_lost:
            # The writes are done; a retry would only re-diff and report "unchanged", so it is no remedy.
            raise AirflowFailException(f"Omni sync finished its writes, but{lost[1:]}")
        summary["stage"] = "done"
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
