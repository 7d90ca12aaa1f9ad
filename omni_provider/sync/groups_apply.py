"""Apply a group plan: one write per changed group (a POST for a new group, else one PATCH carrying all its
adds and removes), the first one alone as a canary, the rest concurrently at the client's pace.

Circuit breaker: every answer is checked by the client; when one shows a change the write did not ask for
(``OmniGroupWriteSemanticsError``), no new write starts, writes in flight finish, and every membership not
yet settled is reported ``failed: not attempted (stopped: <reason>)``. The canary bounds the damage of a
surprise in Omni's semantics to one group whatever the concurrency.
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
from omni_provider.sync.groups_outcome import (
    MembershipOutcome,
    MembershipStatus,
    done_status,
    outcome_without_write,
)
from omni_provider.sync.groups_plan import GroupChange, GroupPlan, MembershipAction

log = logging.getLogger("omni_provider.sync")

STOPPED_PENDING = (
    "not confirmed: the run was stopped while this write was pending; a re-run applies it if needed"
)


def not_attempted(reason: str) -> str:
    return f"not attempted (stopped: {reason})"


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
) -> GroupApplyResult:
    """Send the plan's group writes; one outcome per plan item, in plan order.

    ``max_members_per_write`` splits a group's change into several writes; Omni documents no limit, so
    by default each changed group gets exactly one write.
    """
    caller_stop = stop or threading.Event()
    lock = threading.Lock()
    outcomes: list[MembershipOutcome | None] = [None] * len(plan.items)
    result = GroupApplyResult(outcomes=[])
    reason: dict[str, str] = {}

    def stopped() -> str | None:
        if "why" in reason:
            return reason["why"]
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
            for n, chunk in enumerate(chunks):
                why = stopped()
                if why is not None:
                    fail([i for c in chunks[n:] for i in c], not_attempted(why), group_id)
                    return
                add = [
                    plan.items[i].user_id or "" for i in chunk if plan.items[i].action is MembershipAction.ADD
                ]
                remove = [
                    plan.items[i].user_id or ""
                    for i in chunk
                    if plan.items[i].action is MembershipAction.REMOVE
                ]
                if base is None and change.creates:
                    created = api.create_group(change.group, add)
                    with lock:
                        result.groups_created.append(change.group)
                    log.info("Created Omni group %r (%s)", change.group, created.id)
                    base = created
                target: OmniGroup | str = base if base is not None else str(change.group_id)
                done = api.update_members(target, add=add, remove=remove, display=plan.emails)
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
        except OmniGroupWriteSemanticsError as exc:
            with lock:
                if result.breaker is None:
                    result.breaker = exc
                    reason["why"] = f"group {exc.group!r}: Omni reports {exc.problem}"
            log.error("Circuit breaker: %s", exc)
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
            write(writes[0])  # the canary: verified before any other write starts
        rest = writes[1:]
        if rest and stopped() is None:
            workers = max(1, max_workers) if max_workers else max(2, min(16, 4 * api.client.key_count))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omni-groups") as pool:
                # Each write checks the breaker before it starts, so a trip stops everything not yet begun.
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
        for i, o in enumerate(outcomes):
            if o is None:
                fail([i], not_attempted(why))
    result.outcomes = [o for o in outcomes if o is not None]
    return result
