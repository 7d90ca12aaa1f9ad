"""Per-key sliding-window rate limiter (Omni documents 60 requests per minute per API key)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most ``limit`` accepted requests per key in any ``window``-second interval.

    Limit and window are read through callables so a runtime config change applies at once.
    Rejected requests are not recorded, so a client that keeps retrying is not locked out longer.
    """

    def __init__(
        self,
        limit: Callable[[], int],
        window: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float | None:
        """Record a request; return None if allowed, else seconds until a slot frees."""
        now = self._clock()
        window = self._window()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= self._limit():
                # The slot that frees first is the one taken by the len-limit+1'th newest hit.
                oldest = hits[len(hits) - self._limit()]
                return max(oldest + window - now, 0.0)
            hits.append(now)
            return None

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


def retry_after_seconds(wait: float) -> int:
    """Whole seconds for a Retry-After header, rounded up and never 0."""
    return max(1, math.ceil(wait))
