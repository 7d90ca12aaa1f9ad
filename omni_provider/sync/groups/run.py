"""``GroupSyncRun``: one whole group-membership sync, orchestrator-free, of the same shape as ``SyncRun``.

The group target of the engine (``sync.engine``): its reader (``read_memberships``: the rows' emails and
groups, checked before any request), its planner (``build_group_plan``) and its writer
(``apply_group_plan``: one write per changed group through the shared canary gate and circuit breaker).
Reporting, the failure thresholds and the summary are the engine's, as for the attribute sync.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Unpack

from omni_provider.client import GroupsApi, OmniScimClient, OmniValidationError
from omni_provider.errors import SyncHaltedError
from omni_provider.sync.engine.breaker import NOT_ATTEMPTED
from omni_provider.sync.engine.run import EngineRun, Outcome, RunOptions, every_outcome
from omni_provider.sync.groups.apply import apply_group_plan
from omni_provider.sync.groups.outcome import MembershipOutcome, MembershipStatus, tally_by_group
from omni_provider.sync.groups.plan import (
    GroupPlan,
    GroupSyncMode,
    build_group_plan,
    check_group_plan,
    managed_group_names,
    read_memberships,
)
from omni_provider.sync.users.outcome import tally_by_action
from omni_provider.sync.users.rows import align_column_case


@dataclass(frozen=True)
class GroupSyncSpec:
    """What a group sync manages, checked: the columns, the managed groups, the mode."""

    user_column: str = "email"
    group_column: str = "group"
    #: The managed groups (NFC, stripped); None: the groups named in the input.
    groups: tuple[str, ...] | None = None
    mode: GroupSyncMode = GroupSyncMode.ADD
    create_missing_groups: bool = False

    @classmethod
    def from_user_args(
        cls,
        *,
        user_column: str = "email",
        group_column: str = "group",
        groups: Sequence[str] | str | None = None,
        mode: str = "add",
        create_missing_groups: bool = False,
    ) -> GroupSyncSpec:
        try:
            checked_mode = GroupSyncMode(mode)
        except ValueError:
            raise OmniValidationError(f"mode must be 'add' or 'mirror', got {mode!r}") from None
        if not isinstance(user_column, str) or not isinstance(group_column, str):
            raise OmniValidationError("user_column and group_column must be column names")
        if not user_column or not group_column or user_column == group_column:
            raise OmniValidationError("user_column and group_column must be two different column names")
        if not isinstance(create_missing_groups, bool):
            shown = repr(create_missing_groups)
            raise OmniValidationError(f"create_missing_groups must be true or false, got {shown}")
        managed = managed_group_names(groups)
        return cls(
            user_column,
            group_column,
            tuple(managed) if managed is not None else None,
            checked_mode,
            create_missing_groups,
        )


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

    def check(self) -> None:
        super().check()
        limit = self.max_members_per_write
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise OmniValidationError("max_members_per_write must be a positive integer")

    def _tables(self, outcomes: Sequence[Outcome]) -> dict[str, Any]:
        by_group = tally_by_group(outcomes)  # type: ignore[arg-type]
        self._log_table("Group sync outcome by group", by_group)
        return {"by_group": by_group, "by_action": tally_by_action(outcomes)}  # type: ignore[arg-type]

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
        self.log.info("Plan: %s", plan.counts())
        summary.update(
            managed_groups=len(plan.managed_groups),
            managed_memberships=plan.managed_memberships,
            plan=plan.counts(),
        )
        self._guard(lambda: check_group_plan(plan, self.max_changes))

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
        summary["stage"] = "reporting"
        summary.update(self._report(applied.outcomes, counters_before, started, complete=not applied.stopped))
        self._judge(_failure_counts(plan, applied.outcomes), summary)
        summary["stage"] = "done"
        return summary


def _failure_counts(plan: GroupPlan, outcomes: Sequence[MembershipOutcome]) -> Mapping[str, int]:
    """The plan's items in the form the failure thresholds count (rejected ones, and all the others)."""
    rejected = sum(1 for o in outcomes if o.status is MembershipStatus.REJECTED)
    return {"rejected": rejected, "update": len(plan.items) - rejected}


def all_memberships(plan: GroupPlan, settled: Mapping[int, MembershipOutcome]) -> list[MembershipOutcome]:
    """One outcome per plan item: those settled, the rest failed as never sent."""
    return every_outcome(
        len(plan.items),
        settled,
        lambda i: MembershipOutcome.from_item(
            plan.items[i], MembershipStatus.FAILED, error=NOT_ATTEMPTED, never_sent=True
        ),
    )
