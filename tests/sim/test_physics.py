"""Home batteries: a power limit per interval, a round-trip efficiency, whole Wh."""

from __future__ import annotations

import pytest

from gridnet.sim.physics import Battery


def test_a_battery_takes_and_gives_at_most_its_power_per_interval() -> None:
    battery = Battery(10_000, 5_000, max_power_w=3_000)  # 750 Wh per 15 minutes
    assert battery.charge(2_000) == 750 and battery.soc_wh == 5_750
    battery.begin_interval()
    assert battery.discharge(2_000) == 750 and battery.soc_wh == 5_000
    assert battery.charge(0) == 0 and battery.discharge(-5) == 0


def test_the_power_limit_holds_for_the_interval_however_many_calls_make_it() -> None:
    """In and out together: what was charged in an interval leaves that much less to
    discharge (a battery that took and gave back in one interval had moved twice its power)."""
    battery = Battery(10_000, 5_000, max_power_w=1_000)  # 250 Wh per 15 minutes
    assert battery.discharge(36) == 36 and battery.discharge(250) == 214 and battery.discharge(1) == 0
    assert battery.charge(100) == 0 and battery.moved_wh == 250
    battery.begin_interval()
    assert battery.charge(200) == 200 and battery.discharge(250) == 50 and battery.charge(1) == 0
    assert battery.moved_wh == 250


def test_a_move_is_one_charge_or_discharge_and_clip_tells_it_first() -> None:
    battery = Battery(10_000, 5_000, max_power_w=1_000, efficiency=0.81)
    assert battery.clip(400) == 250 and battery.clip(-400) == -250 and battery.soc_wh == 5_000
    assert battery.move(-100) == -100 and battery.soc_wh == 5_000 - 112  # (100 / 0.9, up)
    assert battery.clip(-400) == -150 and battery.clip(400) == 150 and battery.move(400) == 150
    assert battery.clip(1) == 0 and battery.move(-1) == 0
    full = Battery(1_000, 990, max_power_w=10_000, efficiency=0.81)
    assert full.clip(500) == full.can_take() == 11 and full.move(500) == 11


def test_a_round_trip_returns_its_efficiency_and_counts_the_losses() -> None:
    battery = Battery(100_000, 0, max_power_w=100_000, efficiency=0.81)  # 0.9 each way
    taken = sum(battery.charge(1_000) for _ in range(10))
    assert taken == 10_000 and battery.soc_wh == 9_000
    delivered = 0
    while (d := battery.discharge(1_000)) > 0:
        delivered += d
    assert delivered == pytest.approx(8_100, abs=10) and battery.soc_wh <= 1
    assert battery.lost_wh == taken - delivered - battery.soc_wh


def test_a_battery_stays_within_empty_and_full() -> None:
    battery = Battery(1_000, 900, max_power_w=10_000, efficiency=0.9)
    taken = battery.charge(500)
    assert battery.soc_wh <= 1_000 and taken <= 106  # 100 Wh of room at about 0.95 stored per Wh
    assert battery.discharge(5_000) <= battery.capacity_wh and battery.soc_wh >= 0
    assert Battery(1_000, 5_000, 100).soc_wh == 1_000  # (a start above full is full)
    with pytest.raises(ValueError):
        Battery(1_000, 0, 100, efficiency=0.0)
