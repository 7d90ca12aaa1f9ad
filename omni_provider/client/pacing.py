"""Client-side pacing: each API key sends at most ``rate`` requests per minute, evenly spaced.

Hand-written because no library on hand does what we need together: several keys with the next request
going to whichever key frees first, a per-key penalty after a 429 (with or without ``Retry-After``), an
injectable clock for tests, and thread safety for the sync's worker threads. Even spacing (rather than
a bursty token bucket) keeps us inside any sliding window the server may use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_RATE_PER_MINUTE = 60.0
#: Fraction of the limit we aim for: clock skew and network jitter can bunch requests at the server.
DEFAULT_SAFETY = 0.98


@dataclass
class _KeySlot:
    next_at: float = 0.0
    sent: int = 0


class KeyPacer:
    """Hands out send slots across ``key_count`` keys, each limited to ``rate_per_minute``."""

    def __init__(
        self,
        key_count: int,
        rate_per_minute: float = DEFAULT_RATE_PER_MINUTE,
        *,
        window_seconds: float = 60.0,
        safety: float = DEFAULT_SAFETY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if key_count < 1:
            raise ValueError("at least one API key is needed")
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        if not 0 < safety <= 1:
            raise ValueError("safety must be in (0, 1]")
        self.rate_per_minute = rate_per_minute
        self.interval = window_seconds / (rate_per_minute * safety)
        self._slots = [_KeySlot() for _ in range(key_count)]
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    @property
    def key_count(self) -> int:
        return len(self._slots)

    def reserve(self) -> tuple[int, float]:
        """Book the earliest free slot; returns (key index, seconds to wait before sending)."""
        with self._lock:
            now = self._clock()
            index = min(range(len(self._slots)), key=lambda i: self._slots[i].next_at)
            slot = self._slots[index]
            start = max(now, slot.next_at)
            slot.next_at = start + self.interval
            slot.sent += 1
            return index, start - now

    def acquire(self) -> int:
        """Block until a key may send; returns its index."""
        index, wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return index

    def penalize(self, index: int, seconds: float) -> None:
        """Push a key's next slot back (after a 429), so other keys take the load meanwhile."""
        with self._lock:
            slot = self._slots[index]
            slot.next_at = max(slot.next_at, self._clock() + seconds)

    def sent_per_key(self) -> list[int]:
        with self._lock:
            return [s.sent for s in self._slots]
