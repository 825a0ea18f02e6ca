"""A home's battery moves once an interval: what the home's own surplus or deficit asks of it
and what its device traded (a sell-down, a night charge) are netted first, and only the net
goes in or out, within the power limit, losing what the efficiency implies on that move."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridnet.agents.home import Energy, Home
from gridnet.sim.neighbourhood import Neighbourhood, memory_network
from gridnet.sim.physics import Battery
from gridnet.sim.scenario import scenario_from_dict

# Late morning to evening on midsummer: batteries fill from PV, their devices plan a sell-down
# on the forecast while the battery is really still below the threshold, and sell down and
# cover the load in the evening.
DAY: dict[str, Any] = {
    "simulation": {"intervals": 40, "start": "2026-06-21T09:00:00Z"},
    "homes": {"count": 6, "pv_share": 1.0, "battery_share": 1.0, "battery_kwh": [5.0, 6.0], "businesses": 0},
    "relay": {"hill_homes": 0},
}


class Moves:
    """Every battery's charges and discharges, interval by interval."""

    def __init__(self) -> None:
        self.now: dict[int, list[int]] = {}
        """id(battery) -> [taken, delivered] since its interval began [Wh]."""
        self.done: list[tuple[Battery, int, int]] = []
        """(battery, taken, delivered) of each interval that ended."""

    def end(self, battery: Battery) -> None:
        taken, delivered = self.now.pop(id(battery), [0, 0])
        self.done.append((battery, taken, delivered))


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Moves, list[Home]]]:
    moves = Moves()
    charge, discharge, begin = Battery.charge, Battery.discharge, Battery.begin_interval

    def charge_(self: Battery, wh: int) -> int:
        taken = charge(self, wh)
        moves.now.setdefault(id(self), [0, 0])[0] += taken
        return taken

    def discharge_(self: Battery, wh: int) -> int:
        delivered = discharge(self, wh)
        moves.now.setdefault(id(self), [0, 0])[1] += delivered
        return delivered

    def begin_(self: Battery) -> None:
        if id(self) in moves.now:
            moves.end(self)
        begin(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Battery, "charge", charge_)
        mp.setattr(Battery, "discharge", discharge_)
        mp.setattr(Battery, "begin_interval", begin_)
        scenario = scenario_from_dict(DAY, "battery-moves")
        sim = Neighbourhood(scenario, memory_network(scenario, tmp_path_factory.mktemp("moves")))
        try:
            sim.run()
        finally:
            sim.close()
    homes = [h for h in sim.world.of(Home) if h.battery is not None]
    for home in homes:  # (the last interval's moves)
        assert home.battery is not None
        if id(home.battery) in moves.now:
            moves.end(home.battery)
    yield moves, homes


def test_no_battery_charges_and_discharges_in_one_interval(moved: tuple[Moves, list[Home]]) -> None:
    """(A home that stored its PV surplus and then discharged its planned sell-down to the grid
    in the same interval had lost about 10 % of both on the way: half the demo's losses.)"""
    moves, homes = moved
    assert len(homes) == DAY["homes"]["count"]
    both = [(t, d) for _, t, d in moves.done if t and d]
    assert both == []
    assert any(t for _, t, _ in moves.done) and any(d for _, _, d in moves.done)


def test_a_battery_moves_at_most_its_power_in_an_interval_in_and_out_together(
    moved: tuple[Moves, list[Home]],
) -> None:
    moves, _ = moved
    assert all(t + d <= b.max_wh for b, t, d in moves.done)
    assert any(t + d == b.max_wh for b, t, d in moves.done)  # (the limit is reached)


def test_a_battery_loses_what_its_efficiency_implies_on_its_net_moves(
    moved: tuple[Moves, list[Home]],
) -> None:
    moves, homes = moved
    for home in homes:
        battery = home.battery
        assert battery is not None
        ow = battery.one_way
        mine = [(t, d) for b, t, d in moves.done if b is battery]
        assert len(mine) == DAY["simulation"]["intervals"]
        net = [t - d for t, d in mine]
        implied = sum(n * (1 - ow) if n > 0 else -n * (1 / ow - 1) for n in net)
        assert math.isclose(battery.lost_wh, implied, abs_tol=len(mine)), home.name  # (whole Wh)


def test_a_planned_sell_down_is_netted_against_the_surplus(tmp_path: Path) -> None:
    """The plan (on the forecast) sells down; the battery is really below the threshold, so
    it stores the surplus: it takes only what is left of the surplus after the sell-down."""
    scenario = scenario_from_dict(DAY, "netted")
    sim = Neighbourhood(scenario, memory_network(scenario, tmp_path))
    sim.close()
    home = next(h for h in sim.world.of(Home) if h.battery is not None)
    battery = Battery(10_000, 7_000, max_power_w=3_000, efficiency=0.81)  # 70 %: it stores
    plan = Energy(export_wh=1_700, sell_down_wh=800)
    e = home.energy(sim.first, pv=1_000, load=120, battery=battery, plan=plan)
    assert e.export_wh == 800 and e.import_wh == 0 and e.curtailed_wh == 0
    assert battery.soc_wh == 7_000 + math.floor(80 * 0.9) and battery.lost_wh == 8  # 80 Wh in, net
