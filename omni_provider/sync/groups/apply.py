"""Apply a group plan: one write per changed group (a POST for a new group, else one PATCH carrying all its
adds and removes), concurrently at the client's pace, behind the same canary gate and circuit breaker as
the attribute sync (``omni_provider.sync.engine.breaker``).

Canary: the first write of each kind (creating a group, adding members, removing members; an add or
remove to a group holding other members is a kind of its own) is sent alone and judged by the client's
check of Omni's answer before any other write starts. So a create does not vouch for a PATCH that removes
members, and at most one group is damaged by a surprise in Omni's semantics, whatever the concurrency.

Circuit breaker: when an answer shows a change the write did not ask for (``OmniGroupWriteSemanticsError``),
no new write starts, writes in flight finish, and every membership not yet settled is reported
``failed: not attempted (stopped: <reason>)``.

The loop (settle once, the first write alone, stop and interrupt, never-sent outcomes) is the engine's one
write loop, ``omni_provider.sync.engine.pool``, shared with the attribute sync; this module is the group
target's writer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from omni_provider.client.groups import GroupsApi
from omni_provider.domain.groups import OmniGroup
from omni_provider.errors import OmniGroupWriteSemanticsError
from omni_provider.sync.engine.breaker import WriteGate, canary_line, canary_verified_line
from omni_provider.sync.engine.pause import PauseRule
from omni_provider.sync.engine.pool import WriteRun, run_writes
from omni_provider.sync.groups.outcome import (
    MembershipOutcome,
    done_status,
)
from omni_provider.sync.groups.plan import GroupChange, GroupPlan, MembershipAction

log = logging.getLogger("omni_provider.sync")


def group_write_kinds(
    base: OmniGroup | None, add: Sequence[str], remove: Sequence[str], *, creates: bool
) -> frozenset[str]:
    """What a group write must have seen verified before it may run alongside others (the gate's kinds).

    A create, an add and a remove are each verified on their own. An add or remove to a group holding
    members it does not touch needs a canary that also had such members (``<kind>+others``): only that
    shows whether Omni keeps them (a PATCH applied as a replace of the member list would drop them).
    """
    if creates:
        return frozenset({"group-create"})
    kinds = {kind for kind, ids in (("group-add", add), ("group-remove", remove)) if ids}
    touched = {u.strip().lower() for u in (*add, *remove)}
    unknown = base is None or not base.members_present
    if unknown or (base is not None and base.member_ids - touched):
        kinds |= {f"{kind}+others" for kind in kinds}
    return frozenset(kinds)


@dataclass
class GroupApplyResult:
    outcomes: list[MembershipOutcome]
    #: Why the run stopped early (the circuit breaker or a stop request); None when it ran to the end.
    stopped: str | None = None
    #: The answer that tripped the circuit breaker.
    breaker: OmniGroupWriteSemanticsError | None = None
    groups_created: list[str] = field(default_factory=list)
    #: Members that appeared in a written group without this run adding them (another writer).
    concurrent_additions: int = 0


def _chunks(change: GroupChange, items: Sequence[int], limit: int | None) -> list[list[int]]:
    """The change's items in writes of at most ``limit`` memberships (one write when there is no limit)."""
    if not limit or len(items) <= limit:
        return [list(items)]
    return [list(items[i : i + limit]) for i in range(0, len(items), limit)]


def apply_group_plan(
    api: GroupsApi,
    plan: GroupPlan,
    groups_by_id: Mapping[str, OmniGroup],
    *,
    dry_run: bool = False,
    max_workers: int | None = None,
    max_members_per_write: int | None = None,
    stop: threading.Event | None = None,
    on_outcome: Callable[[int, MembershipOutcome], None] | None = None,
    gate: WriteGate | None = None,
    pause: PauseRule | None = None,
    settled: Mapping[int, MembershipOutcome] | None = None,
) -> GroupApplyResult:
    """Send the plan's group writes (one unit per changed group) through the engine's one write loop
    (``pool.run_writes``: settle once, first write alone, breaker, stop); one outcome per plan item.

    ``max_members_per_write`` splits a group's change into several writes; Omni documents no limit, so
    by default each changed group gets exactly one write. ``gate``: the run's canary gate and breaker
    (a fresh one by default). ``pause`` and ``settled``: a deferrable run's (``pool.run_writes``).
    """
    result = GroupApplyResult(outcomes=[])
    lock = threading.Lock()
    items = plan.items

    def write(change: GroupChange, run: WriteRun[MembershipOutcome]) -> None:
        base: OmniGroup | None = groups_by_id.get(change.group_id) if change.group_id else None
        for chunk in _chunks(change, change.items, max_members_per_write):
            add = [items[i].user_id or "" for i in chunk if items[i].action is MembershipAction.ADD]
            remove = [items[i].user_id or "" for i in chunk if items[i].action is MembershipAction.REMOVE]
            creates = base is None and change.creates
            kinds = group_write_kinds(base, add, remove, creates=creates)
            with run.gate.hold(kinds) as canary:
                if canary:
                    log.info("%s", canary_line(f"group {change.group!r}", kinds, "checked"))
                try:
                    if creates:
                        created = api.create_group(change.group, add)
                        with lock:
                            result.groups_created.append(change.group)
                        log.info("Created Omni group %r (%s)", change.group, created.id)
                        base = created
                    target: OmniGroup | str = base if base is not None else str(change.group_id)
                    done = api.update_members(target, add=add, remove=remove, display=plan.emails)
                except OmniGroupWriteSemanticsError as exc:
                    run.gate.trip(f"group {exc.group!r}: Omni reports {exc.problem}", exc)
                    raise
                if canary and (creates or done.action == "updated"):
                    run.gate.verified(kinds)
                    log.info("%s", canary_verified_line(f"group {change.group!r}"))
            base = done.group
            if done.concurrent_additions:
                with lock:
                    result.concurrent_additions += len(done.concurrent_additions)
            for i in chunk:
                run.settle(i, MembershipOutcome.from_item(items[i], done_status(items[i]), group_id=base.id))

    units = [] if dry_run else [(change.items, change) for change in plan.changes]
    caller_stop = stop or threading.Event()
    outcomes, gate = run_writes(
        api.client,
        items,
        units,
        write,
        MembershipOutcome,
        dry_run=dry_run,
        gate=gate,
        stop=caller_stop,
        max_workers=max_workers,
        on_outcome=on_outcome,
        pause=pause,
        settled=settled,
    )
    result.outcomes = outcomes
    result.stopped = gate.reason or ("the task was stopped" if caller_stop.is_set() else None)
    if isinstance(gate.error, OmniGroupWriteSemanticsError):
        result.breaker = gate.error
    return result
