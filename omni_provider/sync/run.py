"""``SyncRun``: one whole sync, orchestrator-free: read Omni, plan, guard, apply, report, judge.

The Airflow operator and the Dagster asset are adapters around this object: they turn their arguments
into a ``SyncSpec`` and rows, build the client, call ``run`` and map its result and errors to their own
world. Nothing here imports an orchestrator.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from omni_provider.client import OmniScimClient, OmniValidationError
from omni_provider.sync.apply import (
    NOT_ATTEMPTED,
    Progress,
    WritesHaltedError,
    apply_plan,
    is_stopped_error,
)
from omni_provider.sync.definitions import RunLog, load_definitions
from omni_provider.sync.errors import (
    PlanTooLargeError,
    SyncFailedError,
    SyncHaltedError,
    SyncReportLostError,
)
from omni_provider.sync.guards import check_max_changes, evaluate_failures, resolve_max_changes
from omni_provider.sync.keys import read_keys
from omni_provider.sync.omni_view import read_omni_view
from omni_provider.sync.options import SyncOptions
from omni_provider.sync.outcome import RowOutcome, RowStatus, format_table, tally, tally_by_action
from omni_provider.sync.plan import SyncPlan
from omni_provider.sync.report import ReportSink
from omni_provider.sync.rows import align_column_case
from omni_provider.sync.snapshot import FileSnapshotStore, SnapshotSettings, SnapshotStore
from omni_provider.sync.snapshot_keeper import SnapshotKeeper
from omni_provider.sync.spec import SyncSpec

#: How many rejected or failed rows the summary quotes (the report file has them all).
ERROR_SAMPLE_SIZE = 10
#: The client counters a summary reports, as the difference over the run.
_COUNTERS = ("requests", "retries", "rate_limited")
#: The input: rows, or a callable reading them (e.g. a SQL query), called in the run's "reading" stage.
RowSource = Iterable[Mapping[str, Any]] | Callable[[], Iterable[Mapping[str, Any]]]


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    failed, "not attempted") before the exception propagates. Whatever happens, ``summary`` says how far the
    run got. A sink that fails after the writes does not lose the report: the outcomes go to
    ``fallback_sink`` (else to the log) and the run ends with ``SyncReportLostError``.

    :param on_progress: called with a ``Progress`` every ``progress_every`` seconds during the writes and
        once at the end; by default the progress line goes to ``log``.
    :param run_id: passed to the sinks (e.g. a column of a report table).
    :param snapshot: diff against the snapshot the last run left instead of listing every user (see
        ``omni_view``); the snapshot is kept up to date with every state Omni confirmed. None: a live diff.
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
        fallback_sink: ReportSink | None = None,
        max_workers: int | None = None,
        progress_every: float = 30.0,
        on_progress: Callable[[Progress], None] | None = None,
        log: RunLog = _default_log,
        run_id: str = "",
        snapshot: SnapshotSettings | None = None,
    ) -> None:
        self.client = client
        self.spec = spec
        self.dry_run = dry_run
        self.max_changes = max_changes
        self.allow_empty_input = allow_empty_input
        self.max_failed_rows = max_failed_rows
        self.max_failed_pct = max_failed_pct
        self.sinks = tuple(sinks)
        self.fallback_sink = fallback_sink
        self.max_workers = max_workers
        self.progress_every = progress_every
        self.log = log
        self.on_progress = on_progress or self._log_progress
        self.run_id = run_id
        self.snapshot = snapshot
        self._stop = threading.Event()
        #: The plan, once made (what the run writes, or would write in a dry run).
        self.plan: SyncPlan | None = None
        #: How far the run got ("stage": configuration, reading, planning, applying, reporting, done), its
        #: numbers, and when it failed why ("error"); filled in as the run goes, so a failed run has one too.
        self.summary: dict[str, Any] = {"stage": "configuration"}

    @classmethod
    def from_options(
        cls,
        client: OmniScimClient,
        options: SyncOptions,
        *,
        sinks: Sequence[ReportSink] = (),
        fallback_sink: ReportSink | None = None,
        make_snapshot_store: Callable[[str], SnapshotStore] = FileSnapshotStore,
        on_progress: Callable[[Progress], None] | None = None,
        log: RunLog = _default_log,
        run_id: str = "",
    ) -> SyncRun:
        """The run the adapters start: the options (checked once, in ``SyncOptions``), plus what only the
        adapter knows (its report sinks, its snapshot store, its log and run id)."""
        return cls(
            client,
            options.spec,
            dry_run=options.dry_run,
            max_changes=options.max_changes,
            allow_empty_input=options.allow_empty_input,
            max_failed_rows=options.max_failed_rows,
            max_failed_pct=options.max_failed_pct,
            sinks=sinks,
            fallback_sink=fallback_sink,
            max_workers=options.max_workers,
            progress_every=options.progress_every,
            on_progress=on_progress,
            log=log,
            run_id=run_id,
            snapshot=options.snapshot(make_snapshot_store),
        )

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
        if self.snapshot is not None:
            self.snapshot.store.check()

    def stop(self) -> None:
        """End the run early: nothing new is sent, writes on the wire finish, the report is still complete."""
        self._stop.set()
        # Writes waiting in a retry back-off give up now instead of after it.
        self.client.cancel()

    def run(self, rows: RowSource) -> dict[str, Any]:
        """The whole sync; returns ``self.summary``. ``rows`` is an iterable of row mappings, or a callable
        returning one (called in the "reading" stage, after the configuration checks)."""
        try:
            return self._run(rows)
        except BaseException as exc:
            # The summary says how far the run got ("stage") and why it stopped, whatever stopped it.
            self.summary.setdefault("error", str(exc) or type(exc).__name__)
            raise

    def _run(self, source: RowSource) -> dict[str, Any]:
        started = time.monotonic()
        summary = self.summary
        spec = self.spec
        self.check()
        summary.update(mode=spec.mode.value, dry_run=self.dry_run)

        summary["stage"] = "reading"
        wanted = [spec.key, *spec.attributes]
        if spec.display_name_column:
            wanted.append(spec.display_name_column)
        rows = align_column_case(collect_rows(source() if callable(source) else source), wanted)
        summary["rows"] = len(rows)
        self.log.info(
            "Read %d input rows; managing attributes %s (%s mode)",
            len(rows),
            list(spec.managed_attributes),
            spec.mode.value,
        )
        # A missing key column (any mode) or an unreadable key (mirror) stops the run before any request.
        keys = read_keys(rows, spec)
        counters_before = self.client.stats.snapshot()
        definitions = load_definitions(self.client, self.log)
        # A live listing or the last run's snapshot; listed users without their attribute map are read one
        # by one when the plan depends on them.
        view = read_omni_view(self.client, rows, spec, definitions, self.snapshot, self.log, keys)
        plan, users = view.plan, view.users
        self.plan = plan
        summary["stage"] = "planning"
        summary["omni_users"] = len(users)
        summary["diff_against"] = view.source
        if self.snapshot is not None:
            summary["diff_reason"] = view.reason
            summary["snapshot"] = {"path": self.snapshot.store.path}
            if view.source == "snapshot":
                summary["snapshot"]["lookups"] = view.lookups
            if view.drift is not None:
                summary["drift"] = view.drift
        self.log.info("Plan: %s", plan.counts())
        summary["plan"] = plan.counts()
        try:
            check_max_changes(plan, self.max_changes, len(users), allow_empty_input=self.allow_empty_input)
        except PlanTooLargeError as exc:
            if not self.dry_run:
                raise
            self.log.error("Dry run: this plan would be refused: %s", exc)
            summary["refused"] = str(exc)

        summary["stage"] = "applying"
        settled: dict[int, RowOutcome] = {}
        dry_run = self.dry_run or "refused" in summary
        keeper = None
        if self.snapshot is not None and not dry_run:
            keeper = SnapshotKeeper(self.snapshot, self.client.base_url, spec, view, self.run_id, self.log)
            # Before any write: a crash from here on leaves the users about to be written uncertain.
            keeper.before_writes(plan)
        try:
            applied = apply_plan(
                self.client,
                plan,
                {u.id: u for u in users},
                definitions=definitions,
                dry_run=dry_run,
                max_workers=self.max_workers,
                stop=self._stop,
                on_outcome=settled.__setitem__,
                on_progress=self.on_progress,
                progress_every=self.progress_every,
                stale_bases=view.stale_ids,
                confirmed=keeper.confirmed if keeper is not None else None,
            )
        except WritesHaltedError as halted:
            # The circuit breaker: Omni applied a write differently than assumed. Report every row, keep
            # the summary, and end without a retry (a retry would send the same kind of write again).
            summary["stopped"] = halted.reason
            self._keep_snapshot(keeper, halted.outcomes)
            self._report_interrupted(halted.outcomes, counters_before, started)
            self.log.error("%s", halted)
            raise SyncHaltedError(str(halted), summary=summary) from halted
        except BaseException:
            # Interrupted (an error, a task timeout): still report every item. The stage stays "applying":
            # that is where it stopped.
            self._keep_snapshot(keeper, None)
            self._report_interrupted(all_outcomes(plan, settled), counters_before, started)
            raise
        self._keep_snapshot(keeper, applied)
        # A stopped run returns normally, with the writes never started as "not attempted".
        skipped = sum(1 for o in applied if o.status is RowStatus.FAILED and is_stopped_error(o.error))
        if skipped:
            self.log.warning(
                "Stopped before %d writes were confirmed; they are reported as failed and a re-run applies "
                "what is still different",
                skipped,
            )
        summary["stage"] = "reporting"
        summary.update(self._report(applied, counters_before, started, complete=not skipped))
        self._judge(plan, summary)
        summary["stage"] = "done"
        return summary

    def _keep_snapshot(self, keeper: SnapshotKeeper | None, outcomes: Sequence[RowOutcome] | None) -> None:
        """The snapshot with every state Omni confirmed; a failure is reported, never fatal: the snapshot
        written before the writes marks their users uncertain, so the next run reads them again."""
        if keeper is None:
            return
        try:
            self.summary["snapshot"].update(keeper.after_writes(outcomes))
        except Exception as exc:
            self.summary["snapshot"]["error"] = _short(exc)
            self.log.error(
                "Could not update the snapshot at %s (%s); the next run reads the users written now from "
                "Omni again",
                keeper.settings.store.label,
                _short(exc),
            )

    def _report_interrupted(
        self, outcomes: Sequence[RowOutcome], counters_before: Mapping[str, Any], started: float
    ) -> None:
        """Every row reported although the run did not finish; a failing report never hides why it stopped."""
        try:
            self.summary.update(self._report(outcomes, counters_before, started, complete=False))
        except Exception:
            self.log.exception("Could not write the sync report")

    def _report(
        self,
        outcomes: Sequence[RowOutcome],
        counters_before: Mapping[str, Any],
        started: float,
        *,
        complete: bool,
    ) -> dict[str, Any]:
        """The summary's outcome part; every row's outcome goes to the sinks (or the fallback)."""
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
        problems: list[str] = []
        for sink in self.sinks:
            try:
                part.update(sink.write(outcomes, run_id=self.run_id))
            except Exception as exc:
                problems.append(f"{sink.label}: {type(exc).__name__}: {_short(exc)}")
        if problems:
            part["report_error"] = "; ".join(problems)
            part["report_fallback_path"] = self._fallback_report(outcomes, part["report_error"])
        return part

    def _fallback_report(self, outcomes: Sequence[RowOutcome], error: str) -> str | None:
        """Keep the per-row outcomes somewhere when a sink failed: the fallback sink, else the log itself."""
        if self.fallback_sink is not None:
            try:
                written = self.fallback_sink.write(outcomes, run_id=self.run_id)
            except Exception as exc:
                self.log.error(
                    "Could not write the sync report (%s) nor the %s (%s); the per-row outcomes follow in "
                    "this log",
                    error,
                    self.fallback_sink.label,
                    _short(exc),
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

    def _judge(self, plan: SyncPlan, summary: dict[str, Any]) -> None:
        failed_writes = summary["outcomes"][RowStatus.FAILED.value]
        verdict = evaluate_failures(
            plan.counts(),
            failed_writes=failed_writes,
            max_failed_rows=self.max_failed_rows,
            max_failed_pct=self.max_failed_pct,
        )
        where = summary.get("report_path") or summary.get("report_fallback_path")
        if verdict.failed:
            # Said at ERROR even when the thresholds let the run pass: a row that did not sync is news.
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
        lost = ""
        if "report_error" in summary:
            kept = summary.get("report_fallback_path") or "the log"
            lost = (
                f"; the report could not be written ({summary['report_error']}), the per-row outcomes are "
                f"in {kept}"
            )
        if verdict.should_fail:
            raise SyncFailedError(f"{verdict.reason}{lost}", summary=summary, retryable=bool(failed_writes))
        if lost:
            # The writes are done; a re-run would only re-diff and report "unchanged": no remedy.
            raise SyncReportLostError(f"Omni sync finished its writes, but{lost[1:]}", summary=summary)


def all_outcomes(plan: SyncPlan, settled: Mapping[int, RowOutcome]) -> list[RowOutcome]:
    """One outcome per plan item: those settled, the rest failed as not attempted."""
    return [
        settled.get(i) or RowOutcome.from_item(item, RowStatus.FAILED, error=NOT_ATTEMPTED)
        for i, item in enumerate(plan.items)
    ]
