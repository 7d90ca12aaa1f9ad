"""Client-side pacing: per API key, never more than ``limit`` requests in any window-length span.

Omni allows 60 requests a minute per key and does not say whether it counts in fixed or sliding windows.
A sliding-window log per key is correct for both: if no span of one window ever holds more than ``limit``
of our requests, no fixed window can either. So up to ``limit`` requests go at once, and a long run holds
the whole limit instead of an evenly spaced fraction of it.

What makes it exact without trusting clocks or network timing: a request counts from when it is sent
until one window after its answer came back. Omni stamps a request somewhere between those two moments,
so counting that way covers every stamp Omni can have made (``release`` records the answer).

Hand-written because no library on hand does what we need together: several keys with the next request
going to whichever key frees first, a per-key rest after a 429 (with or without ``Retry-After``), an
injectable clock and sleep for tests, and thread safety for the sync's worker threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_RATE_PER_MINUTE = 60.0
DEFAULT_WINDOW_SECONDS = 60.0
#: Share of each key's limit left unused by default (raise it when other tools share the key).
DEFAULT_MARGIN = 0.0
MAX_MARGIN = 0.9


@dataclass
class _KeyLog:
    #: When the answers of finished requests came back, oldest first (each still counts one window).
    answered: deque[float] = field(default_factory=deque)
    #: Requests booked and not yet answered: they count until their answer plus one window.
    in_flight: int = 0
    #: Bookings on one key are handed out in time order, so the log above stays a simple queue.
    last_booked: float = -math.inf
    rest_until: float = -math.inf
    #: Bumped by every 429, so a booking made before the rest is taken back and made again.
    rests: int = 0
    sent: int = 0


class KeyPacer:
    """Hands out send slots across ``key_count`` keys, each allowed ``limit`` requests per ``window``.

    ``rate_per_minute`` is the limit per window (named after Omni's default window of one minute);
    ``margin`` is the share of it left for other tools that use the same key. Every ``acquire`` must be
    followed by one ``release`` of the same key once the answer (or the failure) is in.
    """

    def __init__(
        self,
        key_count: int,
        rate_per_minute: float = DEFAULT_RATE_PER_MINUTE,
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if key_count < 1:
            raise ValueError("at least one API key is needed")
        if not rate_per_minute > 0:
            raise ValueError("rate_per_minute must be positive")
        if not window_seconds > 0:
            raise ValueError("window_seconds must be positive")
        if not 0 <= margin <= MAX_MARGIN:
            raise ValueError(f"margin must be within [0, {MAX_MARGIN:g}]")
        usable = rate_per_minute * (1 - margin)
        self.rate_per_minute = rate_per_minute
        self.margin = margin
        if usable >= 1:
            self.limit = math.floor(usable + 1e-9)
            self.window = window_seconds
        else:  # less than one request per window: one request per proportionally longer window
            self.limit = 1
            self.window = window_seconds / usable
        self._keys = [_KeyLog() for _ in range(key_count)]
        self._lock = threading.Condition()
        self._cancelled = False
        self._clock = clock
        self._sleep = sleep

    @property
    def key_count(self) -> int:
        return len(self._keys)

    # -- booking ------------------------------------------------------------------------------------------

    def _free_at(self, log: _KeyLog, now: float) -> float | None:
        """Earliest moment this key may send, or None while its whole limit is in flight."""
        while log.answered and log.answered[0] <= now - self.window:
            log.answered.popleft()
        if log.in_flight >= self.limit:
            return None
        # Answered requests may still count then: at most ``room`` of them, so the (room+1)th newest
        # must have left the window.
        room = self.limit - 1 - log.in_flight
        at = max(now, log.last_booked, log.rest_until)
        if len(log.answered) > room:
            at = max(at, log.answered[len(log.answered) - 1 - room] + self.window)
        return at

    def reserve(self) -> tuple[int, float]:
        """Book the earliest free slot; returns (key index, seconds to wait before sending).

        Blocks only while every key has its whole limit in flight (until an answer comes back).
        """
        index, wait, _rests = self._book()
        return index, wait

    def _book(self) -> tuple[int, float, int]:
        with self._lock:
            while True:
                now = self._clock()
                best: tuple[float, int, float, int] | None = None
                for index, log in enumerate(self._keys):
                    at = self._free_at(log, now)
                    if at is None:
                        continue
                    # Ties go to the least loaded, then the least recently used key: load is spread.
                    candidate = (at, log.in_flight + len(log.answered), log.last_booked, index)
                    best = candidate if best is None or candidate < best else best
                if best is None and self._cancelled:
                    best = (now, 0, 0.0, 0)  # the caller checks the cancel flag and sends nothing
                if best is not None:
                    at, _load, _last, index = best
                    log = self._keys[index]
                    log.in_flight += 1
                    log.sent += 1
                    log.last_booked = max(log.last_booked, at)
                    return index, at - now, log.rests
                self._lock.wait(timeout=1.0)

    def acquire(self) -> int:
        """Block until a key may send; returns its index. Pair it with ``release(index)``."""
        while True:
            index, wait, rests = self._book()
            if wait > 0:
                self._sleep(wait)
            with self._lock:
                log = self._keys[index]
                if log.rests == rests or self._cancelled:
                    return index
                # The key hit a 429 while we waited for its slot: give the slot back and book again.
                log.in_flight -= 1
                log.sent -= 1
                self._lock.notify_all()

    def release(self, index: int) -> None:
        """The request sent on this key is finished (answered or failed): it counts one more window."""
        with self._lock:
            log = self._keys[index]
            log.in_flight = max(0, log.in_flight - 1)
            log.answered.append(self._clock())
            self._lock.notify_all()

    def rest(self, index: int, seconds: float | None = None) -> None:
        """After a 429: the key sends nothing more until its window frees.

        With ``Retry-After`` Omni says when; without it, one whole window from now is the first moment
        certain to be clear of the requests (ours or another tool's) that filled it.
        """
        with self._lock:
            log = self._keys[index]
            wait = self.window if seconds is None else seconds
            log.rest_until = max(log.rest_until, self._clock() + wait)
            log.rests += 1
            self._lock.notify_all()

    # -- looking ahead: a deferrable run asks before a write whether it should wait here or hand the wait on

    def free_now(self) -> int:
        """How many requests could go at once now, over every key, without waiting."""
        with self._lock:
            now = self._clock()
            free = 0
            for log in self._keys:
                self._free_at(log, now)  # drops answers that left the window
                if max(log.last_booked, log.rest_until) <= now:
                    free += max(0, self.limit - log.in_flight - len(log.answered))
            return free

    def next_free_in(self) -> float:
        """Seconds until the next request could be booked (0: now; a key with its whole limit in flight
        frees only when an answer comes back, so it is left out unless every key is)."""
        with self._lock:
            now = self._clock()
            moments = [at for log in self._keys if (at := self._free_at(log, now)) is not None]
            return max(0.0, min(moments) - now) if moments else 0.0

    def clear_in(self) -> float:
        """Seconds until no request of this pacer counts on any key any more (every window empty, every
        rest over): from then on a fresh pacer, with an empty log, paces exactly. Requests in flight are
        counted as if answered now."""
        with self._lock:
            now = self._clock()
            latest = now
            for log in self._keys:
                if log.in_flight:
                    latest = max(latest, now + self.window)
                if log.answered:
                    latest = max(latest, log.answered[-1] + self.window)
                latest = max(latest, log.rest_until)
            return latest - now

    def cancel(self) -> None:
        """Stop making callers wait for a key to free up (the run is being stopped)."""
        with self._lock:
            self._cancelled = True
            self._lock.notify_all()

    def sent_per_key(self) -> list[int]:
        with self._lock:
            return [log.sent for log in self._keys]
