"""A scenario key changes only what it is about: each participant draws its own sizes and
prices from its own seeded generator, every value every time. (All homes had drawn from one
generator, and only some homes drew a battery, a PV size or a yearly load: with battery_share
0, 19 of the demo's 20 homes had another PV size or load, and its PV 25 % more.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridnet.agents.ev import EvDesk
from gridnet.agents.home import Home
from gridnet.sim.neighbourhood import Neighbourhood, memory_network
from gridnet.sim.scenario import scenario_from_dict

HOMES: dict[str, Any] = {
    "simulation": {"intervals": 4, "start": "2026-06-21T10:00:00Z"},
    "homes": {"count": 12, "pv_share": 0.5, "battery_share": 0.5, "businesses": 1},
    "relay": {"hill_homes": 2},
}


def homes(tmp_path: Path, name: str, **changes: Any) -> dict[str, Home]:
    """The homes of HOMES with ``changes`` to its [homes] (built, not run)."""
    doc = {**HOMES, "homes": {**HOMES["homes"], **changes}}
    scenario = scenario_from_dict(doc, name)
    sim = Neighbourhood(scenario, memory_network(scenario, tmp_path / name))
    sim.close()
    return {h.name: h for h in sim.world.of(Home)}


def sizes(home: Home) -> tuple[object, ...]:
    return home.pv_kw, home.annual_kwh, home.policy.buy[0].price, home.pv_wh, home.load_wh


def test_battery_share_changes_only_which_homes_have_a_battery(tmp_path: Path) -> None:
    some, none = homes(tmp_path, "some"), homes(tmp_path, "none", battery_share=0.0)
    assert [h.name for h in some.values() if h.battery] == ["home-0", "home-1", "home-2"]
    assert not any(h.battery for h in none.values())
    assert {n: sizes(h) for n, h in some.items()} == {n: sizes(h) for n, h in none.items()}
    more = homes(tmp_path, "more", battery_share=1.0)
    capacity = {n: h.battery.capacity_wh for n, h in more.items() if h.battery}
    assert len(capacity) == 6
    assert all(capacity[n] == h.battery.capacity_wh for n, h in some.items() if h.battery)


def test_pv_share_keeps_the_pv_of_the_homes_that_keep_pv(tmp_path: Path) -> None:
    half, more = homes(tmp_path, "half"), homes(tmp_path, "more", pv_share=0.75)
    assert sum(1 for h in half.values() if h.pv_kw) == 6 and sum(1 for h in more.values() if h.pv_kw) == 9
    for name, h in half.items():
        if h.pv_kw:  # (the first six have PV in both)
            assert more[name].pv_kw == h.pv_kw and more[name].pv_wh == h.pv_wh, name
        if not h.business and not more[name].business:
            assert more[name].annual_kwh == h.annual_kwh and more[name].load_wh == h.load_wh, name


def test_businesses_change_only_the_homes_that_become_businesses(tmp_path: Path) -> None:
    one, two = homes(tmp_path, "one"), homes(tmp_path, "two", businesses=2)
    changed = [n for n, h in one.items() if sizes(h) != sizes(two[n])]
    assert changed == ["home-7"] and two["home-7"].business and not one["home-7"].business


EV: dict[str, Any] = {
    "simulation": {"name": "ev-draws", "seed": 4, "intervals": 8, "start": "2026-06-22T05:00:00Z"},
    "homes": {"count": 8, "pv_share": 0.5, "businesses": 0},
    "relay": {"hill_homes": 0},
    "ev": {"enabled": True, "vehicles": 4},
}


def test_a_longer_run_keeps_the_vehicles_and_their_first_day(tmp_path: Path) -> None:
    """(Each vehicle drew its arrivals for every day of the run before the next vehicle drew
    its battery: a run of more days gave every vehicle but the first another battery.)"""

    def cars(name: str, intervals: int) -> list[tuple[object, ...]]:
        doc = {**EV, "simulation": {**EV["simulation"], "intervals": intervals}}
        scenario = scenario_from_dict(doc, name)
        sim = Neighbourhood(scenario, memory_network(scenario, tmp_path / name))
        sim.close()
        desk = sim.world.one(EvDesk)
        day = sim.first // 96
        return [(c.battery_wh, c.commute_wh, c.soc_wh, c.value_lo, c.wear, c.days[day]) for c in desk.cars]

    assert cars("short", 8) == cars("long", 8 + 3 * 96)
