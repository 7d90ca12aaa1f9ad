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
from omni_provider.client.errors import OmniCancelledError
from omni_provider.client.models import AttributeDefinition
from omni_provider.sync.outcome import RowOutcome, RowStatus, outcome_without_write
from omni_provider.sync.plan import PlanItem, RowAction, SyncPlan

log = logging.getLogger("omni_provider.sync")

NOT_ATTEMPTED = "not attempted: the run was stopped before this write"
#: A write cut short by the stop while it waited (for a paced slot or a retry); Omni may or may not have it.
STOPPED_PENDING = (
    "not confirmed: the run was stopped while this write was pending; a re-run applies it if needed"
)
STOPPED_ERRORS = frozenset({NOT_ATTEMPTED, STOPPED_PENDING})


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

    ``on_outcome(index, outcome)`` is called as each item settles (from worker threads, one call at a
    time), so a caller interrupted mid-run (the task killed or timed out) still knows exactly which items
    were written and can report the rest as not attempted. Setting ``stop`` ends the run early: writes not
    yet started are settled as failed ("not attempted"); writes already on the wire finish and are
    reported as they ended. An exception in the calling thread (e.g. Airflow's task timeout) stops the run
    the same way before it propagates.
    """
    caller_stop = stop or threading.Event()
    halt = threading.Event()  # set when the calling thread is interrupted
    lock = threading.Lock()
    outcomes: list[RowOutcome | None] = [None] * len(plan.items)
    tally = {"done": 0, "failed": 0}

    def stopped() -> bool:
        return caller_stop.is_set() or halt.is_set()

    def settle(index: int, outcome: RowOutcome, *, write: bool) -> None:
        with lock:
            if outcomes[index] is not None:
                return
            outcomes[index] = outcome
            if write:
                tally["done"] += 1
                tally["failed"] += outcome.status is RowStatus.FAILED
            if on_outcome:
                on_outcome(index, outcome)

    pending: list[int] = []
    for index, item in enumerate(plan.items):
        ready = outcome_without_write(item, dry_run=dry_run)
        if ready is None:
            pending.append(index)
        else:
            settle(index, ready, write=False)

    def write(index: int) -> None:
        item = plan.items[index]
        if stopped():
            settle(index, RowOutcome.from_item(item, RowStatus.FAILED, error=NOT_ATTEMPTED), write=True)
            return
        try:
            user_id = _apply_item(client, item, users_by_id, definitions)
        except OmniCancelledError:
            outcome = RowOutcome.from_item(item, RowStatus.FAILED, error=STOPPED_PENDING)
        except OmniError as exc:
            outcome = RowOutcome.from_item(item, RowStatus.FAILED, error=str(exc))
        except Exception as exc:  # a bug must not lose the rest of the report
            log.exception("Unexpected error writing row %s", item.row_number)
            outcome = RowOutcome.from_item(item, RowStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        else:
            outcome = RowOutcome.from_item(item, RowStatus.APPLIED, user_id=user_id)
        settle(index, outcome, write=True)

    def progress(started: float) -> Progress:
        with lock:
            return Progress(tally["done"], len(pending), tally["failed"], time.monotonic() - started)

    started = time.monotonic()
    last_report = started
    reported_done = -1
    workers = _workers_for(client, max_workers)
    # Bounded submission keeps memory flat and lets a stop request take effect within a few writes.
    window = 4 * workers
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omni-sync") as pool:
            queue = iter(pending)
            in_flight: set[Future[None]] = set()

            def submit_next() -> bool:
                index = next(queue, None)
                if index is None:
                    return False
                in_flight.add(pool.submit(write, index))
                return True

            try:
                for _ in range(window):
                    if not submit_next():
                        break
                while in_flight:
                    finished, _ = wait(in_flight, timeout=1.0, return_when=FIRST_COMPLETED)
                    for future in finished:
                        in_flight.discard(future)
                        future.result()  # write() settles its own outcome and never raises
                        if not stopped():
                            submit_next()
                    now = time.monotonic()
                    if on_progress and now - last_report >= progress_every:
                        last_report = now
                        snapshot = progress(started)
                        reported_done = snapshot.done
                        on_progress(snapshot)
            except BaseException:
                # Interrupted (task timeout, KeyboardInterrupt): queued writes must not go out while the
                # pool shuts down; writes on the wire finish and settle.
                halt.set()
                raise
    finally:
        # Whatever never started (a stop, an interruption) is still accounted for.
        for index in pending:
            settle(
                index,
                RowOutcome.from_item(plan.items[index], RowStatus.FAILED, error=NOT_ATTEMPTED),
                write=True,
            )
    if on_progress and pending:
        final = progress(started)
        if final.done != reported_done:
            on_progress(final)
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
