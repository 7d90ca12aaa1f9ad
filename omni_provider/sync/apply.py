"""Apply a sync plan through the client: paced (the client's per-key pacer), concurrent, and loss-free.

Every plan item ends as exactly one ``RowOutcome``; a stop request (task killed, SIGTERM) leaves the
remaining writes as ``failed`` ("not attempted") so the report is complete and a re-run picks them up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from omni_provider.client import OmniError, OmniScimClient, OmniUser
from omni_provider.client.models import AttributeDefinition
from omni_provider.sync.outcome import RowOutcome, RowStatus, outcome_without_write
from omni_provider.sync.plan import PlanItem, RowAction, SyncPlan

log = logging.getLogger("omni_provider.sync")

NOT_ATTEMPTED = "not attempted: the run was stopped before this write"


@dataclass
class Progress:
    done: int
    total: int
    failed: int
    elapsed: float

    @property
    def eta_seconds(self) -> float | None:
        if self.done == 0:
            return None
        return self.elapsed / self.done * (self.total - self.done)

    def line(self) -> str:
        eta = self.eta_seconds
        eta_text = "?" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta))
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"Sync progress: {self.done}/{self.total} writes ({pct:.0f}%), {self.failed} failed, "
            f"elapsed {self.elapsed:.0f}s, ETA {eta_text}"
        )


def _workers_for(client: OmniScimClient, requested: int | None) -> int:
    # Enough threads to keep every key's paced slots busy while requests are in flight; more only queue.
    if requested is not None:
        return max(1, requested)
    return max(2, min(16, 4 * client.key_count))


def apply_plan(
    client: OmniScimClient,
    plan: SyncPlan,
    users_by_id: Mapping[str, OmniUser],
    *,
    definitions: Mapping[str, AttributeDefinition] | None = None,
    dry_run: bool = False,
    max_workers: int | None = None,
    stop: threading.Event | None = None,
    on_outcome: Callable[[int, RowOutcome], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    progress_every: float = 30.0,
) -> list[RowOutcome]:
    """Send the plan's writes; return one outcome per plan item, in plan order.

    ``on_outcome(index, outcome)`` is called as each item settles, so a caller interrupted mid-run (the
    task killed) still knows which items were settled and can report the rest as not attempted.
    """
    stop = stop or threading.Event()
    outcomes: list[RowOutcome | None] = [None] * len(plan.items)
    pending: list[int] = []
    for index, item in enumerate(plan.items):
        ready = outcome_without_write(item, dry_run=dry_run)
        if ready is None:
            pending.append(index)
        else:
            outcomes[index] = ready
            if on_outcome:
                on_outcome(index, ready)

    started = time.monotonic()
    last_report = started
    failed = 0
    done = 0

    def write(item: PlanItem) -> RowOutcome:
        if stop.is_set():
            return RowOutcome.from_item(item, RowStatus.FAILED, error=NOT_ATTEMPTED)
        try:
            user_id = _apply_item(client, item, users_by_id, definitions)
        except OmniError as exc:
            return RowOutcome.from_item(item, RowStatus.FAILED, error=str(exc))
        except Exception as exc:  # a bug must not lose the rest of the report
            log.exception("Unexpected error writing row %s", item.row_number)
            return RowOutcome.from_item(item, RowStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        return RowOutcome.from_item(item, RowStatus.APPLIED, user_id=user_id)

    with ThreadPoolExecutor(
        max_workers=_workers_for(client, max_workers), thread_name_prefix="omni-sync"
    ) as pool:
        # Bounded submission keeps memory flat and lets a stop request take effect within a few writes.
        window = 4 * (pool._max_workers or 1)
        queue = iter(pending)
        in_flight: dict[Future[RowOutcome], int] = {}

        def submit_next() -> bool:
            index = next(queue, None)
            if index is None:
                return False
            in_flight[pool.submit(write, plan.items[index])] = index
            return True

        for _ in range(window):
            if not submit_next():
                break
        while in_flight:
            finished, _ = wait(list(in_flight), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                index = in_flight.pop(future)
                outcome = future.result()
                outcomes[index] = outcome
                done += 1
                failed += outcome.status is RowStatus.FAILED
                if on_outcome:
                    on_outcome(index, outcome)
                if not stop.is_set():
                    submit_next()
            now = time.monotonic()
            if on_progress and (now - last_report >= progress_every):
                last_report = now
                on_progress(Progress(done, len(pending), failed, now - started))
        # After a stop, whatever was never submitted is still accounted for.
        for index in queue:
            outcome = RowOutcome.from_item(plan.items[index], RowStatus.FAILED, error=NOT_ATTEMPTED)
            outcomes[index] = outcome
            if on_outcome:
                on_outcome(index, outcome)
    if on_progress and pending:
        on_progress(Progress(done, len(pending), failed, time.monotonic() - started))
    missing = [i for i, o in enumerate(outcomes) if o is None]
    assert not missing, f"plan items without an outcome: {missing[:5]}"
    return [o for o in outcomes if o is not None]


def _apply_item(
    client: OmniScimClient,
    item: PlanItem,
    users_by_id: Mapping[str, OmniUser],
    definitions: Mapping[str, AttributeDefinition] | None,
) -> str:
    """One write; returns the user id. Creates go through ``create_user`` (never creates twice)."""
    if item.action is RowAction.CREATE:
        if not item.user_name or not item.display_name:
            raise OmniError("create without an email or display name")  # the planner rejects these
        created = client.create_user(item.user_name, item.display_name, item.attributes or None)
        # If an earlier, lost attempt already created the user, its attributes may still be missing.
        if item.attributes:
            client.update_user(created, attributes=item.attributes, definitions=definitions)
        return created.id
    if item.user_id is None:
        raise OmniError("update without a user id")  # the planner always sets it
    current = users_by_id.get(item.user_id)
    result = client.update_user(
        current if current is not None else item.user_id, attributes=item.attributes, definitions=definitions
    )
    return result.user.id
