"""``RecipientSyncRun``: one whole email-only recipients sync, orchestrator-free, of the same shape as
``SyncRun`` and ``GroupSyncRun`` (the third target of the engine).

Its reader checks the rows' keys before any request (``sync.users.keys.read_keys``: a missing key column in
any mode, an unreadable key in mirror mode), reads the attribute definitions and every recipient
(``ceil(recipients / 20)`` pages) or, with ``diff_against="snapshot"``, only the recipients the snapshot
does not know and those it writes (``sync.recipients.view``; the snapshot is kept true by the attribute
sync's ``SnapshotKeeper``, holding every attribute of each recipient), plans with the attribute sync's
planner, refuses a plan over the blast-radius guard of the attribute sync (``check_max_changes``, the
mirror default included), writes in bulk behind a canary (``apply_recipient_plan``) and reports every row
through the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Unpack

from omni_provider.client import OmniScimClient
from omni_provider.client.email_only import EmailOnlyApi
from omni_provider.errors import SyncHaltedError
from omni_provider.sync.engine.log import RunLog
from omni_provider.sync.engine.outcome import tally_by_action
from omni_provider.sync.engine.report import ReportSink
from omni_provider.sync.engine.run import EngineRun, Outcome, RunOptions, default_log
from omni_provider.sync.recipients.apply import apply_recipient_plan
from omni_provider.sync.recipients.options import RecipientSyncOptions
from omni_provider.sync.recipients.view import TARGET, read_recipient_view
from omni_provider.sync.snapshot.format import FileSnapshotStore, SnapshotSettings, SnapshotStore
from omni_provider.sync.snapshot.keeper import SnapshotKeeper, keep_snapshot
from omni_provider.sync.users.definitions import load_definitions
from omni_provider.sync.users.guards import check_max_changes
from omni_provider.sync.users.keys import read_keys
from omni_provider.sync.users.omni_view import describe_view
from omni_provider.sync.users.outcome import RowOutcome, RowStatus
from omni_provider.sync.users.plan import SyncPlan
from omni_provider.sync.users.rows import align_column_case
from omni_provider.sync.users.run import all_outcomes
from omni_provider.sync.users.spec import SyncSpec

__all__ = ["RecipientSyncOptions", "RecipientSyncRun"]


class RecipientSyncRun(EngineRun):
    """Make the managed attributes of Omni's email-only recipients match ``rows`` (one row per email).

    Errors as ``SyncRun``: ``SyncFailedError`` over the thresholds (rows Omni refused count as rejected),
    ``SyncHaltedError`` when the canary or the breaker stopped the writes, ``SyncReportLostError`` when a
    sink failed after the writes; interrupted, it still reports every row.
    """

    statuses = RowStatus
    noun = "recipients"

    def __init__(
        self,
        client: OmniScimClient,
        spec: SyncSpec,
        *,
        allow_empty_input: bool = False,
        snapshot: SnapshotSettings | None = None,
        **options: Unpack[RunOptions],
    ) -> None:
        super().__init__(client, **options)
        self.spec = spec
        self.allow_empty_input = allow_empty_input
        #: Diff against the snapshot the last run left (None: list every recipient).
        self.snapshot = snapshot
        #: The plan, once made (None before the "planning" stage).
        self.plan: SyncPlan | None = None

    @classmethod
    def from_options(
        cls,
        client: OmniScimClient,
        options: RecipientSyncOptions,
        *,
        sinks: Sequence[ReportSink] = (),
        fallback_sink: ReportSink | None = None,
        make_snapshot_store: Callable[[str], SnapshotStore] = FileSnapshotStore,
        log: RunLog = default_log,
        run_id: str = "",
    ) -> RecipientSyncRun:
        """The run the adapters start: the options (checked once, in ``RecipientSyncOptions``), plus what
        only the adapter knows (its report sinks, its snapshot store, its log and run id)."""
        run_options = options.run_options()
        run_options.update({"sinks": sinks, "fallback_sink": fallback_sink, "log": log, "run_id": run_id})
        return cls(
            client,
            options.spec,
            allow_empty_input=options.allow_empty_input,
            snapshot=options.snapshot(make_snapshot_store),
            **run_options,
        )

    def check(self) -> None:
        super().check()
        if self.snapshot is not None:
            self.snapshot.store.check()

    def _tables(self, outcomes: Sequence[Outcome]) -> dict[str, Any]:
        by_action = tally_by_action(outcomes)
        self._log_table("Recipient sync outcome by action", by_action)
        return {"by_action": by_action}

    def _sample(self, outcome: Outcome) -> dict[str, Any]:
        assert isinstance(outcome, RowOutcome)
        return {**super()._sample(outcome), "key": outcome.key}

    def _run(self, source: list[Mapping[str, Any]], started: float) -> dict[str, Any]:
        summary = self.summary
        spec = self.spec
        rows = align_column_case(source, [spec.key, *spec.attributes])
        summary["rows"] = len(rows)
        self.log.info(
            "Read %d input rows; managing recipient attributes %s (%s mode)",
            len(rows),
            list(spec.managed_attributes),
            spec.mode.value,
        )
        # A missing key column (any mode) or an unreadable key (mirror) stops the run before any request.
        keys = read_keys(rows, spec)
        counters_before = self.client.stats.snapshot()
        definitions = load_definitions(self.client, self.log)
        api = EmailOnlyApi(self.client)
        # Every recipient listed, or the snapshot plus the recipients it does not know and those written.
        view = read_recipient_view(api, rows, spec, definitions, self.snapshot, self.log, keys)
        plan, recipients = view.plan, view.users

        summary["stage"] = "planning"
        summary["omni_recipients"] = len(recipients)
        describe_view(summary, view, self.snapshot)
        self.plan = plan
        self.log.info("Plan: %s", plan.counts())
        summary["plan"] = plan.counts()
        self._guard(
            lambda: check_max_changes(
                plan, self.max_changes, len(recipients), allow_empty_input=self.allow_empty_input
            )
        )

        summary["stage"] = "applying"
        settled: dict[int, RowOutcome] = {}
        dry_run = self.dry_run or "refused" in summary
        keeper = None
        if self.snapshot is not None and not dry_run:
            keeper = SnapshotKeeper(
                self.snapshot, self.client.base_url, spec, view, self.run_id, self.log, target=TARGET
            )
            # Before any write: a crash from here on leaves the recipients about to be written uncertain.
            keeper.before_writes(plan)
        try:
            applied = apply_recipient_plan(
                api,
                plan,
                {r.id: r for r in recipients},
                definitions,
                dry_run=dry_run,
                max_workers=self.max_workers,
                stop=self._stop,
                on_outcome=settled.__setitem__,
                confirmed=keeper.confirmed if keeper is not None else None,
            )
        except BaseException:
            # Interrupted (an error, a task timeout): still report every row, and keep the snapshot true.
            keep_snapshot(keeper, None, summary, self.log)
            self._report_interrupted(all_outcomes(plan, settled), counters_before, started)
            raise
        keep_snapshot(keeper, applied.outcomes, summary, self.log)
        summary["write_requests"] = applied.write_requests
        if applied.stopped:
            summary["stopped"] = applied.stopped
        if applied.breaker is not None:
            # Not retryable: a retry would send the same kind of write into the same surprise.
            self._report_interrupted(applied.outcomes, counters_before, started)
            raise SyncHaltedError(
                f"Omni recipient sync stopped by its circuit breaker: {applied.breaker}. "
                f"{summary['outcomes']['failed']} rows not confirmed (see the report); nothing else was "
                "sent after this answer. Do not re-run until this is understood.",
                summary=summary,
            )
        summary["stage"] = "reporting"
        summary.update(self._report(applied.outcomes, counters_before, started, complete=not applied.stopped))
        rejected = sum(1 for o in applied.outcomes if o.status is RowStatus.REJECTED)
        self._judge(rejected, len(plan.items), summary)
        summary["stage"] = "done"
        return summary
