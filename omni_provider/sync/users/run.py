"""``SyncRun``: one whole sync, orchestrator-free: read Omni, plan, guard, apply, report, judge.

The Airflow operator and the Dagster asset are adapters around this object: they turn their arguments
into a ``SyncSpec`` and rows, build the client, call ``run`` and map its result and errors to their own
world. Nothing here imports an orchestrator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Unpack

from pydantic import TypeAdapter

from omni_provider.client import OmniScimClient, OmniUser, OmniWrongUserError
from omni_provider.domain.models import AttributeDefinition
from omni_provider.errors import SyncHaltedError
from omni_provider.sync.engine.breaker import WriteGate
from omni_provider.sync.engine.log import RunLog
from omni_provider.sync.engine.outcome import tally_by_action
from omni_provider.sync.engine.pause import Deferral, PauseRule, RunDeferred
from omni_provider.sync.engine.plan_artifact import PlanArtifact
from omni_provider.sync.engine.report import ReportSink
from omni_provider.sync.engine.run import (
    ERROR_SAMPLE_SIZE,
    EngineRun,
    Outcome,
    RowSource,
    RunOptions,
    collect_rows,
    default_log,
    every_outcome,
)
from omni_provider.sync.engine.state import fingerprint
from omni_provider.sync.snapshot.format import FileSnapshotStore, SnapshotSettings, SnapshotStore
from omni_provider.sync.snapshot.keeper import SnapshotKeeper, keep_snapshot
from omni_provider.sync.users.apply import (
    NOT_ATTEMPTED,
    Progress,
    WritesHaltedError,
    apply_plan,
)
from omni_provider.sync.users.definitions import load_definitions
from omni_provider.sync.users.guards import check_max_changes, failure_base
from omni_provider.sync.users.keys import read_keys
from omni_provider.sync.users.omni_view import OmniView, describe_view, read_omni_view
from omni_provider.sync.users.options import SyncOptions
from omni_provider.sync.users.outcome import RowOutcome, RowStatus
from omni_provider.sync.users.plan import PlanItem, PlanItems, SyncPlan
from omni_provider.sync.users.plan_file import plan_artifact
from omni_provider.sync.users.rows import align_column_case
from omni_provider.sync.users.spec import SyncMode, SyncSpec

_ITEMS: TypeAdapter[list[PlanItem]] = TypeAdapter(list[PlanItem])

__all__ = ["ERROR_SAMPLE_SIZE", "RowSource", "SyncRun", "all_outcomes", "collect_rows"]


class SyncRun(EngineRun):
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

    statuses = RowStatus
    outcome_type = RowOutcome
    target = "user_attributes"
    noun = "rows"

    def __init__(
        self,
        client: OmniScimClient,
        spec: SyncSpec,
        *,
        allow_empty_input: bool = False,
        progress_every: float = 30.0,
        on_progress: Callable[[Progress], None] | None = None,
        snapshot: SnapshotSettings | None = None,
        **options: Unpack[RunOptions],
    ) -> None:
        super().__init__(client, **options)
        self.spec = spec
        self.allow_empty_input = allow_empty_input
        self.progress_every = progress_every
        self.on_progress = on_progress or self._log_progress
        self.snapshot = snapshot
        #: The plan, once made (what the run writes, or would write in a dry run).
        self.plan: SyncPlan | None = None
        # What the writes are based on (the users as listed, the attribute definitions), and the snapshot
        # view when diffing against one: kept for the apply stage (and a deferrable run's state).
        self._bases: Mapping[str, OmniUser] = {}
        self._definitions: Mapping[str, AttributeDefinition] | None = None
        self._stale_bases: frozenset[str] = frozenset()
        #: Keeps the snapshot true over the writes (a snapshot run that writes; every step of a deferred one).
        self._keeper: SnapshotKeeper | None = None

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
        log: RunLog = default_log,
        run_id: str = "",
        deferral: Deferral | None = None,
        plan_only: bool = False,
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
            deferral=deferral,
            plan_only=plan_only,
        )

    def _log_progress(self, progress: Progress) -> None:
        self.log.info(progress.line())

    def check(self) -> None:
        super().check()
        if self.snapshot is not None:
            self.snapshot.store.check()

    def _run(self, source: list[Mapping[str, Any]], started: float) -> dict[str, Any]:
        summary = self.summary
        spec = self.spec
        wanted = [spec.key, *spec.attributes]
        if spec.display_name_column:
            wanted.append(spec.display_name_column)
        rows = align_column_case(source, wanted)
        summary["rows"] = len(rows)
        self.log.info(
            "Read %d input rows; managing the attributes %s (%s mode)",
            len(rows),
            ", ".join(spec.managed_attributes),
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
        describe_view(summary, view, self.snapshot)
        summary["plan"] = plan.counts()
        self._log_plan(summary["plan"])
        self._guard(
            lambda: check_max_changes(
                plan, self.max_changes, len(users), allow_empty_input=self.allow_empty_input
            )
        )
        if self.plan_only:
            return self._planned(started)
        return self._apply(plan, users, definitions, counters_before, started, view=view)

    def _apply(
        self,
        plan: SyncPlan,
        users: Sequence[OmniUser],
        definitions: Mapping[str, AttributeDefinition] | None,
        counters_before: Mapping[str, Any],
        started: float,
        *,
        view: OmniView | None = None,
    ) -> dict[str, Any]:
        """The stages after the plan: apply (paced, canary, breaker), keep the snapshot, report, judge.
        ``users``: the Omni states the writes are based on; ``view``: how they were read (snapshot runs)."""
        summary = self.summary
        spec = self.spec
        summary["stage"] = "applying"
        self.plan = plan
        self._bases = {u.id: u for u in users}
        self._definitions = definitions
        self._stale_bases = frozenset(view.stale_ids) if view is not None else frozenset()
        dry_run = self.dry_run or "refused" in summary
        keeper = None
        if self.snapshot is not None and view is not None and not dry_run:
            keeper = SnapshotKeeper(self.snapshot, self.client.base_url, spec, view, self.run_id, self.log)
            # Before any write: a crash from here on leaves the users about to be written uncertain.
            keeper.before_writes(plan)
        self._keeper = keeper
        return self._continue({}, frozenset(), started, counters_before)

    def _continue(
        self,
        settled: Mapping[int, Any],
        verified: frozenset[str],
        started: float,
        counters_before: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The apply stage onwards: write, report, judge (from ``settled`` when a deferred run resumes)."""
        summary = self.summary
        plan = self.plan
        assert plan is not None
        keeper = self._keeper
        before = counters_before if counters_before is not None else self.client.stats.snapshot()
        dry_run = self.dry_run or "refused" in summary
        collected: dict[int, RowOutcome] = {}

        def attempt(done: Mapping[int, Any], gate: WriteGate, pause: PauseRule | None) -> list[RowOutcome]:
            return apply_plan(
                self.client,
                plan,
                self._bases,
                definitions=self._definitions,
                dry_run=dry_run,
                max_workers=self.max_workers,
                stop=self._stop,
                on_outcome=collected.__setitem__,
                on_progress=self.on_progress,
                progress_every=self.progress_every,
                stale_bases=self._stale_bases,
                confirmed=keeper.confirmed if keeper is not None else None,
                gate=gate,
                pause=pause,
                settled=done,
            )

        try:
            applied = self._writing(attempt, settled, verified, lambda: self._counters_so_far(before))
        except RunDeferred:
            raise
        except WritesHaltedError as halted:
            # The circuit breaker: Omni applied a write differently than assumed. Report every row, keep
            # the summary, and end without a retry (a retry would send the same kind of write again).
            summary["stopped"] = halted.reason
            if keeper is not None and isinstance(halted.cause, OmniWrongUserError):
                keeper.distrust()
            self._keep_snapshot(keeper, halted.outcomes)
            self._report_interrupted(halted.outcomes, before, started)
            self.log.error("%s", halted)
            raise SyncHaltedError(str(halted), summary=summary) from halted
        except BaseException:
            # Interrupted (an error, a task timeout): still report every item. The stage stays "applying":
            # that is where it stopped.
            self._keep_snapshot(keeper, None)
            self._report_interrupted(all_outcomes(plan, {**settled, **collected}), before, started)
            raise
        self._keep_snapshot(keeper, applied)
        # A stopped run returns normally, with the writes never started as "not attempted".
        skipped = sum(1 for o in applied if o.status is RowStatus.FAILED and o.stopped)
        if skipped:
            self.log.warning(
                "Stopped before %d writes were confirmed; they are reported as failed and a re-run applies "
                "what is still different",
                skipped,
            )
        rejected, total = failure_base(plan.counts())
        return self._finish(applied, before, started, complete=not skipped, rejected=rejected, total=total)

    # -- a deferrable run's state ----------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        spec = self.spec
        return fingerprint(
            self.target,
            dict(spec.attributes),
            spec.match_on,
            spec.mode.value,
            spec.key_column,
            spec.display_name_column,
            self.max_changes,
            self.allow_empty_input,
            # A state kept with a snapshot is continued only by a run keeping it, and the reverse.
            "snapshot" if self.snapshot is not None else "omni",
        )

    def _plan_state(self) -> dict[str, Any]:
        plan = self.plan
        assert plan is not None
        written = {item.user_id for item in plan.writes() if item.user_id}
        return {
            "items": _ITEMS.dump_python(list(plan.items), mode="json"),
            "mode": plan.mode.value,
            "managed_attributes": list(plan.managed_attributes),
            "row_count": plan.row_count,
            "empty_input": plan.empty_input,
            "user_count": plan.user_count,
            # The users the writes are based on (as listed): a resumed write sends only what differs.
            "users": [
                self._bases[i].model_dump(mode="json", by_alias=True, exclude_unset=True)
                for i in sorted(written)
                if i in self._bases
            ],
            "definitions": None
            if self._definitions is None
            else [
                d.model_dump(mode="json", by_alias=True, exclude_unset=True)
                for d in self._definitions.values()
            ],
            "stale": sorted(self._stale_bases),
        }

    def _load_plan_state(self, state: Mapping[str, Any]) -> None:
        items = _ITEMS.validate_python(state["items"])
        self.plan = SyncPlan(
            PlanItems(items, [item.key for item in items]),
            SyncMode(state["mode"]),
            tuple(state["managed_attributes"]),
            int(state["row_count"]),
            empty_input=bool(state["empty_input"]),
            user_count=int(state["user_count"]),
        )
        # Parsed when a write needs it: a late step writes only the last few of them.
        self._bases = _ParsedOnUse({str(user["id"]): user for user in state["users"]})
        definitions = state["definitions"]
        self._definitions = (
            None
            if definitions is None
            else {d.name: d for d in (AttributeDefinition.model_validate(x) for x in definitions)}
        )
        self._stale_bases = frozenset(state["stale"])

    def _all_outcomes(self, settled: Mapping[int, Any]) -> list[Any]:
        assert self.plan is not None
        return all_outcomes(self.plan, settled)

    def _progress_state(self) -> dict[str, Any]:
        # The users planned and what Omni confirmed so far: the last step keeps the snapshot true with them.
        return {"snapshot": self._keeper.state()} if self._keeper is not None else {}

    def _load_progress_state(self, state: Mapping[str, Any]) -> None:
        if self.snapshot is not None and "snapshot" in state:
            self._keeper = SnapshotKeeper.resumed(
                self.snapshot,
                self.client.base_url,
                self.spec,
                self.run_id,
                self.log,
                state["snapshot"],
                planned_bases=self._bases,
            )

    def _keep_snapshot(self, keeper: SnapshotKeeper | None, outcomes: Sequence[RowOutcome] | None) -> None:
        """The snapshot with every state Omni confirmed (``keep_snapshot``)."""
        keep_snapshot(keeper, outcomes, self.summary, self.log)

    def plan_artifact(self) -> PlanArtifact:
        if self.plan is None:
            raise RuntimeError("no plan yet: run() makes it")
        return plan_artifact(self.plan, self.spec, omni=self.client.base_url, run_id=self.run_id)

    def _tables(self, outcomes: Sequence[Outcome]) -> dict[str, Any]:
        by_action = tally_by_action(outcomes)  # type: ignore[arg-type]
        self._log_table("Sync outcome by action", by_action)
        return {"by_action": by_action}


class _ParsedOnUse(Mapping[str, OmniUser]):
    """Users as a resumed step's state holds them (JSON), each parsed on first use."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw
        self._parsed: dict[str, OmniUser] = {}

    def __getitem__(self, user_id: str) -> OmniUser:
        if user_id not in self._parsed:
            self._parsed[user_id] = OmniUser.model_validate(self._raw[user_id])
        return self._parsed[user_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def all_outcomes(plan: SyncPlan, settled: Mapping[int, RowOutcome]) -> list[RowOutcome]:
    """One outcome per plan item: those settled, the rest failed as never sent."""
    return every_outcome(
        len(plan.items),
        settled,
        lambda i: RowOutcome.from_item(plan.items[i], RowStatus.FAILED, error=NOT_ATTEMPTED, never_sent=True),
    )
