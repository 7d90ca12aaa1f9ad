"""The objects one emulator instance shares between its middleware and route handlers."""

from __future__ import annotations

import dataclasses

from .config import EmulatorConfig
from .faults import FaultInjector
from .persistence import StateSaver
from .ratelimit import SlidingWindowLimiter
from .state import EmulatorState
from .stats import EmulatorStats
from .writes import AttributeRules


@dataclasses.dataclass
class EmulatorContext:
    config: EmulatorConfig
    state: EmulatorState
    stats: EmulatorStats
    limiter: SlidingWindowLimiter
    faults: FaultInjector
    saver: StateSaver | None

    @classmethod
    def build(cls, config: EmulatorConfig, state: EmulatorState) -> EmulatorContext:
        return cls(
            config=config,
            state=state,
            stats=EmulatorStats(),
            limiter=SlidingWindowLimiter(lambda: config.rate_limit, lambda: config.rate_window),
            faults=FaultInjector(config),
            saver=(
                StateSaver(state, config.state_file, config.persist_interval)
                if config.state_file is not None
                else None
            ),
        )

    def attribute_rules(self) -> AttributeRules:
        return AttributeRules(self.state.attribute_definitions, strict=self.config.strict_attributes)
