"""What every sync target's run shares: check -> read -> plan -> guard -> apply -> report -> judge.

A target (user attributes: ``SyncRun``; group membership: ``GroupSyncRun``) supplies its reader, planner
and writer in ``_run``; this base holds the rest, once: the settings checked before any request, ``stop``,
the summary that says how far a run got, the report (every outcome to every sink, a failed sink to the
fallback or the log, reports written beside and never over earlier ones by the sinks), and the verdict
(thresholds of rejected and failed items). Nothing here imports an orchestrator.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypedDict, TypeVar, Unpack

from omni_provider.client import OmniScimClient, OmniValidationError
from omni_provider.errors import PlanTooLargeError, SyncFailedError, SyncReportLostError
from omni_provider.sync.engine.checks import check_run_options
from omni_provider.sync.engine.guards import judge_failures
from omni_provider.sync.engine.log import RunLog, count_lines, count_phrase, log_outcomes
from omni_provider.sync.engine.outcome import Change, format_table, tally
from omni_provider.sync.engine.pause import Deferral, RunDeferred
from omni_provider.sync.engine.report import ReportSink
from omni_provider.sync.engine.steps import Steps, add_counters

#: How many rejected or failed items the summary quotes (the report file has them all).
ERROR_SAMPLE_SIZE = 10
#: The client counters a summary reports, as the difference over the run.
COUNTERS = ("requests", "retries", "rate_limited")
#: The input: rows, or a callable reading them (e.g. a SQL query), called in the run's "reading" stage.
RowSource = Iterable[Mapping[str, Any]] | Callable[[], Iterable[Mapping[str, Any]]]

default_log = logging.getLogger("omni_provider.sync")


def _counter_difference(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    """What a per-method counter grew by over the run (methods that did not grow left out)."""
    return {key: after[key] - before.get(key, 0) for key in sorted(after) if after[key] > before.get(key, 0)}


class Outcome(Protocol):
    """What the engine needs of one item's outcome (a row's, a membership's), whatever the target."""

    @property
    def row(self) -> int | None: ...

    @property
    def key(self) -> str:
        """Whose outcome, in log lines and ``errors_sample``: the user's email, the member and group."""

    @property
    def action(self) -> str: ...

    @property
    def status(self) -> Any: ...

    @property
    def error(self) -> str | None: ...

    def change_lines(self) -> tuple[Change, ...]: ...

    def to_record(self) -> dict[str, Any]: ...


OutcomeT = TypeVar("OutcomeT")


def short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


class RunOptions(TypedDict, total=False):
    """The options every target's run takes (``SyncRun``, ``GroupSyncRun``), with their defaults in
    ``EngineRun``: a target declares only its own."""

    #: Plan and report without writing.
    dry_run: bool
    #: Read, plan and check the guards like a real run (a refused plan raises), then stop: nothing is
    #: written and nothing reported; the plan (``run.plan``) is the output (a plan to review and apply).
    plan_only: bool
    #: Refuse a plan changing more than this: a count or a percentage ("10%") of the target's base.
    max_changes: int | str | None
    #: The run fails when rejected plus failed items exceed this (None: not checked).
    max_failed_rows: int | None
    #: The same as a percentage of the plan's items.
    max_failed_pct: float | str | None
    #: Where every item's outcome goes (``check()`` before any request, ``write`` after the writes).
    sinks: Sequence[ReportSink]
    #: Where the outcomes go when a sink fails after the writes (else the log).
    fallback_sink: ReportSink | None
    #: Threads for the writes (default: enough for every key's paced slots).
    max_workers: int | None
    log: RunLog
    #: Passed to the sinks (e.g. a column of a report table).
    run_id: str
    #: A deferrable run: pause when the rate window is full, its state saved (``steps.py``).
    deferral: Deferral | None


class EngineRun(Steps):
    """The shared part of one sync run. Subclasses set the class attributes and implement ``_run``."""

    #: The target's statuses, in report order.
    statuses: ClassVar[type[StrEnum]]
    #: What one item is called in log lines ("items", "memberships").
    noun: ClassVar[str] = "items"

    def __init__(self, client: OmniScimClient, **options: Unpack[RunOptions]) -> None:
        self.client = client
        self.dry_run = options.get("dry_run", False)
        self.plan_only = options.get("plan_only", False)
        self.max_changes = options.get("max_changes")
        self.max_failed_rows = options.get("max_failed_rows", 0)
        self.max_failed_pct = options.get("max_failed_pct")
        self.sinks = tuple(options.get("sinks", ()))
        self.fallback_sink = options.get("fallback_sink")
        self.max_workers = options.get("max_workers")
        self.log = options.get("log", default_log)
        self.run_id = options.get("run_id", "")
        self._stop = threading.Event()
        self._init_steps(options.get("deferral"))
        #: How far the run got ("stage": configuration, reading, planning, applying, reporting, done), its
        #: numbers, and when it failed why ("error"); filled in as the run goes, so a failed run has one too.
        self.summary: dict[str, Any] = {"stage": "configuration"}

    # -- the target's part ---------------------------------------------------------------------------------

    #: What the target syncs (its ``mode`` is reported).
    spec: Any

    def _run(self, rows: list[Mapping[str, Any]], started: float) -> dict[str, Any]:
        """The target's part, from the rows read to the verdict: read Omni, plan, guard, apply, report."""
        raise NotImplementedError

    def _tables(self, outcomes: Sequence[Outcome]) -> dict[str, Any]:
        """The summary's tables of outcomes (e.g. ``by_action``), logged as well."""
        raise NotImplementedError

    def _sample(self, outcome: Outcome) -> dict[str, Any]:
        return {
            "row": outcome.row,
            "key": outcome.key,
            "status": outcome.status.value,
            "error": outcome.error,
        }

    # -- shared --------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Every setting used only after the writes (thresholds, sinks), checked before any request."""
        check_run_options(
            dry_run=self.dry_run,
            max_changes=self.max_changes,
            max_failed_rows=self.max_failed_rows,
            max_failed_pct=self.max_failed_pct,
            max_workers=self.max_workers,
        )
        for sink in self.sinks:
            sink.check()
        if self.deferral is not None:
            self.deferral.store.check()

    def _check_before_resume(self) -> None:
        self.check()

    def stop(self) -> None:
        """End the run early: nothing new is sent, writes on the wire finish, the report is still complete."""
        self._stop.set()
        # Writes waiting in a retry back-off give up now instead of after it.
        self.client.cancel()

    def run(self, rows: RowSource = ()) -> dict[str, Any]:
        """The whole sync; returns ``self.summary``. ``rows`` is an iterable of row mappings, or a callable
        returning one (called in the "reading" stage, after the configuration checks)."""
        try:
            started = time.monotonic()
            self.check()
            self.summary.update(mode=self.spec.mode.value, dry_run=self.dry_run)
            self.summary["stage"] = "reading"
            result = self._run(self._read_source(rows), started)
        except RunDeferred:
            raise
        except BaseException as exc:
            # The summary says how far the run got ("stage") and why it stopped, whatever stopped it.
            self.summary.setdefault("error", str(exc) or type(exc).__name__)
            if self.summary["stage"] != "configuration":
                self._finish_state()
            raise
        self._finish_state()
        return result

    def _guard(self, check: Callable[[], None]) -> None:
        """The plan's blast-radius guard: a plan it refuses (``PlanTooLargeError``) stops the run before
        any write; a dry run reports the refusal (``refused``) and goes on without writing. A plan-only run
        refuses like a real one: its plan is meant to be applied."""
        try:
            check()
        except PlanTooLargeError as exc:
            if not self.dry_run or self.plan_only:
                raise
            self.log.error("Dry run: this plan would be refused: %s", exc)
            self.summary["refused"] = str(exc)

    def _planned(self, started: float) -> dict[str, Any]:
        """The end of a ``plan_only`` run, after its guards: nothing written, nothing reported."""
        self.summary.update(stage="planned", seconds=round(time.monotonic() - started, 3))
        self.log.info("Planned only: nothing was sent to Omni")
        return self.summary

    def _read_source(self, source: RowSource) -> list[Mapping[str, Any]]:
        return collect_rows(source() if callable(source) else source)

    def _report_interrupted(
        self, outcomes: Sequence[Outcome], counters_before: Mapping[str, Any], started: float
    ) -> None:
        """Every item reported although the run did not finish; a failing report never hides why it
        stopped."""
        try:
            self.summary.update(self._report(outcomes, counters_before, started, complete=False))
        except Exception:
            self.log.exception("Could not write the sync report")

    def _report(
        self,
        outcomes: Sequence[Outcome],
        counters_before: Mapping[str, Any],
        started: float,
        *,
        complete: bool,
    ) -> dict[str, Any]:
        """The summary's outcome part; every outcome goes to the sinks (or the fallback)."""
        part: dict[str, Any] = {
            "outcomes": tally(outcomes, self.statuses),
            **self._tables(outcomes),
            # GET vs writes (``requests_by_method``): how an admin sees that a re-run sent no write.
            **self._counters_so_far(counters_before),
            "seconds": round(time.monotonic() - started, 3),
            "complete": complete,
            "errors_sample": [self._sample(o) for o in outcomes if o.status.value in ("failed", "rejected")][
                :ERROR_SAMPLE_SIZE
            ],
        }
        if self.deferral is not None:
            part["deferrals"] = self.deferrals
        problems: list[str] = []
        for sink in self.sinks:
            try:
                part.update(sink.write(outcomes, run_id=self.run_id))  # type: ignore[arg-type]
            except Exception as exc:
                problems.append(f"{sink.label}: {type(exc).__name__}: {short(exc)}")
        if problems:
            part["report_error"] = "; ".join(problems)
            part["report_fallback_path"] = self._fallback_report(outcomes, part["report_error"])
        log_outcomes(self.log, outcomes, where=part.get("report_path") or part.get("report_fallback_path"))
        return part

    def _counters_so_far(self, counters_before: Mapping[str, Any]) -> dict[str, Any]:
        """The client counters of the run: this step's, plus earlier steps' of a deferred run."""
        counters = self.client.stats.snapshot()
        part = {name: counters[name] - counters_before[name] for name in COUNTERS}
        by_method = _counter_difference(counters["by_method"], counters_before["by_method"])
        if not self._carried:
            return {**part, "requests_by_method": by_method}
        return add_counters(self._carried, {**part, "requests_by_method": by_method}, COUNTERS)

    def _finish(
        self,
        outcomes: Sequence[Outcome],
        counters_before: Mapping[str, Any],
        started: float,
        *,
        complete: bool,
        rejected: int,
        total: int,
    ) -> dict[str, Any]:
        """After the writes: report every outcome, then judge the run (``_judge``). A run its thresholds
        fail is still "done" (every stage ran; ``verdict`` and ``error`` say why it failed); only a report
        that could not be written leaves it at "reporting"."""
        summary = self.summary
        summary["stage"] = "reporting"
        summary.update(self._report(outcomes, counters_before, started, complete=complete))
        if "report_error" not in summary:
            summary["stage"] = "done"
        # Raises when the thresholds fail the run, or when the report was lost (SyncReportLostError).
        self._judge(rejected, total, summary)
        return summary

    def _log_plan(self, counts: Mapping[str, int]) -> None:
        self.log.info("Plan:\n%s", count_lines(counts))

    def _log_table(self, title: str, table: Mapping[str, Mapping[str, int]], first: str = "action") -> None:
        self.log.info("%s:\n%s", title, format_table(table, [s.value for s in self.statuses], first=first))

    def _fallback_report(self, outcomes: Sequence[Outcome], error: str) -> str | None:
        """Keep the outcomes somewhere when a sink failed: the fallback sink, else the log itself."""
        if self.fallback_sink is not None:
            try:
                written = self.fallback_sink.write(outcomes, run_id=self.run_id)  # type: ignore[arg-type]
            except Exception as exc:
                self.log.error(
                    "Could not write the sync report (%s) nor the %s (%s); the per-row outcomes follow in "
                    "this log",
                    error,
                    self.fallback_sink.label,
                    short(exc),
                )
            else:
                path = str(written.get("report_path") or "")
                self.log.error(
                    "Could not write the sync report (%s); the per-row outcomes are in the local fallback "
                    "file %s",
                    error,
                    path,
                )
                return path or None
        else:
            self.log.error(
                "Could not write the sync report (%s); the per-row outcomes follow in this log", error
            )
        for outcome in outcomes:
            self.log.error("outcome %s", json.dumps(outcome.to_record(), default=str))
        return None

    def _judge(self, rejected: int, total: int, summary: dict[str, Any]) -> None:
        """Fail the run (``SyncFailedError``) when more items did not sync than the thresholds allow, or
        (``SyncReportLostError``) when the report could not be written. ``rejected`` and ``total`` are the
        plan's: its rejected items and all its items (the denominator of ``max_failed_pct``)."""
        failed_writes = summary["outcomes"]["failed"]
        verdict = judge_failures(
            rejected,
            total,
            failed_writes=failed_writes,
            max_failed_rows=self.max_failed_rows,
            max_failed_pct=self.max_failed_pct,
            noun=self.noun,
        )
        summary["verdict"] = "failed" if verdict.should_fail else "passed"
        where = summary.get("report_path") or summary.get("report_fallback_path")
        if verdict.failed:
            # Said at ERROR even when the thresholds let the run pass: an item that did not sync is news.
            self.log.error(
                "%d of %d %s did not sync: %d rejected, %d failed writes (each listed above%s)",
                verdict.failed,
                verdict.total,
                self.noun,
                summary["outcomes"]["rejected"],
                failed_writes,
                f"; every {self.noun[:-1]} is in {where}" if where else "",
            )
        else:
            done = "would sync (dry run)" if summary.get("dry_run") else "synced"
            self.log.info(
                "All %d %s %s: %s", verdict.total, self.noun, done, count_phrase(summary["outcomes"])
            )
        lost = ""
        if "report_error" in summary:
            kept = summary.get("report_fallback_path") or "the log"
            error = summary["report_error"]
            lost = f"; the report could not be written ({error}), the per-row outcomes are in {kept}"
        if verdict.should_fail:
            raise SyncFailedError(f"{verdict.reason}{lost}", summary=summary, retryable=bool(failed_writes))
        if lost:
            # The writes are done; a re-run would only re-diff and report "unchanged": no remedy.
            raise SyncReportLostError(f"Omni sync finished its writes, but{lost[1:]}", summary=summary)


def every_outcome(
    count: int, settled: Mapping[int, OutcomeT], unsent: Callable[[int], OutcomeT]
) -> list[OutcomeT]:
    """One outcome per plan item after an interrupted run: those settled, the rest ``unsent(index)``."""
    return [settled.get(i) or unsent(i) for i in range(count)]
