"""``SyncOmniGroupMembershipOperator``: (user, group) rows from the warehouse -> Omni group membership."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from omni_provider._compat import AirflowException, AirflowFailException, BaseOperator, Context
from omni_provider.client import GroupsApi, OmniError, OmniValidationError
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.common import fail_or_retry
from omni_provider.operators.rendered import parse_bool, parse_structure
from omni_provider.operators.report_sink import (
    ReportNaming,
    check_report_location,
    report_target,
    write_fallback_report,
    write_report_file,
)
from omni_provider.operators.row_source import check_sources, read_rows
from omni_provider.sync.groups_apply import apply_group_plan, not_attempted
from omni_provider.sync.groups_outcome import (
    MembershipOutcome,
    MembershipStatus,
    tally_by_group,
    tally_memberships,
)
from omni_provider.sync.groups_plan import (
    GroupPlan,
    GroupSyncMode,
    build_group_plan,
    check_group_plan,
    managed_group_names,
)
from omni_provider.sync.guards import evaluate_failures, resolve_max_changes
from omni_provider.sync.outcome import format_table
from omni_provider.sync.rows import align_column_case

ERROR_SAMPLE_SIZE = 10


class SyncOmniGroupMembershipOperator(BaseOperator):
    """Make the membership of Omni groups match the warehouse, sending only what differs.

    Steps: read the rows (one per membership); read every Omni user and group once (about one request per
    100 of each; a list whose pages shift while it is read is read again, never used); plan per membership
    (add / remove / unchanged / rejected); check the guards; write one request per changed group (a PATCH
    carrying all its adds and removes, or a POST creating it with its members), the first alone as a
    canary; write the per-membership report; return a small summary.

    :param rows: list of dicts (column -> value), a JSON string of one, or an XComArg.
    :param sql: query returning the user and group columns (run through ``sql_conn_id``).
    :param user_column: column holding the user's email (matched case-insensitively, as the attribute sync).
    :param group_column: column holding the group's name (matched exactly).
    :param groups: the managed groups. Others are never changed. ``None``: the groups named in the input.
    :param mode: ``add`` (only adds members) or ``mirror`` (a managed group's members become exactly the
        input's; others are removed).
    :param create_missing_groups: create managed groups that do not exist (otherwise their rows are rejected).
    :param max_changes: refuse a plan changing more memberships than this: a count or a percentage like
        ``"10%"`` of the managed groups' memberships. Without it, mirror mode refuses to remove more than 10%.
    :param max_failed_rows: the task fails when rejected plus failed memberships exceed this.
    :param dry_run: plan and report without writing.
    :param report_path: where to write the per-membership outcomes as JSON lines (local path or any
        ObjectStoragePath URL).
    """

    template_fields: Sequence[str] = (
        "rows",
        "sql",
        "sql_conn_id",
        "groups",
        "mode",
        "dry_run",
        "max_changes",
        "report_path",
        "omni_conn_id",
    )
    template_fields_renderers = {"rows": "json", "groups": "json", "sql": "sql"}
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        rows: Sequence[Mapping[str, Any]] | str | None = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        user_column: str = "email",
        group_column: str = "group",
        groups: Sequence[str] | str | None = None,
        mode: str = "add",
        create_missing_groups: bool = False,
        max_changes: int | str | None = None,
        max_failed_rows: int = 0,
        dry_run: bool | str = False,
        report_path: str | None = None,
        omni_conn_id: str = OmniScimHook.default_conn_name,
        sql_batch_size: int = 5000,
        max_members_per_write: int | None = None,
        max_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rows = rows
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.user_column = user_column
        self.group_column = group_column
        self.groups = groups
        self.mode = mode
        self.create_missing_groups = create_missing_groups
        self.max_changes = max_changes
        self.max_failed_rows = max_failed_rows
        self.dry_run = dry_run  # type: ignore[assignment,method-assign]  # as in the attribute sync
        self.report_path = report_path
        self._naming: ReportNaming | None = None
        self._report_target: str | None = None
        self.omni_conn_id = omni_conn_id
        self.sql_batch_size = sql_batch_size
        self.max_members_per_write = max_members_per_write
        self.max_workers = max_workers
        self._stop = threading.Event()
        self._hook: OmniScimHook | None = None

    def _managed(self) -> list[str] | None:
        groups: Any = self.groups
        if isinstance(groups, str) and groups.lstrip().startswith("["):
            groups = parse_structure(groups, what="groups")  # a rendered template
        return managed_group_names(groups)

    def _check_settings(self) -> GroupSyncMode:
        """Everything that can be wrong in the configuration, before anything is read or sent."""
        check_sources(self.rows, self.sql, self.sql_conn_id, self.sql_batch_size)
        try:
            mode = GroupSyncMode(self.mode)
        except ValueError:
            raise OmniValidationError(f"mode must be 'add' or 'mirror', got {self.mode!r}") from None
        resolve_max_changes(self.max_changes, 0)
        evaluate_failures({}, max_failed_rows=self.max_failed_rows)
        if self.max_members_per_write is not None and self.max_members_per_write < 1:
            raise OmniValidationError("max_members_per_write must be positive")
        self._managed()
        return mode

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
        mode = self._check_settings()
        dry_run = parse_bool(self.dry_run, what="dry_run")
        managed = self._managed()
        # The report location is checked before any request: the report is the audit trail.
        self._naming = ReportNaming.from_context(context, self.task_id)
        self._report_target = report_target(str(self.report_path), self._naming) if self.report_path else None
        if self._report_target is not None:
            check_report_location(self._report_target)
        rows = align_column_case(
            read_rows(self.rows, self.sql, self.sql_conn_id, self.sql_batch_size),
            [self.user_column, self.group_column],
        )
        self.log.info("Read %d membership rows (%s mode)", len(rows), mode.value)

        self._hook = OmniScimHook(omni_conn_id=self.omni_conn_id)
        client = self._hook.get_conn()
        api = GroupsApi(client)
        users = client.list_users()
        omni_groups = api.list_groups()
        self.log.info("Omni has %d users and %d groups", len(users), len(omni_groups))
        plan = build_group_plan(
            rows,
            users,
            omni_groups,
            user_column=self.user_column,
            group_column=self.group_column,
            managed_groups=managed,
            mode=mode,
            create_missing_groups=self.create_missing_groups,
        )
        self.log.info("Plan: %s", plan.counts())
        summary: dict[str, Any] = {
            "mode": mode.value,
            "dry_run": dry_run,
            "rows": plan.row_count,
            "managed_groups": len(plan.managed_groups),
            "managed_memberships": plan.managed_memberships,
            "plan": plan.counts(),
        }
        try:
            check_group_plan(plan, self.max_changes)
        except OmniError as exc:
            if not dry_run:
                raise AirflowFailException(str(exc)) from None
            self.log.error("Dry run: this plan would be refused: %s", exc)
            summary["refused"] = str(exc)

        settled: dict[int, MembershipOutcome] = {}
        try:
            applied = apply_group_plan(
                api,
                plan,
                {g.id: g for g in omni_groups},
                dry_run=dry_run or "refused" in summary,
                max_workers=self.max_workers,
                max_members_per_write=self.max_members_per_write,
                stop=self._stop,
                on_outcome=settled.__setitem__,
            )
        except BaseException:
            outcomes = self._all_outcomes(plan, settled)
            try:
                summary.update(self._report(outcomes, client.stats.snapshot(), started))
            except Exception:
                self.log.exception("Could not write the group sync report")
            raise
        summary.update(self._report(applied.outcomes, client.stats.snapshot(), started))
        summary["groups_created"] = applied.groups_created
        summary["concurrent_additions"] = applied.concurrent_additions
        if applied.concurrent_additions:
            self.log.warning(
                "%d member(s) appeared in written groups without this run adding them: another writer "
                "changed those groups meanwhile (kept)",
                applied.concurrent_additions,
            )
        if applied.stopped:
            summary["stopped"] = applied.stopped
        return self._verdict(plan, applied.outcomes, summary, context, applied.breaker)

    @staticmethod
    def _all_outcomes(plan: GroupPlan, settled: Mapping[int, MembershipOutcome]) -> list[MembershipOutcome]:
        error = not_attempted("the run was interrupted")
        return [
            settled.get(i) or MembershipOutcome.from_item(item, MembershipStatus.FAILED, error=error)
            for i, item in enumerate(plan.items)
        ]

    def _report(
        self, outcomes: list[MembershipOutcome], stats: dict[str, Any], started: float
    ) -> dict[str, Any]:
        by_group = tally_by_group(outcomes)
        part: dict[str, Any] = {
            "outcomes": tally_memberships(outcomes),
            "requests": stats["requests"],
            "requests_by_method": stats["by_method"],
            "retries": stats["retries"],
            "rate_limited": stats["rate_limited"],
            "seconds": round(time.monotonic() - started, 3),
            "errors_sample": [
                {"row": o.row, "user": o.user, "group": o.group, "status": o.status.value, "error": o.error}
                for o in outcomes
                if o.status in (MembershipStatus.FAILED, MembershipStatus.REJECTED)
            ][:ERROR_SAMPLE_SIZE],
        }
        statuses = [s.value for s in MembershipStatus]
        self.log.info("Group sync outcome by group:\n%s", format_table(by_group, statuses))
        if self._report_target is not None and self._naming is not None:
            try:
                written = write_report_file(self._report_target, outcomes, self._naming)
            except Exception as exc:
                part["report_error"] = f"{type(exc).__name__}: {exc}"
                part["report_fallback_path"] = write_fallback_report(outcomes, self._naming)
                self.log.error(
                    "Could not write the group sync report (%s); the per-membership outcomes are in the "
                    "local fallback file %s on this worker",
                    part["report_error"],
                    part["report_fallback_path"],
                )
            else:
                # Never replaces an earlier try's report: a taken name gets a fresh one beside it.
                part["report_path"] = written.url
                self.log.info("Per-membership report written to %s", written.url)
        return part

    def _verdict(
        self,
        plan: GroupPlan,
        outcomes: list[MembershipOutcome],
        summary: dict[str, Any],
        context: Context,
        breaker: OmniError | None,
    ) -> dict[str, Any]:
        counts = summary["outcomes"]
        rejected, failed = counts[MembershipStatus.REJECTED.value], counts[MembershipStatus.FAILED.value]
        # evaluate_failures counts rejected items against all items; the other actions only add to the total.
        verdict = evaluate_failures(
            {"rejected": rejected, "update": len(outcomes) - rejected},
            failed_writes=failed,
            max_failed_rows=self.max_failed_rows,
        )
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key="group_sync_summary", value=summary)
        if breaker is not None:
            # Not retryable: a retry would send the same kind of write into the same surprise.
            raise AirflowFailException(
                f"Omni group sync stopped by its circuit breaker: {breaker}. {failed} memberships not "
                "confirmed (see the report); nothing else was sent after this answer."
            )
        if verdict.failed:
            self.log.error(
                "%d of %d memberships did not sync (%d rejected, %d failed); see errors_sample%s",
                verdict.failed,
                verdict.total,
                rejected,
                failed,
                f" and {summary['report_path']}" if "report_path" in summary else "",
            )
        else:
            self.log.info("All %d memberships synced: %s", verdict.total, counts)
        if verdict.should_fail:
            exc_type = AirflowException if failed else AirflowFailException
            raise exc_type(f"Omni group sync failed: {verdict.reason}")
        return summary

    def on_kill(self) -> None:
        self._stop.set()
        if self._hook is not None:
            self._hook.cancel()
