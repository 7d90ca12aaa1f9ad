"""The objects one emulator instance shares between its middleware and route handlers."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from .attributes import apply_changes
from .config import EmulatorConfig
from .faults import FaultInjector
from .persistence import StateSaver
from .ratelimit import RateLimiter
from .state import EmulatorState, UserRecord
from .stats import EmulatorStats
from .writes import AttributeRules


@dataclasses.dataclass
class EmulatorContext:
    config: EmulatorConfig
    state: EmulatorState
    stats: EmulatorStats
    limiter: RateLimiter
    faults: FaultInjector
    saver: StateSaver | None
    #: Unfiltered list pages served since the last reset (drives ``config.list_churn``).
    list_pages_served: int = 0
    list_churn_fired: bool = False
    _churn_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @classmethod
    def build(cls, config: EmulatorConfig, state: EmulatorState) -> EmulatorContext:
        return cls(
            config=config,
            state=state,
            stats=EmulatorStats(),
            limiter=RateLimiter(
                lambda: config.rate_limit, lambda: config.rate_window, lambda: config.rate_window_mode
            ),
            faults=FaultInjector(config),
            saver=(
                StateSaver(state, config.state_file, config.persist_interval)
                if config.state_file is not None
                else None
            ),
        )

    def reset(self, *, seed_users: int = 0, seed: int = 0, keep_users: bool = False) -> int:
        """Clear users (unless ``keep_users``), counters, rate-limit windows and pending faults.

        Optionally seed ``seed_users`` deterministic users; returns how many were created.
        """
        if not keep_users:
            self.state.clear()
        created = len(self.state.seed_users(seed_users, seed=seed)) if seed_users else 0
        self.stats.reset()
        self.limiter.reset()
        self.faults.reset()
        with self._churn_lock:
            self.list_pages_served, self.list_churn_fired = 0, False
        return created

    def after_list_page(self) -> None:
        """Count a served list page; play ``config.list_churn`` once when its page has been served."""
        churn = self.config.list_churn
        with self._churn_lock:
            self.list_pages_served += 1
            if not churn or self.list_churn_fired or self.list_pages_served != churn["after_page"]:
                return
            self.list_churn_fired = True
        for user in self.state.users()[: churn.get("delete", 0)]:
            self.state.delete_user(user.id)
            self.stats.bump("users_deleted")
        start = self.state.user_count() + self.stats.users_deleted + 1
        for i in range(churn.get("create", 0)):
            self.state.add_user(f"churn{start + i:05d}@example.com", f"Churn {start + i}")
            self.stats.bump("users_created")

    def other_writer_acts(self, user_id: str, writer: dict[str, Any]) -> UserRecord | None:
        """``config.concurrent_writer``: another tool sets one attribute of this user (under the state
        lock, so exactly between our read and our write, or between our write and its answer)."""
        with self.state.lock:
            user = self.state.get_user(user_id)
            if user is None:
                return None
            attributes = apply_changes(user.attributes, {writer["attribute"]: writer.get("value")})
            return self.state.replace_user(user.evolve(attributes=attributes))

    def attribute_rules(self) -> AttributeRules:
        return AttributeRules(self.state.attribute_definitions, strict=self.config.strict_attributes)
