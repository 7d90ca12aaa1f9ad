"""When a deferrable run stops writing and hands the wait for Omni's rate window to its orchestrator.

The pacer sends up to its limit at once, then makes the next request wait for the window to free. A run
that holds a worker (an Airflow slot) only to sleep there wastes it; a deferrable run instead sends what
the window allows now and, once the next request would wait at least ``min_defer_seconds``, pauses: the
write loop lets the writes in flight finish, settles nothing more, and raises ``WritesPaused`` with the
moment every key's window is empty again. From that moment a fresh client (a fresh pacer, with an empty
log) paces exactly, so nothing about the pacer has to survive the pause.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omni_provider.client.pacing import KeyPacer
from omni_provider.sync.engine.state import DEFAULT_RESUME_WITHIN, RunStateStore

#: The shortest wait handed on: shorter ones cost less in the pacer than a deferral and a resume.
DEFAULT_MIN_DEFER_SECONDS = 10.0


@dataclass
class PauseRule:
    """Asked by the write loop before each write: send it now, wait for the writes in flight, or pause."""

    pacer: KeyPacer
    min_defer_seconds: float = DEFAULT_MIN_DEFER_SECONDS

    def admit(self, in_flight: int) -> bool | None:
        """True: send the next write now. False: not now, ask again when a write in flight finishes (each
        may still book a request). None: pause (nothing is in flight and the next request would wait at
        least ``min_defer_seconds``)."""
        if self.pacer.free_now() > in_flight:
            return True
        if in_flight:
            return False
        return True if self.pacer.next_free_in() < self.min_defer_seconds else None

    def resume_at(self) -> float:
        """The wall-clock moment (epoch seconds) every key's window is empty again."""
        return time.time() + self.pacer.clear_in()


class WritesPaused(Exception):
    """The write loop paused (``PauseRule``): ``settled`` holds every item settled so far (by index), the
    rest is to be written after ``resume_at`` (epoch seconds); ``verified``: the kinds of write the canary
    gate has seen work."""

    def __init__(self, settled: Mapping[int, Any], resume_at: float, verified: frozenset[str]) -> None:
        super().__init__(f"writes paused until {resume_at:.3f}")
        self.settled = dict(settled)
        self.resume_at = resume_at
        self.verified = verified


@dataclass
class Deferral:
    """A deferrable run's settings (the run option ``deferral``)."""

    #: Where the run's state goes between steps (``state.py``).
    store: RunStateStore
    min_defer_seconds: float = DEFAULT_MIN_DEFER_SECONDS
    #: A retry continues from a state younger than this (seconds).
    resume_within: float = DEFAULT_RESUME_WITHIN
    #: Epoch seconds past which nothing more is sent (an orchestrator's execution timeout counted from the
    #: run's first step); the run then ends with a complete report.
    deadline: float | None = None


class RunDeferred(Exception):
    """A deferrable run paused: its state is saved at ``state_path``; call ``resume`` on a fresh run (any
    process) at or after ``resume_at`` (epoch seconds). ``deferrals``: how often it paused so far;
    ``deadline``: its deadline (epoch seconds), if any."""

    def __init__(self, state_path: str, resume_at: float, deferrals: int, deadline: float | None) -> None:
        super().__init__(f"deferred until {resume_at:.3f}; state at {state_path}")
        self.state_path = state_path
        self.resume_at = resume_at
        self.deferrals = deferrals
        self.deadline = deadline
