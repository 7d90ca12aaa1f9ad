"""The one write loop of every sync target: a pool of paced writes, each plan item settled exactly once.

A target (user attributes, group membership) hands ``run_writes`` its plan as *items* (what the report
lists) and *units* (what is written: one user, one group's change), and the function that writes one unit
and settles its items. This loop does the rest, once for every target:

- **Settle once.** Every item ends with exactly one outcome; items that need no request are settled
  first (``ready``); ``on_outcome`` hears each as it settles, so an interrupted caller can still report
  every item.
- **Canary first.** The first unit goes alone, before any other is submitted: the run's first write is
  judged (through the target's canary gate) before a second one starts, in plan order.
- **Circuit breaker.** When the shared ``WriteGate`` trips, no new write starts, writes in flight finish,
  writes waiting for a paced slot are cancelled, and every item not yet settled is failed as never sent.
- **Stop / interrupt.** ``stop`` (task killed) or an exception in the calling thread (a task timeout) ends
  the run the same way: nothing new is sent, the rest is settled as never sent, the exception propagates.
- **Pause** (a deferrable run, ``pause``): when the next write would wait too long for the rate window,
  no new write starts, writes in flight finish, and ``WritesPaused`` carries what settled; a later call
  with those as ``settled`` goes on from there (``pause.py``).
- **Never sent** is a field of the outcome (``never_sent``), not a message to parse: a snapshot keeps a
  user's state when its write never left, and a summary counts what a re-run will send.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from omni_provider.client import OmniError, OmniScimClient
from omni_provider.errors import OmniCancelledError
from omni_provider.sync.engine.breaker import NOT_ATTEMPTED, STOPPED_PENDING, Halted, WriteGate, halted_error
from omni_provider.sync.engine.outcome import ItemOutcome
from omni_provider.sync.engine.pause import PauseRule, WritesPaused

log = logging.getLogger("omni_provider.sync")


OutcomeT = TypeVar("OutcomeT", bound=ItemOutcome)


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


def workers_for(client: OmniScimClient, requested: int | None = None) -> int:
    """Threads for a batch of requests (writes, look-ups): ``requested``, else enough to keep every key's
    paced slots busy while requests are in flight; more would only queue."""
    if requested is not None:
        return max(1, requested)
    return max(2, min(16, 4 * client.key_count))


class WriteRun(Generic[OutcomeT]):
    """The state of one ``run_writes``: the outcomes, the gate, the stop flags (shared with the workers)."""

    def __init__(
        self,
        items: Sequence[Any],
        outcome: type[OutcomeT],
        gate: WriteGate,
        stop: threading.Event,
        on_outcome: Callable[[int, OutcomeT], None] | None,
    ) -> None:
        self.items = items
        self.outcomes: list[OutcomeT | None] = [None] * len(items)
        self.outcome = outcome
        self.gate = gate
        self.caller_stop = stop
        self.halt = threading.Event()  # set when the calling thread is interrupted
        self.on_outcome = on_outcome
        self.lock = threading.Lock()
        self.done = 0
        self.failed = 0
        # A write waiting at the gate behind a canary has not started: a stop must keep it from going out.
        gate.stopping = lambda: stop.is_set() or self.halt.is_set()

    def stopped(self) -> bool:
        return self.caller_stop.is_set() or self.halt.is_set() or self.gate.tripped

    def why_not_sent(self) -> str:
        return halted_error(self.gate.reason) if self.gate.reason else NOT_ATTEMPTED

    def settle(self, index: int, outcome: OutcomeT, *, write: bool = True) -> None:
        """The item's outcome, unless it has one already (settle once)."""
        with self.lock:
            if self.outcomes[index] is not None:
                return
            self.outcomes[index] = outcome
            if write:
                self.done += 1
                self.failed += outcome.status.value == "failed"
            if self.on_outcome:
                self.on_outcome(index, outcome)

    def fail(
        self, indexes: Sequence[int], error: str, *, never_sent: bool = False, stopped: bool = False
    ) -> None:
        for index in indexes:
            if self.outcomes[index] is not None:
                continue  # settled already (``settle`` checks again under the lock)
            failed = self.outcome.failed(self.items[index], error, never_sent=never_sent, stopped=stopped)
            self.settle(index, failed)

    def not_sent(self, indexes: Sequence[int]) -> None:
        self.fail(indexes, self.why_not_sent(), never_sent=True, stopped=True)


Unit = TypeVar("Unit")


def run_writes(
    client: OmniScimClient,
    items: Sequence[Any],
    units: Sequence[tuple[Sequence[int], Unit]],
    write: Callable[[Unit, WriteRun[OutcomeT]], None],
    outcome: type[OutcomeT],
    *,
    dry_run: bool,
    gate: WriteGate | None = None,
    stop: threading.Event | None = None,
    max_workers: int | None = None,
    on_outcome: Callable[[int, OutcomeT], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    progress_every: float = 30.0,
    pause: PauseRule | None = None,
    settled: Mapping[int, OutcomeT] | None = None,
) -> tuple[list[OutcomeT], WriteGate]:
    """Write every unit; return one ``outcome`` per plan item, in plan order, and the run's gate.

    ``units``: (the indexes of the items a unit settles, the unit); ``write(unit, run)`` sends it and
    settles its items through ``run.settle`` (a unit may settle some items and raise: the rest fail with
    the error). Items that need no request (``outcome.without_write``: rejected, unchanged, a dry run's
    planned) are settled first, and so are the ``settled`` ones (an earlier step of a paused run). With
    ``pause``, ``WritesPaused`` is raised when the rule says so, once the writes in flight are settled.
    """
    gate = gate or WriteGate()
    state = WriteRun(items, outcome, gate, stop or threading.Event(), on_outcome)
    for index, earlier in (settled or {}).items():
        state.settle(index, earlier, write=False)
    for index, item in enumerate(items):
        ready = outcome.without_write(item, dry_run=dry_run)
        if ready is not None:
            state.settle(index, ready, write=False)
    pending = [(indexes, unit) for indexes, unit in units if any(state.outcomes[i] is None for i in indexes)]
    total = sum(len(indexes) for indexes, _ in pending)

    def one(items: Sequence[int], unit: Unit) -> None:
        if state.stopped():
            state.not_sent(items)
            return
        try:
            write(unit, state)
        except Halted:
            state.not_sent(items)
        except OmniCancelledError:
            error = STOPPED_PENDING
            if gate.reason:
                error = f"not confirmed (stopped: {gate.reason}); a re-run applies it if needed"
            state.fail(items, error, stopped=True)
        except OmniError as exc:
            state.fail(items, str(exc))
        except Exception as exc:  # a bug must not lose the rest of the report
            log.exception("Unexpected error writing items %s", list(items)[:5])
            state.fail(items, f"{type(exc).__name__}: {exc}")
        if gate.tripped:
            client.cancel()  # writes waiting for a paced slot or a retry must not go out now

    def progress(started: float) -> Progress:
        with state.lock:
            return Progress(state.done, total, state.failed, time.monotonic() - started)

    started = time.monotonic()
    last_report = started
    reported_done = -1
    paused = [False]
    workers = workers_for(client, max_workers)
    # Bounded submission keeps memory flat and lets a stop request take effect within a few writes.
    window = 4 * workers
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omni-sync") as pool:
            queue = iter(pending)
            in_flight: set[Future[None]] = set()
            waiting: list[tuple[Sequence[int], Any]] = []  # the next unit, taken from the queue

            def submit_next() -> bool:
                unit = waiting.pop() if waiting else next(queue, None)
                if unit is None:
                    return False
                if pause is not None:
                    verdict = pause.admit(len(in_flight))
                    if verdict is not True:
                        waiting.append(unit)
                        paused[0] = verdict is None
                        return False
                in_flight.add(pool.submit(one, *unit))
                return True

            try:
                submit_next()  # the run's first write goes alone: judged before any other is submitted
                while in_flight:
                    finished, _ = wait(in_flight, timeout=1.0, return_when=FIRST_COMPLETED)
                    for future in finished:
                        in_flight.discard(future)
                        future.result()  # one() settles its own items and never raises
                    if finished and not state.stopped():
                        while len(in_flight) < window and submit_next():
                            pass
                    now = time.monotonic()
                    if on_progress and now - last_report >= progress_every:
                        last_report = now
                        snapshot = progress(started)
                        reported_done = snapshot.done
                        on_progress(snapshot)
            except BaseException:
                # Interrupted (task timeout, KeyboardInterrupt): queued writes must not go out while the
                # pool shuts down; writes on the wire finish and settle.
                state.halt.set()
                raise
    finally:
        # Whatever never started (a stop, an interruption, the breaker) is still accounted for; a pause
        # leaves it for the next step.
        if not (paused[0] and not state.stopped()):
            for items, _ in pending:
                state.not_sent(items)
    if paused[0] and not state.stopped() and pause is not None:
        done = {i: o for i, o in enumerate(state.outcomes) if o is not None}
        raise WritesPaused(done, pause.resume_at(), gate.verified_kinds)
    if on_progress and pending:
        final = progress(started)
        if final.done != reported_done:
            on_progress(final)
    missing = [i for i, o in enumerate(state.outcomes) if o is None]
    assert not missing, f"plan items without an outcome: {missing[:5]}"
    return [o for o in state.outcomes if o is not None], gate
