"""The clock a node runs on: the wall clock, or a scenario clock with an origin and a speed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gridnet.ledger.chain import now_ms
from gridnet.node.clock import Clock
from gridnet.node.messages import StatusMsg
from gridnet.node.node import Node, NodeConfig
from tests.helpers import GENESIS_TIME, new_chain, test_params

JUNE = 1_782_000_000_000  # some scenario's date [ms]


# The wall clock is read around each reading of the clock under test, so the bounds hold
# however long a busy machine takes between two readings.


def test_the_default_clock_is_the_wall_clock() -> None:
    before = now_ms()
    reading = Clock().now()
    assert before <= reading <= now_ms()


def test_a_scenario_clock_reads_its_origin_at_the_anchor_and_runs_at_its_speed() -> None:
    anchor = now_ms()
    clock = Clock(JUNE, anchor, speed=300)
    first = clock.now()
    assert JUNE <= first <= JUNE + 300 * (now_ms() - anchor + 1)  # (ms of the wall clock, rounded)
    time.sleep(0.05)
    assert clock.now() - first >= 300 * 50 * 0.9
    assert clock.span(100) == 30_000 and clock.wall_seconds(900_000) == 3.0


def test_processes_sharing_origin_anchor_and_speed_agree() -> None:
    anchor = now_ms() - 10_000  # a devnet started ten seconds ago
    a, b = Clock(JUNE, anchor, 60), Clock(JUNE, anchor, 60)
    before = now_ms()
    first, second = a.now(), b.now()
    between = now_ms() - before + 1  # wall ms between the two readings, at most (rounded)
    assert 0 <= second - first <= 60 * between
    assert first >= JUNE + 600_000


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_a_clock_must_run_forward(speed: float) -> None:
    with pytest.raises(ValueError, match="above 0"):
        Clock(JUNE, 0, speed)


def test_a_node_whose_clock_stepped_back_still_sends_its_status(tmp_path: Path) -> None:
    """Its peers close a link that sends nothing for a while (the idle timeout): a node sends
    its status every ``status_interval_ms`` also after its clock stepped back (the wall clock
    set back an hour), not only once the clock has caught up with its last one."""
    node = Node("a", new_chain(tmp_path / "a", test_params([])), NodeConfig())
    node.add_peer("b")
    interval = node.config.status_interval_ms

    def statuses(now: int) -> int:
        return sum(isinstance(msg, StatusMsg) for _, msg in node.tick(now))

    t = GENESIS_TIME + 3_600_000
    assert statuses(t) == 1
    back = t - 3_600_000
    assert statuses(back) == 1  # (stepped back: from there on)
    assert statuses(back + interval - 1) == 0
    assert statuses(back + interval) == 1
    node.close()
