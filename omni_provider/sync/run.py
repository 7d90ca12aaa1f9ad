"""``SyncRun``: one whole sync, orchestrator-free: read Omni, plan, guard, apply, report, judge.

The Airflow operator and the Dagster asset are adapters around this object: they turn their arguments
into a ``SyncSpec`` and rows, build the client, call ``run`` and map its result and errors to their own
world. Nothing here imports an orchestrator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from omni_provider.client import OmniScimClient, OmniValidationError
from omni_provider.client.errors import PlanTooLargeError
from omni_provider.sync.apply import NOT_ATTEMPTED, STOPPED_ERRORS, Progress, apply_plan
from omni_provider.sync.definitions import RunLog, load_definitions
from omni_provider.sync.errors import SyncFailedError
from omni_provider.sync.guards import check_max_changes, evaluate_failures, resolve_max_changes
from omni_provider.sync.outcome import RowOutcome, RowStatus, format_table, tally, tally_by_action
from omni_provider.sync.plan import SyncPlan, build_plan
from omni_provider.sync.report import ReportSink
from omni_provider.sync.rows import align_column_case
from omni_provider.sync.spec import SyncSpec

#: How many rejected or failed rows the summary quotes (the report file has them all).
ERROR_SAMPLE_SIZE = 10
#: The client counters a summary reports, as the difference over the run.
_COUNTERS = ("requests", "retries", "rate_limited")

_default_log = logging.getLogger("omni_provider.sync")


def collect_rows(rows: object) -> list[Mapping[str, Any]]:
    """The input as a list of row mappings, or a clear error before any request."""
    if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Iterable):
        kind = type(rows).__name__
        raise OmniValidationError(f"rows must be a list of dicts (column -> value), not {kind}")
    collected: list[Mapping[str, Any]] = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise OmniValidationError(f"row {number} is a {type(row).__name__}, not a dict (column -> value)")
        collected.append(row)
    return collected


class SyncRun:
    """Make Omni's user attributes match ``rows`` for the attributes ``spec`` manages.

    ``run(rows)`` reads every Omni user and the attribute definitions, plans, refuses a plan over
    ``max_changes`` (a dry run reports the refusal instead), applies the writes paced over the client's keys
    (``stop()`` ends it early, from any thread), hands every row's outcome to each sink and returns the
    summary. When more rows did not sync than ``max_failed_rows`` / ``max_failed_pct`` allow it raises
    ``SyncFailedError`` carrying that summary. Interrupted mid-run, it still reports every row (the rest as
    failed, "not attempted") before the exception propagates.

    :param on_progress: called with a ``Progress`` every ``progress_every`` seconds during the writes and
        once at the end; by default the progress line goes to ``log``.
    :param run_id: passed to the sinks (e.g. a column of a report table).
    """

    def __init__(
        self,
        client: OmniScimClient,
        spec: SyncSpec,
        *,
        dry_run: bool = False,
        max_changes: int | str | None = None,
        allow_empty_input: bool = False,
        max_failed_rows: int | None = 0,
        max_failed_pct: float | str | None = None,
        sinks: Sequence[ReportSink] = (),
        max_workers: int | None = None,
        progress_every: float = 30.0,
        on_progress: Callable[[Progress], None] | None = None,
        log: RunLog = _default_log,
        run_id: str = "",
    ) -> None:
        self.client = client
        self.spec = spec
        self.dry_run = dry_run
        self.max_changes = max_changes
        self.allow_empty_input = allow_empty_input
        self.max_failed_rows = max_failed_rows
        self.max_failed_pct = max_failed_pct
        self.sinks = tuple(sinks)
        self.max_workers = max_workers
        self.progress_every = progress_every
        self.log = log
        self.on_progress = on_progress or self._log_progress
        self.run_id = run_id
        self._stop = threading.Event()

    def _log_progress(self, progress: Progress) -> None:
        self.log.info(progress.line())

    def check(self) -> None:
        """Every setting used only after the writes (thresholds, sinks), checked before any request."""
        if not isinstance(self.dry_run, bool):
            raise OmniValidationError(f"dry_run must be true or false, got {self.dry_run!r}")
        resolve_max_changes(self.max_changes, 0)
        evaluate_failures({}, max_failed_rows=self.max_failed_rows, max_failed_pct=self.max_failed_pct)
        for sink in self.sinks:
            sink.check()

    def stop(self) -> None:
        """End the run early: nothing new is sent, writes on the wire finish, the report is still complete."""
        self._stop.set()
        # Writes waiting in a retry back-off give up now instead of after it.
        self.client.cancel()

    def run(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        started = time.monotonic()
        self.check()
        spec = self.spec
        wanted = [spec.key, *spec.attributes]
        if spec.display_name_column:
            wanted.append(spec.display_name_column)
        input_rows = align_column_case(collect_rows(rows), wanted)
        self.log.info(
            "Read %d input rows; managing attributes %s (%s mode)",
            len(input_rows),
            list(spec.managed_attributes),
            spec.mode.value,
        )
        counters_before = self.client.stats.snapshot()

        definitions = load_definitions(self.client, self.log)
        users = self.client.list_users()
        self.log.info("Omni has %d users", len(users))
        plan = build_plan(input_rows, users, spec, definitions)
        self.log.info("Plan: %s", plan.counts())

        summary: dict[str, Any] = {
            "mode": spec.mode.value,
            "dry_run": self.dry_run,
            "rows": plan.row_count,
            "omni_users": len(users),
            "plan": plan.counts(),
        }
        try:
            check_max_changes(plan, self.max_changes, len(users), allow_empty_input=self.allow_empty_input)
        except PlanTooLargeError as exc:
            if not self.dry_run:
                raise
            self.log.error("Dry run: this plan would be refused: %s", exc)
            summary["refused"] = str(exc)

        settled: dict[int, RowOutcome] = {}
        try:
            applied = apply_plan(
                self.client,
                plan,
                {u.id: u for u in users},
                definitions=definitions,
                dry_run=self.dry_run or "refused" in summary,
                max_workers=self.max_workers,
                stop=self._stop,
                on_outcome=settled.__setitem__,
                on_progress=self.on_progress,
                progress_every=self.progress_every,
            )
        except BaseException:
            # Interrupted (an error, a task timeout): still report every item, but never let a failing
            # report hide why the run stopped.
            try:
                summary.update(self._report(plan, settled, counters_before, started, complete=False))
            except Exception:
                self.log.exception("Could not write the sync report")
            raise
        # A stopped run returns normally, with the writes never started as "not attempted".
        skipped = sum(1 for o in applied if o.status is RowStatus.FAILED and o.error in STOPPED_ERRORS)
        if skipped:
            self.log.warning(
                "Stopped before %d writes were confirmed; they are reported as failed and a re-run applies "
                "what is still different",
                skipped,
            )
        summary.update(self._report(plan, settled, counters_before, started, complete=not skipped))
        self._judge(plan, summary)
        return summary

    def _report(
        self,
        plan: SyncPlan,
        settled: Mapping[int, RowOutcome],
        counters_before: Mapping[str, Any],
        started: float,
        *,
        complete: bool,
    ) -> dict[str, Any]:
        outcomes = all_outcomes(plan, settled)
        counters = self.client.stats.snapshot()
        by_action = tally_by_action(outcomes)
        part: dict[str, Any] = {
            "outcomes": tally(outcomes),
            "by_action": by_action,
            **{name: counters[name] - counters_before[name] for name in _COUNTERS},
            "seconds": round(time.monotonic() - started, 3),
            "complete": complete,
            "errors_sample": [
                {"row": o.row, "status": o.status.value, "error": o.error}
                for o in outcomes
                if o.status in (RowStatus.FAILED, RowStatus.REJECTED)
            ][:ERROR_SAMPLE_SIZE],
        }
        self.log.info("Sync outcome by action:\n%s", format_table(by_action))
        for sink in self.sinks:
            written = sink.write(outcomes, run_id=self.run_id)
            part.update(written)
            self.log.info("Per-row report written: %s", written)
        return part

    def _judge(self, plan: SyncPlan, summary: dict[str, Any]) -> None:
        failed_writes = summary["outcomes"][RowStatus.FAILED.value]
        verdict = evaluate_failures(
            plan.counts(),
            failed_writes=failed_writes,
            max_failed_rows=self.max_failed_rows,
            max_failed_pct=self.max_failed_pct,
        )
        if verdict.failed:
            # Said at ERROR even when the thresholds let the run pass: a row that did not sync is news.
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
            raise SyncFailedError(str(verdict.reason), summary=summary, retryable=bool(failed_writes))


def all_outcomes(plan: SyncPlan, settled: Mapping[int, RowOutcome]) -> list[RowOutcome]:
    """One outcome per plan item: those settled, the rest failed as not attempted."""
    return [
        settled.get(i) or RowOutcome.from_item(item, RowStatus.FAILED, error=NOT_ATTEMPTED)
        for i, item in enumerate(plan.items)
    ]
