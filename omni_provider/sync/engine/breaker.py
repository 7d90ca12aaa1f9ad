"""The canary gate and circuit breaker shared by every sync that writes to Omni (user attributes, group
members), and the one wording of rows a stopped run never confirmed.

A write whose kind of change has not yet been seen to work in this run goes alone (a canary) and is
judged before any other write starts; writes of verified kinds then run at full pace. A write whose answer
shows a change it did not ask for trips the breaker: no new write starts, writes in flight finish, and
every row not yet settled is reported ``failed: not attempted (stopped: <reason>)``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from omni_provider.client import OmniError

log = logging.getLogger("omni_provider.sync")

NOT_ATTEMPTED = "not attempted: the run was stopped before this write"
#: A write cut short by the stop while it waited (for a paced slot or a retry); Omni may or may not have it.
STOPPED_PENDING = (
    "not confirmed: the run was stopped while this write was pending; a re-run applies it if needed"
)
STOPPED_ERRORS = frozenset({NOT_ATTEMPTED, STOPPED_PENDING})
#: How rows left unsent by the circuit breaker begin (the reason follows).
HALTED_PREFIX = "not attempted (stopped: "


#: What each kind of change (``change_kinds``, ``group_write_kinds``) means, for the canary's log lines.
_KIND_WORDS = {
    "set": "sets attributes",
    "unset": "clears attributes",
    "displayName": "changes the display name",
    "active": "changes whether the user is active",
    "group-create": "creates a group",
    "group-add": "adds members",
    "group-remove": "removes members",
}


def describe_kinds(kinds: Iterable[str]) -> str:
    """A canary's kinds of change in words: "sets attributes, keeping the others it holds"."""
    kinds = set(kinds)
    words = [_KIND_WORDS.get(kind, kind) for kind in sorted(k for k in kinds if not k.endswith("+others"))]
    keeps = ", keeping the others it holds" if any(k.endswith("+others") for k in kinds) else ""
    return " and ".join(words) + keeps


def canary_line(target: str, kinds: Iterable[str], checked: str) -> str:
    """The log line of a canary write: what it is, in plain words, before the internal name."""
    return (
        f"First write of its kind to {target} ({describe_kinds(kinds)}): sent alone and {checked} before "
        "any other write of that kind (canary)"
    )


def canary_verified_line(target: str) -> str:
    return (
        f"First write to {target} checked: Omni applied it as asked; writes of its kind continue at full pace"
    )


def halted_error(reason: str) -> str:
    return f"{HALTED_PREFIX}{reason})"


def was_never_sent(error: str | None) -> bool:
    """Whether a failed row's write never left: the run stopped, or the breaker tripped, before it."""
    return error is not None and (error == NOT_ATTEMPTED or error.startswith(HALTED_PREFIX))


def is_stopped_error(error: str | None) -> bool:
    """Whether a failed row was never confirmed because the run stopped (killed, or the breaker tripped)."""
    return error is not None and (error in STOPPED_ERRORS or error.startswith(HALTED_PREFIX))


class Halted(Exception):
    """Raised to a write waiting at the gate when the breaker has tripped: it must not be sent."""


class WriteGate:
    """Canary gate and circuit breaker of one run (thread-safe).

    ``hold(kinds)`` admits a write: at once and alongside others when every kind of change it makes has
    been verified in this run; otherwise alone (it waits until no other write is on the wire, and new
    writes wait for it) as a canary. ``verified(kinds)`` ends a canary's probation. ``trip(reason, error)``
    stops everything: writes waiting at the gate get ``Halted``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        #: Also ends a wait at the gate: the run is being stopped (killed, interrupted).
        self.stopping: Callable[[], bool] = lambda: False
        self._verified: set[str] = set()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0
        self.reason: str | None = None
        self.error: OmniError | None = None
        self.canaries = 0

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    def trip(self, reason: str, error: OmniError) -> None:
        with self._cond:
            if self.reason is None:
                self.reason, self.error = reason, error
                log.error("Circuit breaker tripped, no new write will start: %s", error)
            self._cond.notify_all()

    @property
    def verified_kinds(self) -> frozenset[str]:
        """The kinds of write canaries have proved in this run (kept across a deferrable run's pauses)."""
        with self._cond:
            return frozenset(self._verified)

    def verified(self, kinds: frozenset[str]) -> None:
        with self._cond:
            self._verified |= kinds
            self._cond.notify_all()

    @contextmanager
    def hold(self, kinds: frozenset[str]) -> Iterator[bool]:
        """Yields True for a canary (sent alone, to be verified on a fresh read before any other write)."""
        with self._cond:
            alone = not kinds <= self._verified
            if alone:
                self._waiting_exclusive += 1
            try:
                while True:
                    if self.reason is not None or self.stopping():
                        raise Halted()
                    if alone and kinds <= self._verified:
                        # A canary verified these kinds meanwhile: join the others.
                        alone = False
                        self._waiting_exclusive -= 1
                    if alone:
                        if not self._exclusive and self._shared == 0:
                            self._exclusive = True
                            self.canaries += 1
                            break
                    elif not self._exclusive and self._waiting_exclusive == 0:
                        self._shared += 1
                        break
                    self._cond.wait(timeout=0.1)  # also wakes to see a stop request
            finally:
                if alone:
                    self._waiting_exclusive -= 1
        try:
            yield alone
        finally:
            with self._cond:
                if alone:
                    self._exclusive = False
                else:
                    self._shared -= 1
                self._cond.notify_all()
