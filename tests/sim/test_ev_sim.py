"""Vehicle-to-vehicle trading in the simulator (``[ev]``): the registry registers every vehicle and
the hotspot; each hour's iterative double auction becomes deals both vehicles signed, settled on
the station's signed delivery (a vehicle that left early paying its penalty); charging at home
is part of the home's load; the report compares the iterative auction with the one-shot one and
agrees with the chain."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from gridnet.crypto.keys import Domain, verify_signature
from gridnet.encoding import encode
from gridnet.errors import ConfigError
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.vehicle import (
    EV_DEALS,
    HOTSPOTS,
    VEHICLES,
    Breaker,
    DealStatus,
    Delivery,
    Processing,
    deal_id,
    hotspot_id,
)
from gridnet.sim.neighbourhood import Neighbourhood, memory_network, simulate
from gridnet.sim.scenario import scenario_from_dict
from tests.helpers import participant_key

# Seed 2: the vehicles' draws give a morning where some vehicle is idle in a period, buyers
# and sellers both leave early (with each vehicle drawing from its own generators, seed 4 no
# longer left one idle).
MORNING: dict[str, Any] = {
    "simulation": {"name": "ev-morning", "seed": 2, "intervals": 16, "start": "2026-06-22T05:00:00Z"},
    "homes": {"count": 8, "pv_share": 0.5, "businesses": 0},
    "relay": {"hill_homes": 0},
    "chain": {"block_interval_s": 60},
    "ev": {
        "enabled": True, "vehicles": 8, "arrive_utc": ["06:00", "06:45"], "depart_utc": ["16:00", "17:00"],
        "early_leave_share": 0.35,
    },
}  # fmt: skip


def test_vehicles_trade_energy_in_signed_deals_settled_on_chain(tmp_path: Path) -> None:
    report = simulate(scenario_from_dict(MORNING, "ev.toml"), tmp_path / "out")
    ev = report["roles"]["ev"]
    assert report["verify"]["ok"] and report["transactions"]["refused"] == {}
    assert ev["registered"] == 8 and ev["hotspot_registered"] and ev["home_chargers"] == 4
    assert ev["auctions"] >= 2 and ev["deals_signed"] > 0 and ev["deals_refused"] == 0
    roles = ev["roles"]  # every parked vehicle took a role each period: charging, discharging or idle
    assert ev["periods"] >= ev["auctions"] and min(roles.values()) > 0
    assert ev["deals_settled"] == ev["deals_on_chain"] == ev["deals_signed"]
    broken = ev["deals_broken"]
    assert broken["by_buyer"] > 0 and broken["by_seller"] > 0 and ev["penalties_gnc"] > 0
    assert ev["charged_wh"] < ev["agreed_wh"]  # the vehicles that left early fell short
    assert ev["home_charging_wh"] > 0  # before setting off, the cars with a charger charged at home
    comparison = ev["comparison"]
    iterative, one_shot = comparison["iterative"], comparison["one_shot"]
    assert iterative["welfare_gnc"] >= one_shot["welfare_gnc"] > 0
    assert iterative["rounds_total"] > one_shot["rounds_total"] == ev["auctions"]
    assert iterative["messages"] > one_shot["messages"]
    chain = Chain.open(tmp_path / "out" / "chain", readonly=True)
    try:
        view = chain.view()
        spot = view.get(HOTSPOTS, hotspot_id(participant_key(report, "vehicle-registry").public_key, "Depot"))
        assert spot is not None and spot.traded_wh == ev["charged_wh"] and spot.deals == ev["deals_settled"]
        deals = [view.get(EV_DEALS, k[1:]) for k in chain.values if k.startswith(EV_DEALS.prefix)]
        assert len(deals) == ev["deals_settled"]
        for d in deals:
            assert d is not None and d.status == DealStatus.SETTLED
            buyer = view.get(VEHICLES, d.terms.buyer)
            assert buyer is not None and buyer.open_buy_wh == 0
            # The record carries the charging vehicle's meter, the energy charged and the station's
            # and the processing aggregator's signatures, which verify.
            delivery = Delivery(deal_id(d.terms), d.terms.buyer, d.delivered_wh, d.broken_by)
            signed = chain.chain_id + encode(delivery)
            assert verify_signature(Domain.EV_DELIVERY, spot.station_key, signed, d.station_signature)
            processing = chain.chain_id + encode(Processing(deal_id(d.terms), delivery))
            assert d.settle_processor in spot.aggregators
            assert verify_signature(Domain.EV_PROCESSING, d.settle_processor, processing, d.settle_signature)
            assert (d.delivered_wh < d.terms.energy_wh) == (d.broken_by != Breaker.NONE)
        assert sum(d.delivered_wh for d in deals if d is not None) == ev["charged_wh"]
    finally:
        chain.close()


def test_a_deal_opened_too_late_is_counted_and_the_hotspots_later_transactions_still_go_through(
    tmp_path: Path,
) -> None:
    # Blocks every 15 minutes: some openings are not mined before their deal's first interval
    # begins. Block building refuses them (DealStarted) and, after a few blocks, drops them with
    # the hotspot's later transactions (they follow a gap). The world hears of it from the nodes:
    # the opening is counted refused, the others are signed again, and every deal on chain settles.
    # Whether a period's block comes late is the luck of the proof of work: the seeds are tried in
    # turn until one run shows a late opening beside deals that opened, each opening taken by its
    # node (a node past the deal's first interval refuses it at once: it is counted refused, not
    # submitted); every run keeps the counts.
    for seed in (7, 8, 5, 6, 1, 2, 3, 4, 9, 10, 11, 12):  # (7 first: it shows all, since rules 5)
        slow = {
            **MORNING,
            "simulation": {**MORNING["simulation"], "seed": seed},
            "chain": {"block_interval_s": 900},
        }
        report = simulate(scenario_from_dict(slow, "ev.toml"), tmp_path / f"seed-{seed}")
        ev, txs = report["roles"]["ev"], report["transactions"]
        assert report["verify"]["ok"]
        assert set(txs["refused"]) <= {"DealStarted"}  # (none for a nonce gap: tried until it clears)
        assert ev["deals_refused"] == txs["refused"].get("DealStarted", 0)
        assert ev["deals_on_chain"] + ev["deals_refused"] == ev["deals_signed"]
        assert ev["deals_settled"] == ev["deals_on_chain"]
        taken_once = txs["submitted"].get("OpenEvDeal") == ev["deals_signed"]  # (none refused at once)
        if ev["deals_refused"] and ev["deals_on_chain"] and txs["resubmitted"] and taken_once:
            break
    else:
        pytest.fail("no seed gave both a late opening, a transaction signed again and a deal on chain")
    assert set(txs["refused_by"]["DealStarted"]) == {"ev-aggregator"}
    # Each opening the aggregator signed was taken once; those signed again are counted apart.
    assert txs["submitted"]["OpenEvDeal"] == ev["deals_signed"]


def test_a_bad_ev_table_is_one_clear_line(tmp_path: Path) -> None:
    for bad, message in (
        ({"vehicles": 0}, "vehicles must be 1 to 1,000"),
        ({"arrive_utc": ["07:00", "25:00"]}, "HH:MM"),
        ({"arrive_utc": ["17:00", "18:00"]}, "arrive_utc must be a window before depart_utc"),
        ({"auction_every_intervals": 5}, "must divide a day"),
        ({"parking_discount_gnc": 0.05}, "add up to at most fee_gnc"),
        ({"soc_start": [50.0, 120.0]}, "soc_start"),
    ):
        doc = {**MORNING, "ev": {**MORNING["ev"], **bad}}
        with pytest.raises(ConfigError, match=message):
            simulate(scenario_from_dict(doc, "ev.toml"), tmp_path / f"bad-{len(message)}")


def test_the_ev_tables_money_is_checked_in_base_units(tmp_path: Path) -> None:
    """A price that is 0 base units is refused; discounts adding up to the fee in base units
    are taken (as floats, 0.1 + 0.2 is 0.30000000000000004, above a fee of 0.3)."""
    doc = {**MORNING, "ev": {**MORNING["ev"], "station_price": 1e-9}}
    with pytest.raises(ConfigError) as info:
        simulate(scenario_from_dict(doc, "ev.toml"), tmp_path / "a")
    assert str(info.value) == (
        "ev.toml: [ev] value_floor and wear_gnc must be ranges of 0 or more, station_price above 0 "
        "in base units of 0.00000001 GNC (further decimals are dropped)"
    )
    fees = {"fee_gnc": 0.3, "charging_discount_gnc": 0.1, "parking_discount_gnc": 0.2}
    scenario = scenario_from_dict({**MORNING, "ev": {**MORNING["ev"], **fees}}, "ev.toml")
    Neighbourhood(scenario, memory_network(scenario, tmp_path / "b")).close()


def test_a_trip_no_battery_of_the_range_holds_is_refused_as_it_loads(tmp_path: Path) -> None:
    """``commute_kwh`` and ``battery_kwh`` each within their ranges, a trip of 1,000 kWh and a
    battery of 1 Wh ran and topped every vehicle up to its trips (2,999,999 Wh from the station,
    a state of charge of 100,000,000 %): refused as the file loads, in Wh (as the vehicles draw),
    both ways when a vehicle has no home charger, one way when every vehicle has one."""
    for ev, message in (
        (
            {"battery_kwh": [0.001, 0.001], "commute_kwh": [1000, 1000]},
            "its trip home and back (without a home charger), up to 2,000 kWh, and the smallest battery "
            "holds 0.001 kWh",
        ),
        (
            {"battery_kwh": [10.0, 75.0], "commute_kwh": [3.0, 12.0], "home_charger_share": 1.0},
            "its trip home, up to 12 kWh, and the smallest battery holds 10 kWh",
        ),
    ):
        doc = {**MORNING, "ev": {**MORNING["ev"], **ev}}
        with pytest.raises(ConfigError) as info:
            scenario_from_dict(doc, "ev.toml")
        assert str(info.value) == (
            f"ev.toml: [ev] commute_kwh does not fit in battery_kwh: a vehicle leaves the hotspot holding "
            f"{message}; give a smaller commute_kwh or a larger battery_kwh"
        )
    with pytest.raises(ConfigError) as info:  # (a battery of no whole Wh: its state of charge divided by 0)
        scenario_from_dict({**MORNING, "ev": {**MORNING["ev"], "battery_kwh": [0.0004, 1.0]}}, "ev.toml")
    assert str(info.value) == "ev.toml: [ev] battery_kwh must be at least 0.001 (1 Wh)"
    # Both ways fit exactly; every vehicle with a home charger needs only the way home.
    fits = {"battery_kwh": [18.0, 40.0], "commute_kwh": [3.0, 9.0]}
    scenario_from_dict({**MORNING, "ev": {**MORNING["ev"], **fits}}, "ev.toml")
    every = {"battery_kwh": [9.0, 40.0], "commute_kwh": [3.0, 9.0], "home_charger_share": 1.0}
    scenario_from_dict({**MORNING, "ev": {**MORNING["ev"], **every}}, "ev.toml")


def test_a_vehicle_never_holds_more_than_its_battery(tmp_path: Path) -> None:
    """Whatever the table says (here one the loader refuses, built past it), a vehicle leaving
    the hotspot tops up to at most its battery: the station's top-up is at most a battery's
    room per vehicle and every state of charge stays within 0 to 100 %."""
    evening = {
        **MORNING,
        "simulation": {**MORNING["simulation"], "start": "2026-06-22T15:00:00Z", "intervals": 12},
    }
    scenario = scenario_from_dict(evening, "ev.toml")
    huge = dataclasses.replace(
        scenario.tables["ev"], battery_kwh=(0.001, 0.001), commute_kwh=(1000.0, 1000.0)
    )
    report = simulate(dataclasses.replace(scenario, tables={**scenario.tables, "ev": huge}), tmp_path / "out")
    ev = report["roles"]["ev"]
    assert [c["battery_kwh"] for c in ev["cars"]] == [0.001] * 8
    assert all(0 <= c["soc_end_percent"] <= 100 for c in ev["cars"])
    assert 0 < ev["station_top_up_wh"] <= 8  # (1 Wh each, at most: it was 2,999,999 Wh)
