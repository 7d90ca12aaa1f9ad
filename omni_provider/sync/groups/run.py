"""``GroupSyncRun``: one whole group-membership sync, orchestrator-free, of the same shape as ``SyncRun``.

The group target of the engine (``sync.engine``): its reader (``read_memberships``: the rows' emails and
groups, checked before any request), its planner (``build_group_plan``) and its writer
(``apply_group_plan``: one write per changed group through the shared canary gate and circuit breaker).
Reporting, the failure thresholds and the summary are the engine's, as for the attribute sync.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from omni_provider.client import GroupsApi, OmniScimClient
from omni_provider.domain.groups import OmniGroup
from omni_provider.errors import SyncHaltedError
from omni_provider.sync.engine.breaker import NOT_ATTEMPTED
from omni_provider.sync.engine.checks import check_count
from omni_provider.sync.engine.log import RunLog
from omni_provider.sync.engine.outcome import tally_by_action
from omni_provider.sync.engine.plan_artifact import PlanArtifact
from omni_provider.sync.engine.report import ReportSink
from omni_provider.sync.engine.run import EngineRun, Outcome, RunOptions, default_log, every_outcome
from omni_provider.sync.groups.apply import apply_group_plan
from omni_provider.sync.groups.options import GroupSyncOptions, GroupSyncSpec
from omni_provider.sync.groups.outcome import MembershipOutcome, MembershipStatus, tally_by_group
from omni_provider.sync.groups.plan import GroupPlan, build_group_plan, check_group_plan, read_memberships
from omni_provider.sync.groups.plan_file import group_plan_artifact
from omni_provider.sync.users.rows import align_column_case

__all__ = ["GroupSyncOptions", "GroupSyncRun", "GroupSyncSpec", "all_memberships"]


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
        settled: dict[int, MembershipOutcome] = {}
        try:
            applied = apply_group_plan(
                api,
                plan,
                {g.id: g for g in groups},
                dry_run=self.dry_run or "refused" in summary,
                max_workers=self.max_workers,
                max_members_per_write=self.max_members_per_write,
                stop=self._stop,
                on_outcome=settled.__setitem__,
            )
        except BaseException:
            # Interrupted (an error, a task timeout): still report every membership.
            self._report_interrupted(all_memberships(plan, settled), counters_before, started)
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
            self._report_interrupted(applied.outcomes, counters_before, started)
            raise SyncHaltedError(
                f"Omni group sync stopped by its circuit breaker: {applied.breaker}. "
                f"{summary['outcomes']['failed']} memberships not confirmed (see the report); nothing else "
                "was sent after this answer.",
                summary=summary,
            )
        rejected = sum(1 for o in applied.outcomes if o.status is MembershipStatus.REJECTED)
        return self._finish(
            applied.outcomes,
            counters_before,
            started,
            complete=not applied.stopped,
            rejected=rejected,
            total=len(plan.items),
        )


def all_memberships(plan: GroupPlan, settled: Mapping[int, MembershipOutcome]) -> list[MembershipOutcome]:
    """One outcome per plan item: those settled, the rest failed as never sent."""
    return every_outcome(
        len(plan.items),
        settled,
        lambda i: MembershipOutcome.from_item(
            plan.items[i], MembershipStatus.FAILED, error=NOT_ATTEMPTED, never_sent=True
        ),
    )
