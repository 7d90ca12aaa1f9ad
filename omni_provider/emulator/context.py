"""The objects one emulator instance shares between its middleware and route handlers."""

from __future__ import annotations

import dataclasses

from .config import EmulatorConfig
from .faults import FaultInjector
from .persistence import StateSaver
from .ratelimit import RateLimiter
from .state import EmulatorState
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
        return created

    def attribute_rules(self) -> AttributeRules:
        return AttributeRules(self.state.attribute_definitions, strict=self.config.strict_attributes)
