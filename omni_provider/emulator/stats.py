"""Request counters for tests and benchmarks (served at ``GET /_emulator/stats``)."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, deque
from typing import Any, NamedTuple

#: Newest requests kept in the request log (a long-running emulator must not grow without bound).
REQUEST_LOG_SIZE = 200_000


class LoggedRequest(NamedTuple):
    """One /api request as the emulator saw it: when it arrived (``time.monotonic()``), what, the answer."""

    at: float
    method: str
    key: str | None
    status: int


def key_id(token: str) -> str:
    """A short, non-reversible label for a token; stats never expose the token itself."""
    return "key-" + hashlib.sha256(token.encode()).hexdigest()[:12]


class EmulatorStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._zero()

    def reset(self) -> None:
        with self._lock:
            self._zero()

    def _zero(self) -> None:
        # One field list shared by __init__ and reset().
        self.requests_total = 0
        self.requests_by_method: Counter[str] = Counter()
        #: "GET /scim/v2/users", "GET /scim/v2/users?filter", "PATCH /scim/v2/users/{id}", ...: which
        #: requests a run made (e.g. that a snapshot run listed no users).
        self.requests_by_route: Counter[str] = Counter()
        self.requests_by_key: Counter[str] = Counter()
        self.responses_by_status: Counter[int] = Counter()
        self.rate_limited = 0  # 429s from the sliding window
        self.responses_429 = 0  # every 429 sent, injected ones included
        self.faults: Counter[str] = Counter()
        self.writes_applied = 0
        self.users_created = 0
        self.users_deleted = 0
        self.recipients_created = 0
        self.auth_failures = 0
        self.log: deque[LoggedRequest] = deque(maxlen=REQUEST_LOG_SIZE)

    def request(self, method: str, token: str | None, route: str = "") -> None:
        with self._lock:
            self.requests_total += 1
            self.requests_by_method[method] += 1
            self.requests_by_route[f"{method} {route}"] += 1
            if token:
                self.requests_by_key[key_id(token)] += 1

    def response(self, status: int) -> None:
        with self._lock:
            self.responses_by_status[status] += 1
            if status == 429:
                self.responses_429 += 1

    def log_request(self, at: float, method: str, token: str | None, status: int) -> None:
        """Note one answered request with its arrival time (for rates measured on the server side)."""
        with self._lock:
            self.log.append(LoggedRequest(at, method, key_id(token) if token else None, status))

    def request_log(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self.log)

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def bump(self, name: str, amount: int = 1) -> None:
        """Increase one of the plain integer counters (e.g. ``writes_applied``)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests_total": self.requests_total,
                "requests_by_method": dict(self.requests_by_method),
                "requests_by_route": dict(self.requests_by_route),
                "requests_by_key": dict(self.requests_by_key),
                "responses_by_status": {str(k): v for k, v in sorted(self.responses_by_status.items())},
                "rate_limited": self.rate_limited,
                "responses_429": self.responses_429,
                "faults_injected": dict(self.faults),
                "writes_applied": self.writes_applied,
                "users_created": self.users_created,
                "users_deleted": self.users_deleted,
                "recipients_created": self.recipients_created,
                "auth_failures": self.auth_failures,
            }
