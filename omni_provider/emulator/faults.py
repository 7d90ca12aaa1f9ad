"""Deterministic fault injection for /api requests.

Random faults: each kind in ``config.faults`` is drawn independently per request from one
``_rng(config.fault_seed)``; every kind is drawn on every request so the sequence only
depends on the seed and the order of requests. ``fail_next`` entries take precedence and make
exact scenarios ("the next 2 PATCHes get 503") easy to script.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .config import FAULT_KINDS, HTTP_METHODS, EmulatorConfig

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Faults a fail_next entry may name instead of a status code.
QUEUEABLE_FAULTS = frozenset({"drop_connection", "lost_response", "slow"})
# When several kinds fire on one request, the first of these wins; ``slow`` combines with any.
_PRIORITY = (
    "drop_connection",
    "error_500",
    "error_502",
    "error_503",
    "error_504",
    "burst_429",
    "lost_response",
)


@dataclasses.dataclass(frozen=True)
class FaultDecision:
    """What to do to one request. ``kind`` is None when it should be served normally."""

    kind: str | None = None
    status: int | None = None  # for kinds that answer with an error status
    slow: bool = False


NO_FAULT = FaultDecision()


def _rng(seed: int | None) -> random.Random:
    # Reproducible on purpose: a seed replays the same fault sequence. Not for security.
    return random.Random(seed)  # noqa: S311


@dataclasses.dataclass
class FailNext:
    status: int | None
    fault: str | None
    remaining: int
    methods: frozenset[str] | None

    @classmethod
    def parse(cls, raw: Any) -> FailNext:
        if not isinstance(raw, Mapping):
            raise ValueError("each fail_next entry must be an object")
        status, fault = raw.get("status"), raw.get("fault")
        if (status is None) == (fault is None):
            raise ValueError("a fail_next entry needs exactly one of 'status' or 'fault'")
        if status is not None and (
            not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599
        ):
            raise ValueError("fail_next status must be an HTTP error status (400-599)")
        if fault is not None and fault not in QUEUEABLE_FAULTS:
            raise ValueError(f"fail_next fault must be one of {sorted(QUEUEABLE_FAULTS)}")
        count = raw.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError("fail_next count must be a positive integer")
        methods = raw.get("methods")
        parsed_methods: frozenset[str] | None = None
        if methods is not None:
            if not isinstance(methods, list):
                raise ValueError("fail_next methods must be a list")
            parsed_methods = frozenset(str(m).upper() for m in methods)
            if parsed_methods - HTTP_METHODS:
                raise ValueError("fail_next methods must be HTTP methods")
        return cls(status=status, fault=fault, remaining=count, methods=parsed_methods)

    def matches(self, method: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.fault != "lost_response" or method in WRITE_METHODS

    def decision(self) -> FaultDecision:
        if self.fault == "slow":
            return FaultDecision(slow=True)
        if self.fault is not None:
            return FaultDecision(kind=self.fault)
        return FaultDecision(kind="fail_next", status=self.status)


class FaultInjector:
    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._rng = _rng(config.fault_seed)
        self._queue: list[FailNext] = []
        self._bursts: dict[str, int] = {}

    def reseed(self, seed: int | None) -> None:
        with self._lock:
            self._rng = _rng(seed)

    def set_fail_next(self, entries: Iterable[Any]) -> None:
        parsed = [FailNext.parse(e) for e in entries]  # parse all first: all-or-nothing
        with self._lock:
            self._queue = parsed

    def pending_fail_next(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "status": e.status,
                    "fault": e.fault,
                    "count": e.remaining,
                    "methods": sorted(e.methods) if e.methods is not None else None,
                }
                for e in self._queue
            ]

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._bursts.clear()
            self._rng = _rng(self._config.fault_seed)

    def decide(self, method: str, key: str) -> FaultDecision:
        cfg = self._config
        if cfg.fault_methods is not None and method not in cfg.fault_methods:
            return NO_FAULT
        with self._lock:
            for entry in self._queue:
                if entry.matches(method):
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        self._queue.remove(entry)
                    return entry.decision()
            if self._bursts.get(key, 0) > 0:
                self._bursts[key] -= 1
                return FaultDecision(kind="burst_429", status=429)
            if not any(cfg.faults.get(kind, 0.0) > 0 for kind in FAULT_KINDS):
                return NO_FAULT
            fired = {kind for kind in FAULT_KINDS if self._rng.random() < cfg.faults.get(kind, 0.0)}
        slow = "slow" in fired
        for kind in _PRIORITY:
            if kind not in fired or (kind == "lost_response" and method not in WRITE_METHODS):
                continue
            if kind == "burst_429":
                with self._lock:
                    self._bursts[key] = cfg.burst_429_length - 1
                return FaultDecision(kind=kind, status=429, slow=slow)
            if kind.startswith("error_"):
                return FaultDecision(kind=kind, status=int(kind.removeprefix("error_")), slow=slow)
            return FaultDecision(kind=kind, slow=slow)
        return FaultDecision(slow=slow)
