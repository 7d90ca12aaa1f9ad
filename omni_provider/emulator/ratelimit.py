"""Per-key rate limiter (Omni documents 60 requests per minute per API key, not how it counts them).

Two ways of counting, switched by the ``rate_window_mode`` setting, so a client can be checked against
both: ``sliding`` (at most ``limit`` requests in any ``window``-second span) and ``fixed`` (at most
``limit`` per window in consecutive windows, which admits up to twice the limit across a boundary).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

RateWindowMode = Literal["sliding", "fixed"]
RATE_WINDOW_MODES: tuple[RateWindowMode, ...] = ("sliding", "fixed")


class RateLimiter:
    """At most ``limit`` accepted requests per key per window, counted the way ``mode`` says.

    Limit, window and mode are read through callables so a runtime config change applies at once.
    Rejected requests are not recorded, so a client that keeps retrying is not locked out longer.
    Fixed windows start at multiples of ``window`` on the limiter's clock.
    """

    def __init__(
        self,
        limit: Callable[[], int],
        window: Callable[[], float],
        mode: Callable[[], RateWindowMode] = lambda: "sliding",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._mode = mode
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._fixed: dict[str, tuple[int, int]] = {}  # key -> (window number, requests in it)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float | None:
        """Record a request; return None if allowed, else seconds until a slot frees."""
        now = self._clock()
        window = self._window()
        with self._lock:
            if self._mode() == "fixed":
                return self._acquire_fixed(key, now, window)
            return self._acquire_sliding(key, now, window)

    def _acquire_sliding(self, key: str, now: float, window: float) -> float | None:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= self._limit():
            # The slot that frees first is the one taken by the len-limit+1'th newest hit.
            oldest = hits[len(hits) - self._limit()]
            return max(oldest + window - now, 0.0)
        hits.append(now)
        return None

    def _acquire_fixed(self, key: str, now: float, window: float) -> float | None:
        number = math.floor(now / window)
        current, used = self._fixed.get(key, (number, 0))
        if current != number:
            used = 0
        if used >= self._limit():
            return max((number + 1) * window - now, 0.0)
        self._fixed[key] = (number, used + 1)
        # Keep the sliding log too, so a switch of mode at runtime starts from what was accepted.
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        hits.append(now)
        return None

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()
            self._fixed.clear()


def retry_after_seconds(wait: float) -> int:
    """Whole seconds for a Retry-After header, rounded up and never 0."""
    return max(1, math.ceil(wait))
