"""The time a node runs on: the wall clock, or a scenario's clock running faster.

A scenario replayed on real node processes (``gridnet devnet --scenario``) happens on its own
dates and faster than real time: every process of the devnet shares one ``Clock`` (the same
origin, anchor and speed), so block timestamps, order expiry and the future-timestamp bound
all follow the scenario's time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gridnet.ledger.chain import now_ms


@dataclass(frozen=True)
class Clock:
    origin_ms: int | None = None
    """Clock time when the wall clock read ``anchor_ms``; None: the wall clock itself."""
    anchor_ms: int = 0
    """Wall time [ms] at which the clock read ``origin_ms``."""
    speed: float = 1.0
    """Clock milliseconds per wall millisecond."""

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"a clock speed must be above 0, got {self.speed}")

    def now(self) -> int:
        if self.origin_ms is None:
            return now_ms()
        return self.origin_ms + int((time.time() * 1000 - self.anchor_ms) * self.speed)

    def span(self, wall_span_ms: int) -> int:
        """Clock milliseconds that pass in ``wall_span_ms`` of real time."""
        return round(wall_span_ms * self.speed)

    def wall_seconds(self, clock_span_ms: int) -> float:
        """Real seconds it takes this clock to advance ``clock_span_ms``."""
        return clock_span_ms / self.speed / 1000
