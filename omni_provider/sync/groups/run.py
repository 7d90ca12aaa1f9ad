"""``GroupSyncRun``: one whole group-membership sync, orchestrator-free, of the same shape as ``SyncRun``.

The group target of the engine (``sync.engine``): its reader (``read_memberships``: the rows' emails and
groups, checked before any request), its planner (``build_group_plan``) and its writer
(``apply_group_plan``: one write per changed group through the shared canary gate and circuit breaker).
Reporting, the failure thresholds and the summary are the engine's, as for the attribute sync.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from pydantic import TypeAdapter

from omni_provider.client import GroupsApi, OmniScimClient
from omni_provider.domain.groups import OmniGroup
from omni_provider.errors import SyncHaltedError
from omni_provider.sync.engine.breaker import NOT_ATTEMPTED, WriteGate
from omni_provider.sync.engine.checks import check_count
from omni_provider.sync.engine.log import RunLog
from omni_provider.sync.engine.outcome import tally_by_action
from omni_provider.sync.engine.pause import Deferral, PauseRule, RunDeferred
from omni_provider.sync.engine.plan_artifact import PlanArtifact
from omni_provider.sync.engine.report import ReportSink
from omni_provider.sync.engine.run import EngineRun, Outcome, RunOptions, default_log, every_outcome
from omni_provider.sync.engine.state import fingerprint
from omni_provider.sync.groups.apply import apply_group_plan
from omni_provider.sync.groups.options import GroupSyncOptions, GroupSyncSpec
from omni_provider.sync.groups.outcome import MembershipOutcome, MembershipStatus, tally_by_group
from omni_provider.sync.groups.plan import GroupPlan, build_group_plan, check_group_plan, read_memberships
from omni_provider.sync.groups.plan_file import group_plan_artifact
from omni_provider.sync.users.rows import align_column_case

__all__ = ["GroupSyncOptions", "GroupSyncRun", "GroupSyncSpec", "all_memberships"]

_PLAN: TypeAdapter[GroupPlan] = TypeAdapter(GroupPlan)


class GroupSyncRun(EngineRun):
    """Make the membership of Omni groups match ``rows`` (one row per (user, group) membership).

    ``run(rows)`` reads the rows and checks their keys (mirror mode: one unreadable email or group stops
    the run before any request), reads every Omni user and group, plans, refuses a plan over
    ``max_changes`` (a dry run reports the refusal), writes one request per changed group (the first of
    each kind alone, as a canary), hands every membership's outcome to each sink and returns the summary.
    Errors as ``SyncRun``: ``SyncFailedError`` over the thresholds, ``SyncHaltedError`` when the circuit
    breaker tripped, ``SyncReportLostError`` when a sink failed after the writes; interrupted, it still
    reports every membership.
    """

    statuses = MembershipStatus
    noun = "memberships"
    outcome_type = MembershipOutcome
    target = "group_membership"

    def __init__(
        self,
        client: OmniScimClient,
        spec: GroupSyncSpec,
        *,
        max_members_per_write: int | None = None,
        **options: Unpack[RunOptions],
    ) -> None:
        super().__init__(client, **options)
        self.spec = spec
        self.max_members_per_write = max_members_per_write
        #: The plan, once made (None before the "planning" stage).
        self.plan: GroupPlan | None = None
        #: The groups as listed: what the writes are based on.
        self._bases: dict[str, OmniGroup] = {}

    @classmethod
    def from_options(
        cls,
        client: OmniScimClient,
        options: GroupSyncOptions,
        *,
        sinks: Sequence[ReportSink] = (),
        fallback_sink: ReportSink | None = None,
        log: RunLog = default_log,
        run_id: str = "",
        deferral: Deferral | None = None,
        plan_only: bool = False,
    ) -> GroupSyncRun:
        """The run the adapters start: the options (checked once, in ``GroupSyncOptions``), plus what only
        the adapter knows (its report sinks, its log and run id)."""
        run_options = options.run_options()
        run_options.update(
            {
                "sinks": sinks,
                "fallback_sink": fallback_sink,
                "log": log,
                "run_id": run_id,
                "deferral": deferral,
                "plan_only": plan_only,
            }
        )
        return cls(client, options.spec, max_members_per_write=options.max_members_per_write, **run_options)

    def check(self) -> None:
        super().check()
        check_count("max_members_per_write", self.max_members_per_write)

    def _tables(self, outcomes: Sequence[Outcome]) -> dict[str, Any]:
        by_group = tally_by_group(outcomes)  # type: ignore[arg-type]
        self._log_table("Group sync outcome by group", by_group, "group")
        return {"by_group": by_group, "by_action": tally_by_action(outcomes)}  # type: ignore[arg-type]

    def plan_artifact(self) -> PlanArtifact:
        if self.plan is None:
            raise RuntimeError("no plan yet: run() makes it")
        return group_plan_artifact(self.plan, omni=self.client.base_url, run_id=self.run_id)

    def _sample(self, outcome: Outcome) -> dict[str, Any]:
        assert isinstance(outcome, MembershipOutcome)
        return {**super()._sample(outcome), "user": outcome.user, "group": outcome.group}

    def _run(self, source: list[Mapping[str, Any]], started: float) -> dict[str, Any]:
        summary = self.summary
        spec = self.spec
        rows = align_column_case(source, [spec.user_column, spec.group_column])
        # A missing column (any mode) or an unreadable email or group (mirror) stops the run here.
        memberships = read_memberships(
            rows, user_column=spec.user_column, group_column=spec.group_column, mode=spec.mode
        )
        summary["rows"] = len(memberships)
        self.log.info("Read %d membership rows (%s mode)", len(memberships), spec.mode.value)
        counters_before = self.client.stats.snapshot()
        api = GroupsApi(self.client)
        users = self.client.list_users()
        groups = api.list_groups()
        self.log.info("Omni has %d users and %d groups", len(users), len(groups))

        summary["stage"] = "planning"
        summary.update(omni_users=len(users), omni_groups=len(groups))
        plan = build_group_plan(
            memberships,
            users,
            groups,
            managed_groups=list(spec.groups) if spec.groups is not None else None,
            mode=spec.mode,
            create_missing_groups=spec.create_missing_groups,
        )
        self.plan = plan
        self._log_plan(plan.counts())
        summary.update(
            managed_groups=len(plan.managed_groups),
            managed_memberships=plan.managed_memberships,
            plan=plan.counts(),
        )
        self._guard(lambda: check_group_plan(plan, self.max_changes))
        if self.plan_only:
            return self._planned(started)
        return self._apply(api, plan, groups, counters_before, started)

    def _apply(
        self,
        api: GroupsApi,
        plan: GroupPlan,
        groups: Sequence[OmniGroup],
        counters_before: Mapping[str, Any],
        started: float,
    ) -> dict[str, Any]:
        """The stages after the plan: one write per changed group (canary, breaker), report, judge."""
        summary = self.summary
        summary["stage"] = "applying"
        self._bases = {g.id: g for g in groups}
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
        before = counters_before if counters_before is not None else self.client.stats.snapshot()
        api = GroupsApi(self.client)
        collected: dict[int, MembershipOutcome] = {}

        def attempt(done: Mapping[int, Any], gate: WriteGate, pause: PauseRule | None) -> Any:
            return apply_group_plan(
                api,
                plan,
                self._bases,
                dry_run=self.dry_run or "refused" in summary,
                max_workers=self.max_workers,
                max_members_per_write=self.max_members_per_write,
                stop=self._stop,
                on_outcome=collected.__setitem__,
                gate=gate,
                pause=pause,
                settled=done,
            )

        try:
            applied = self._writing(attempt, settled, verified, lambda: self._counters_so_far(before))
        except RunDeferred:
            raise
        except BaseException:
            # Interrupted (an error, a task timeout): still report every membership.
            self._report_interrupted(all_memberships(plan, {**settled, **collected}), before, started)
            raise
        summary.update(
            groups_created=applied.groups_created, concurrent_additions=applied.concurrent_additions
        )
        if applied.concurrent_additions:
            self.log.warning(
                "%d member(s) appeared in written groups without this run adding them: another writer "
                "changed those groups meanwhile (kept)",
                applied.concurrent_additions,
            )
        if applied.stopped:
            summary["stopped"] = applied.stopped
        if applied.breaker is not None:
            # Not retryable: a retry would send the same kind of write into the same surprise.
            self._report_interrupted(applied.outcomes, before, started)
            raise SyncHaltedError(
                f"Omni group sync stopped by its circuit breaker: {applied.breaker}. "
                f"{summary['outcomes']['failed']} memberships not confirmed (see the report); nothing else "
                "was sent after this answer.",
                summary=summary,
            )
        rejected = sum(1 for o in applied.outcomes if o.status is MembershipStatus.REJECTED)
        return self._finish(
            applied.outcomes,
            before,
            started,
            complete=not applied.stopped,
            rejected=rejected,
            total=len(plan.items),
        )

    # -- a deferrable run's state ----------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        spec = self.spec
        groups = list(spec.groups) if spec.groups is not None else None
        return fingerprint(
            self.target,
            spec.user_column,
            spec.group_column,
            groups,
            spec.mode.value,
            spec.create_missing_groups,
            self.max_changes,
            self.max_members_per_write,
        )

    def _plan_state(self) -> dict[str, Any]:
        plan = self.plan
        assert plan is not None
        written = {change.group_id for change in plan.changes if change.group_id}
        return {
            **_PLAN.dump_python(plan, mode="json"),
            # The groups the writes are based on (as listed).
            "groups": [
                self._bases[i].model_dump(mode="json", by_alias=True, exclude_unset=True)
                for i in sorted(written)
                if i in self._bases
            ],
        }

    def _load_plan_state(self, state: Mapping[str, Any]) -> None:
        self.plan = _PLAN.validate_python({k: v for k, v in state.items() if k != "groups"})
        groups = [OmniGroup.model_validate(group) for group in state["groups"]]
        self._bases = {group.id: group for group in groups}

    def _all_outcomes(self, settled: Mapping[int, Any]) -> list[Any]:
        assert self.plan is not None
        return all_memberships(self.plan, settled)


def all_memberships(plan: GroupPlan, settled: Mapping[int, MembershipOutcome]) -> list[MembershipOutcome]:
    """One outcome per plan item: those settled, the rest failed as never sent."""
    return every_outcome(
        len(plan.items),
        settled,
        lambda i: MembershipOutcome.from_item(
            plan.items[i], MembershipStatus.FAILED, error=NOT_ATTEMPTED, never_sent=True
        ),
    )
