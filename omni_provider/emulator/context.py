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
class _ChurnClock:
    """Unfiltered list pages of one kind served since the last reset, and whether a one-off churn fired."""

    pages_served: int = 0
    fired: bool = False

    def due(self, churn: dict[str, int] | None) -> bool:
        """Count a served page; whether ``churn`` plays now (callers hold the context's churn lock)."""
        self.pages_served += 1
        if not churn:
            return False
        if churn.get("repeat"):
            return self.pages_served % churn["after_page"] == 0
        if self.fired or self.pages_served != churn["after_page"]:
            return False
        self.fired = True
        return True


@dataclasses.dataclass
class EmulatorContext:
    config: EmulatorConfig
    state: EmulatorState
    stats: EmulatorStats
    limiter: RateLimiter
    faults: FaultInjector
    saver: StateSaver | None
    #: Unfiltered user and group list pages served since the last reset (drive ``config.list_churn`` and
    #: ``config.group_list_churn``).
    user_pages: _ChurnClock = dataclasses.field(default_factory=_ChurnClock)
    group_pages: _ChurnClock = dataclasses.field(default_factory=_ChurnClock)
    group_churn_created: int = 0  # names new churn groups uniquely
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
            self.user_pages, self.group_pages = _ChurnClock(), _ChurnClock()
        return created

    def after_list_page(self) -> None:
        """Count a served list page; play ``config.list_churn`` when its page has been served."""
        churn = self.config.list_churn
        with self._churn_lock:
            if not self.user_pages.due(churn):
                return
        assert churn is not None
        for user in self.state.users()[: churn.get("delete", 0)]:
            self.state.delete_user(user.id)
            self.stats.bump("users_deleted")
        start = self.state.user_count() + self.stats.users_deleted + 1
        for i in range(churn.get("create", 0)):
            self.state.add_user(f"churn{start + i:05d}@example.com", f"Churn {start + i}")
            self.stats.bump("users_created")

    def after_group_list_page(self) -> None:
        """Count a served group list page; play ``config.group_list_churn`` when its page has been served:
        the oldest groups deleted, new (empty) ones created, as another admin would between two pages."""
        churn = self.config.group_list_churn
        with self._churn_lock:
            if not self.group_pages.due(churn):
                return
        assert churn is not None
        with self.state.lock:
            for group in self.state.groups.groups()[: churn.get("delete", 0)]:
                self.state.groups.delete(group.id)
            for _ in range(churn.get("create", 0)):
                self.group_churn_created += 1
                self.state.groups.add_group(f"Churn group {self.group_churn_created:05d}")
            self.state.version += 1

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
