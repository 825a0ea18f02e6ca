"""The clock a node runs on: the wall clock, or a scenario clock with an origin and a speed."""

from __future__ import annotations

import time

import pytest

from gridnet.ledger.chain import now_ms
from gridnet.node.clock import Clock

JUNE = 1_782_000_000_000  # some scenario's date [ms]


def test_the_default_clock_is_the_wall_clock() -> None:
    assert abs(Clock().now() - now_ms()) < 50


def test_a_scenario_clock_reads_its_origin_at_the_anchor_and_runs_at_its_speed() -> None:
    anchor = now_ms()
    clock = Clock(JUNE, anchor, speed=300)
    first = clock.now()
    assert JUNE <= first < JUNE + 300 * 100  # read within 100 ms of the anchor
    time.sleep(0.05)
    assert clock.now() - first >= 300 * 50 * 0.9
    assert clock.span(100) == 30_000 and clock.wall_seconds(900_000) == 3.0


def test_processes_sharing_origin_anchor_and_speed_agree() -> None:
    anchor = now_ms() - 10_000  # a devnet started ten seconds ago
    a, b = Clock(JUNE, anchor, 60), Clock(JUNE, anchor, 60)
    assert abs(a.now() - b.now()) < 60 * 20
    assert a.now() >= JUNE + 600_000


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_a_clock_must_run_forward(speed: float) -> None:
    with pytest.raises(ValueError, match="above 0"):
        Clock(JUNE, 0, speed)
