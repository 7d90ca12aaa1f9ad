"""Apply a group plan: one write per changed group (a POST for a new group, else one PATCH carrying all its
adds and removes), concurrently at the client's pace, behind the same canary gate and circuit breaker as
the attribute sync (``omni_provider.sync.breaker``).

Canary: the first write of each kind (creating a group, adding members, removing members; an add or
remove to a group holding other members is a kind of its own) is sent alone and judged by the client's
check of Omni's answer before any other write starts. So a create does not vouch for a PATCH that removes
members, and at most one group is damaged by a surprise in Omni's semantics, whatever the concurrency.

Circuit breaker: when an answer shows a change the write did not ask for (``OmniGroupWriteSemanticsError``),
no new write starts, writes in flight finish, and every membership not yet settled is reported
``failed: not attempted (stopped: <reason>)``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from omni_provider.client import OmniError
from omni_provider.client.errors import OmniCancelledError, OmniGroupWriteSemanticsError
from omni_provider.client.group_models import OmniGroup
from omni_provider.client.groups import GroupsApi
from omni_provider.sync.apply import workers_for
from omni_provider.sync.breaker import STOPPED_PENDING as STOPPED_PENDING
from omni_provider.sync.breaker import Halted, WriteGate, halted_error
from omni_provider.sync.groups_outcome import (
    MembershipOutcome,
    MembershipStatus,
    done_status,
    outcome_without_write,
)
from omni_provider.sync.groups_plan import GroupChange, GroupPlan, MembershipAction

log = logging.getLogger("omni_provider.sync")

#: The shared wording of a membership the breaker or a stop left unsent (kept under its old name).
not_attempted = halted_error


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
) -> GroupApplyResult:
    """Send the plan's group writes; one outcome per plan item, in plan order.

    ``max_members_per_write`` splits a group's change into several writes; Omni documents no limit, so
    by default each changed group gets exactly one write. ``gate``: the run's canary gate and breaker
    (a fresh one by default).
    """
    caller_stop = stop or threading.Event()
    gate = gate or WriteGate()
    gate.stopping = caller_stop.is_set
    lock = threading.Lock()
    outcomes: list[MembershipOutcome | None] = [None] * len(plan.items)
    result = GroupApplyResult(outcomes=[])

    def stopped() -> str | None:
        if gate.reason is not None:
            return gate.reason
        return "the task was stopped" if caller_stop.is_set() else None

    def settle(index: int, outcome: MembershipOutcome) -> None:
        with lock:
            if outcomes[index] is not None:
                return
            outcomes[index] = outcome
            if on_outcome:
                on_outcome(index, outcome)

    def fail(indexes: Sequence[int], error: str, group_id: str | None = None) -> None:
        for i in indexes:
            settle(
                i,
                MembershipOutcome.from_item(
                    plan.items[i], MembershipStatus.FAILED, error=error, group_id=group_id
                ),
            )

    for index, item in enumerate(plan.items):
        ready = outcome_without_write(item, dry_run=dry_run)
        if ready is not None:
            settle(index, ready)

    def write(change: GroupChange) -> None:
        chunks = _chunks(change, change.items, max_members_per_write)
        group_id = change.group_id
        try:
            base: OmniGroup | None = groups_by_id.get(change.group_id) if change.group_id else None
            for chunk in chunks:
                add = [
                    plan.items[i].user_id or "" for i in chunk if plan.items[i].action is MembershipAction.ADD
                ]
                remove = [
                    plan.items[i].user_id or ""
                    for i in chunk
                    if plan.items[i].action is MembershipAction.REMOVE
                ]
                creates = base is None and change.creates
                kinds = group_write_kinds(base, add, remove, creates=creates)
                with gate.hold(kinds) as canary:
                    if canary:
                        log.info(
                            "Canary write (%s) to group %r: sent alone and checked before any other",
                            ", ".join(sorted(kinds)),
                            change.group,
                        )
                    if creates:
                        created = api.create_group(change.group, add)
                        with lock:
                            result.groups_created.append(change.group)
                        log.info("Created Omni group %r (%s)", change.group, created.id)
                        base = created
                    target: OmniGroup | str = base if base is not None else str(change.group_id)
                    try:
                        done = api.update_members(target, add=add, remove=remove, display=plan.emails)
                    except OmniGroupWriteSemanticsError as exc:
                        gate.trip(f"group {exc.group!r}: Omni reports {exc.problem}", exc)
                        raise
                    if canary and (creates or done.action == "updated"):
                        gate.verified(kinds)
                        log.info("Canary write to group %r verified; continuing", change.group)
                base, group_id = done.group, done.group.id
                if done.concurrent_additions:
                    with lock:
                        result.concurrent_additions += len(done.concurrent_additions)
                for i in chunk:
                    settle(
                        i,
                        MembershipOutcome.from_item(
                            plan.items[i], done_status(plan.items[i]), group_id=group_id
                        ),
                    )
        except Halted:
            # Memberships of earlier chunks are settled already; the rest were never sent.
            fail(change.items, halted_error(stopped() or "the task was stopped"), group_id)
        except OmniGroupWriteSemanticsError as exc:
            fail(change.items, str(exc), group_id)
        except OmniCancelledError:
            fail(change.items, STOPPED_PENDING, group_id)
        except OmniError as exc:
            fail(change.items, str(exc), group_id)
        except Exception as exc:  # a bug must not lose the rest of the report
            log.exception("Unexpected error writing group %r", change.group)
            fail(change.items, f"{type(exc).__name__}: {exc}", group_id)

    writes = [] if dry_run else list(plan.changes)
    try:
        if writes:
            write(writes[0])  # the run's first canary, from this thread: judged before the pool starts
        rest = writes[1:]
        if rest and stopped() is None:
            workers = workers_for(api.client, max_workers or None)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omni-groups") as pool:
                # Every write passes the gate: a new kind goes alone, a trip stops everything not yet begun.
                futures = [pool.submit(write, change) for change in rest]
                try:
                    for future in futures:
                        future.result()  # write() settles its own outcomes and never raises
                except BaseException:
                    # Interrupted (task timeout): nothing new may start while the pool shuts down.
                    caller_stop.set()
                    raise
    finally:
        why = stopped() or "the run ended before this write"
        result.stopped = stopped()
        if isinstance(gate.error, OmniGroupWriteSemanticsError):
            result.breaker = gate.error
        for i, o in enumerate(outcomes):
            if o is None:
                fail([i], halted_error(why))
    result.outcomes = [o for o in outcomes if o is not None]
    return result
