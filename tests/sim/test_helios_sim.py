"""Helios credits in the simulator (``[helios]``): the consortium's controller mints for every
PV home hourly, and the chain shows credits equal to the energy the readings show injected and
no contract paid for (a Wh is paid once)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from gridnet.errors import ConfigError
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.aggregator import TRADE_RECORDS
from gridnet.ledger.txs.contract import CONTRACTS
from gridnet.ledger.txs.helios import CONTROLLERS, ENROLLMENTS, controller_id, credits_of
from gridnet.ledger.txs.meter import METERS, READINGS, reading_key
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import scenario_from_dict
from gridnet.units import interval_of
from tests.helpers import participant_key

DAY: dict[str, Any] = {
    "simulation": {"intervals": 16, "start": "2026-06-21T09:00:00Z"},
    "homes": {"count": 4, "pv_share": 0.5, "battery_share": 0.0, "businesses": 0},
    "relay": {"hill_homes": 0},
    "chain": {"block_interval_s": 60},
    "helios": {"enabled": True, "name": "Island", "every_intervals": 4},
}


def test_the_controller_credits_what_the_meters_injected(tmp_path: Path) -> None:
    sc = scenario_from_dict(DAY, "helios.toml")
    report = simulate(sc, tmp_path / "out")
    helios = report["roles"]["helios"]
    assert report["verify"]["ok"] and report["transactions"]["refused"] == {}
    assert helios["enrolled"] == helios["producers"] == 2
    assert helios["mints"] >= 2 * 3 and helios["minted_wh"] > 0 and helios["credits_match_energy"]
    chain = Chain.open(tmp_path / "out" / "chain", readonly=True)
    try:
        view = chain.view()
        cid = controller_id(participant_key(report, "helios-controller").public_key, "Island")
        controller = view.get(CONTROLLERS, cid)
        assert controller is not None and controller.supply == helios["minted_wh"]
        first = interval_of(sc.start_ms)
        total = 0
        contracts = [
            c
            for k in chain.values
            if k.startswith(CONTRACTS.prefix) and (c := view.get(CONTRACTS, k[len(CONTRACTS.prefix) :]))
        ]
        for key in [k for k in chain.values if k.startswith(ENROLLMENTS.prefix + cid)]:
            meter = key[len(ENROLLMENTS.prefix) + len(cid) :]
            enrollment = view.get(ENROLLMENTS, cid + meter)
            record = view.get(METERS, meter)
            assert enrollment is not None and record is not None
            exported = 0
            for i in range(first, enrollment.minted_through + 1):
                reading = view.get(READINGS, reading_key(meter, i))
                assert reading is not None and reading.sold_wh == reading.exported_wh  # (all paid for)
                exported += reading.exported_wh
            sold = sum(
                d.wh
                for c in contracts
                if c.terms.seller_meter == meter
                for d in c.paid
                if d.interval <= enrollment.minted_through
            )
            assert enrollment.minted_wh == exported - sold > 0 and sold > 0
            assert credits_of(view, cid, record.owner) == exported - sold  # (nobody transferred)
            total += exported - sold
        assert total == controller.minted_wh
    finally:
        chain.close()


COMBINED: dict[str, Any] = {
    "simulation": {"seed": 2, "intervals": 8, "start": "2026-06-22T07:00:00Z"},
    "homes": {"count": 8, "pv_share": 0.5, "businesses": 0},
    "helios": {"enabled": True, "name": "Island", "every_intervals": 4},
    "aggregators": {"enabled": True},
}
"""Helios beside the aggregators: half the PV homes sell through the aggregators, and the
controller credits the same meters."""


def test_helios_beside_the_aggregators_credits_only_what_nobody_sold(tmp_path: Path) -> None:
    """A mint takes the export left unsold, so the controller mints an interval only once every
    aggregators' trade of it is on chain (or refused): before, it minted while records were on
    their way, the chain refused 4 of the 15 (``GrantExceedsAvailable``), and the report's
    check left the records out (4,665 credits against 5,509 Wh)."""
    sc = scenario_from_dict(COMBINED, "helios-aggregators.toml")
    report = simulate(sc, tmp_path / "out")
    helios, a = report["roles"]["helios"], report["roles"]["aggregators"]
    assert report["verify"]["ok"] and report["transactions"]["refused"] == {}
    assert helios["credits_match_energy"] and helios["mints"] >= 4
    assert helios["minted_wh"] == helios["injected_wh_minted_intervals"] > 0
    assert a["records"] == a["records_signed"] > 0 and a["refused"] == a["records_refused"] == 0
    chain = Chain.open(tmp_path / "out" / "chain", readonly=True)
    try:
        view = chain.view()
        cid = controller_id(participant_key(report, "helios-controller").public_key, "Island")
        first = interval_of(sc.start_ms)
        sold: dict[str, Counter[tuple[bytes, int]]] = {"granted": Counter(), "paid": Counter()}
        for k in chain.values:  # (what the records granted and the contracts paid, by meter and interval)
            if k.startswith(TRADE_RECORDS.prefix):
                r = view.get(TRADE_RECORDS, k[len(TRADE_RECORDS.prefix) :])
                assert r is not None
                sold["granted"][r.seller_meter, r.interval] += r.aeg_wh
            elif k.startswith(CONTRACTS.prefix):
                c = view.get(CONTRACTS, k[len(CONTRACTS.prefix) :])
                assert c is not None
                for d in c.paid:
                    sold["paid"][c.terms.seller_meter, d.interval] += d.wh
        granted, paid = sold["granted"], sold["paid"]
        minted = overlap = 0
        for key in [k for k in chain.values if k.startswith(ENROLLMENTS.prefix + cid)]:
            meter = key[len(ENROLLMENTS.prefix) + len(cid) :]
            enrollment = view.get(ENROLLMENTS, cid + meter)
            assert enrollment is not None
            unsold = 0
            for i in range(first, enrollment.minted_through + 1):
                reading = view.get(READINGS, reading_key(meter, i))
                assert reading is not None and reading.sold_wh == reading.exported_wh
                unsold += reading.exported_wh - paid[meter, i] - granted[meter, i]
                overlap += granted[meter, i]
            assert enrollment.minted_wh == unsold
            minted += unsold
        assert minted == helios["minted_wh"] and overlap > 0  # (the two sold the same meters' export)
    finally:
        chain.close()


def test_a_bad_helios_table_is_one_clear_line(tmp_path: Path) -> None:
    for bad, message in (
        ({"threshold": 4}, "threshold 1 to members"),
        ({"every_intervals": 0}, "every_intervals"),
        ({"island": True, "inject_w": 0, "withdraw_w": 0}, "not both 0"),
        ({"island": True, "inject_w": -1}, "inject_w must be 0 to 1,000,000 W"),
        ({"island": True, "inject_w": 3}, "a cap below 4 W allows 0 Wh an interval"),
    ):
        doc = {**DAY, "helios": {**DAY["helios"], **bad}}
        with pytest.raises(ConfigError, match=message):
            simulate(scenario_from_dict(doc, "helios.toml"), tmp_path / f"bad-{len(message)}")


ISLAND: dict[str, Any] = {
    **DAY,
    "homes": {
        "count": 4, "pv_share": 1.0, "battery_share": 1.0, "businesses": 0, "pv_kw": [0.13, 0.13],
        "battery_kwh": [3.6, 3.6], "battery_kw": 0.3, "annual_kwh": [60, 1500], "battery_sell_above": 40.0,
        "battery_buy_below": 0.0,
    },
    "dso": {"balancing_kwh": 0.5},
    "helios": {**DAY["helios"], "island": True, "inject_w": 40, "withdraw_w": 120},
}  # fmt: skip


def test_an_island_keeps_every_node_and_its_gateway_within_their_caps(tmp_path: Path) -> None:
    """The paper's nodes (130 W panel, 12 V / 300 Ah battery) on an island whose line takes
    40 W from each and gives each 120 W: the consortium registers it with the DSO's meter as
    gateway, and every reading on chain, the nodes' and the gateway's (less the transformers'
    losses), is within its cap."""
    from gridnet.ledger.txs.helios import ISLAND_MEMBERS, ISLANDS, cap_wh

    sc = scenario_from_dict(ISLAND, "helios-island.toml")
    report = simulate(sc, tmp_path / "out")
    island = report["roles"]["helios"]["island"]
    assert report["verify"]["ok"] and report["transactions"]["refused"] == {}
    assert island["registered"] and island["nodes"] == 4 and island["within_caps"]
    chain = Chain.open(tmp_path / "out" / "chain", readonly=True)
    try:
        view = chain.view()
        cid = controller_id(participant_key(report, "helios-controller").public_key, "Island")
        found = view.get(ISLANDS, cid)
        assert found is not None and (found.absorb_w, found.supply_w) == (160, 480)
        gateway = view.get(ISLAND_MEMBERS, found.gateway)
        assert gateway is not None and (gateway.inject_w, gateway.withdraw_w) == (480, 160)
        first = interval_of(sc.start_ms)
        exports = []
        for node in found.nodes:
            for i in range(first, first + 16):
                reading = view.get(READINGS, reading_key(node.meter, i))
                assert reading is not None
                assert reading.exported_wh <= cap_wh(40) and reading.imported_wh <= cap_wh(120)
                exports.append(reading.exported_wh)
        # The gateway is the substation's meter, on the grid's side of the transformers: what
        # the island's cables carry is its reading less the transformers' losses (to the Wh).
        losses: dict[int, float] = {}
        for line in pq.read_table(tmp_path / "out" / "series" / "lines.parquet").to_pylist():
            losses[line["interval"]] = losses.get(line["interval"], 0.0) + line["transformer_losses_wh"]
        for i in range(first, first + 16):
            reading = view.get(READINGS, reading_key(found.gateway, i))
            assert reading is not None
            island = reading.exported_wh - reading.imported_wh - losses[i]
            assert -cap_wh(160) - 1 <= island <= cap_wh(480) + 1
        assert max(exports) == cap_wh(40)  # the cap binds: a node selling its battery down stops there
    finally:
        chain.close()


def test_a_redemption_is_released_through_the_meters_release_relay(tmp_path: Path) -> None:
    """Producers redeem their credits in the afternoon; the controller closes each one's
    release relay from the redemption's window on, opens it once the energy has flowed, and
    the redemption is discharged on chain by the meter's readings."""
    from gridnet.ledger.txs.helios import DISCHARGED, REDEMPTIONS

    doc = {
        **ISLAND,
        "simulation": {"intervals": 32, "start": "2026-06-21T10:00:00Z"},
        "helios": {**ISLAND["helios"], "redeem_hour_utc": 13},
        "meters": {"devices": "memory"},
    }
    report = simulate(scenario_from_dict(doc, "helios-island.toml"), tmp_path / "out")
    redemptions = report["roles"]["helios"]["redemptions"]
    assert report["verify"]["ok"] and report["transactions"]["refused"] == {}
    assert redemptions["redemptions"] >= 1 and redemptions["redeemed_wh"] > 0
    assert redemptions["discharged"] == redemptions["released_through_relays"] == redemptions["redemptions"]
    # Each release: the relay closed, then opened again (and every node's relay opened at the start).
    assert redemptions["relay_commands"] == 4 + 2 * redemptions["redemptions"]
    assert report["roles"]["meters"]["relay_commands"] == redemptions["relay_commands"]
    # Released energy is imported, not export sold another way: it leaves unsold export alone.
    e = report["energy"]
    assert e["unsold_export_wh"] == e["exported_wh"] - e["p2p_wh"] - e["sold_to_dso_wh"] >= 0
    chain = Chain.open(tmp_path / "out" / "chain", readonly=True)
    try:
        view = chain.view()
        cid = controller_id(participant_key(report, "helios-controller").public_key, "Island")
        found = [
            view.get(REDEMPTIONS, k[len(REDEMPTIONS.prefix) :])
            for k in chain.values
            if k.startswith(REDEMPTIONS.prefix + cid)
        ]
        assert found and all(r is not None and r.status == DISCHARGED for r in found)
    finally:
        chain.close()


def test_redeeming_needs_an_island_with_meter_devices(tmp_path: Path) -> None:
    doc = {**ISLAND, "helios": {**ISLAND["helios"], "redeem_hour_utc": 14}}
    with pytest.raises(ConfigError, match="redeem_hour_utc needs island = true and"):
        simulate(scenario_from_dict(doc, "helios.toml"), tmp_path / "bad")
    doc = {**ISLAND, "helios": {**ISLAND["helios"], "redeem_hour_utc": 24}, "meters": {"devices": "memory"}}
    with pytest.raises(ConfigError, match="redeem_hour_utc must be -1"):
        simulate(scenario_from_dict(doc, "helios.toml"), tmp_path / "bad2")
