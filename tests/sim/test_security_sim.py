"""The security layer in a simulated day: an advisory covers the firmware two sellers' meters
run; the one that installs the fix trades again, the one that cannot stays out of every
auction and contract. Everything is asserted from the chain and the auction books."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import ConfigError
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.contract import CONTRACTS, ContractRecord
from gridnet.ledger.txs.meter import METERS
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import scenario_from_dict

DAY = {
    "simulation": {"intervals": 6, "start": "2026-06-21T10:00:00Z"},
    "homes": {"count": 6, "battery_share": 0.0, "sell_floor": [0.01, 0.02]},
    "manufacturer": {
        "firmware": "1.0.0",
        "old_firmware": "0.9.0",
        "outdated": ["home-0", "home-1"],
        "not_updatable": ["home-1"],
    },
    "advisor": {"affected": ["0.9.0"], "severity": "critical", "fixed_in": "1.0.0"},
}


def meter_of(home: str) -> bytes:
    return PrivateKey.from_label(f"neighbourhood/1/{home}/meter").address


def test_an_outdated_meter_is_updated_and_one_that_cannot_be_stays_out(tmp_path: Path) -> None:
    report = simulate(scenario_from_dict(DAY, "sel.toml"), tmp_path / "out")
    assert report["converged"] and report["verify"]["ok"]
    sel = report["roles"]["advisor"]
    assert sel["meters_banned_at_end"] == ["home-1"]
    assert (sel["updates_installed"], sel["update_failures"]) == (1, 1)
    assert sel["orders_withheld"] > 0 and sel["subsidies_withheld"] == 1  # its device knows it is banned
    assert report["transactions"]["refused"] == {}
    assert (
        report["transactions"]["abandoned"] == 2
    )  # home-1's balancing contract never opens: its open, and the DSO's settling, give up
    chain = Chain.open(tmp_path / "out" / "chain")
    try:
        view = chain.view()
        fixed, stuck = view.get(METERS, meter_of("home-0")), view.get(METERS, meter_of("home-1"))
        assert fixed is not None and (fixed.firmware, fixed.status_seq) == ("1.0.0", 1)
        assert stuck is not None and (stuck.firmware, stuck.status_seq) == ("0.9.0", 0)
        contracts = [
            view.get(CONTRACTS, key[len(CONTRACTS.prefix) :])
            for key in chain.values
            if key.startswith(CONTRACTS.prefix)
        ]
    finally:
        chain.close()
    sellers = {c.terms.seller_meter for c in contracts if isinstance(c, ContractRecord)}
    assert meter_of("home-0") in sellers  # it sells once its fix is on chain
    assert meter_of("home-1") not in sellers and meter_of("home-1") not in {
        c.terms.buyer_meter
        for c in contracts
        if isinstance(c, ContractRecord) and c.terms.first_interval != c.terms.last_interval
    }
    orders = pq.read_table(tmp_path / "out" / "series" / "orders.parquet").to_pylist()
    assert not [o for o in orders if o["owner"] == "home-1"]  # never in an auction's book


def test_the_tables_name_real_participants_and_severities(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[manufacturer\] outdated names 'home-9', which has no meter"):
        simulate(
            scenario_from_dict({**DAY, "manufacturer": {"outdated": ["home-9"]}}, "s.toml"), tmp_path / "a"
        )
    with pytest.raises(ConfigError, match=r"\[advisor\] severity: severity 'dire' is not one of"):
        simulate(
            scenario_from_dict({**DAY, "advisor": {"affected": ["0.9.0"], "severity": "dire"}}, "s.toml"),
            tmp_path / "b",
        )
    late_fix = {"affected": ["0.9.0", "1.0.0"], "severity": "high", "fixed_in": "1.0.0"}
    with pytest.raises(ConfigError, match=r"\[advisor\]: the chain would refuse this advisory: the fixing"):
        simulate(scenario_from_dict({**DAY, "advisor": late_fix}, "s.toml"), tmp_path / "c")
    policies = {**DAY, "policies": {"home-2": "nope.toml"}}
    with pytest.raises(ConfigError, match=r"s.toml: \[policies\] home-2: policy file .*nope.toml not found"):
        simulate(scenario_from_dict(policies, "s.toml"), tmp_path / "d")
    with pytest.raises(ConfigError, match=r"\[manufacturer\] not_updatable must be a list of strings"):
        scenario_from_dict({**DAY, "manufacturer": {"not_updatable": "home-1"}}, "s.toml")


def test_what_the_chain_refused_to_settle_is_not_counted_as_traded_or_paid(tmp_path: Path) -> None:
    """An advisory an hour into the day makes every meter vulnerable: the chain refuses the
    settlements that follow (VulnerableMeter). The report counts as traded and paid what the
    chain paid for, names the rest, and the deposits left locked in open contracts."""
    scenario = {
        "simulation": {"intervals": 8, "start": "2026-06-21T09:00:00Z"},
        "homes": {"count": 6},
        "advisor": {"affected": ["1.0.0"], "severity": "high", "after_min": 50},
    }
    report = simulate(scenario_from_dict(scenario, "late-advisory"), tmp_path / "out")
    assert report["transactions"]["refused"].get("VulnerableMeter", 0) > 0
    energy = report["energy"]
    assert energy["unpaid_wh"] > 0
    chain = Chain.open(tmp_path / "out" / "chain", readonly=True)
    try:
        records = [
            r
            for key in chain.values
            if key.startswith(CONTRACTS.prefix)
            and isinstance(r := chain.view().get(CONTRACTS, key[len(CONTRACTS.prefix) :]), ContractRecord)
        ]
    finally:
        chain.close()
    imbalance = report["contracts"]["imbalance"]["bought_wh"]
    traded = energy["p2p_wh"] + energy["bought_from_dso_wh"] + energy["sold_to_dso_wh"]
    assert traded + imbalance == sum(r.paid_wh for r in records)
    homes = report["homes"]
    assert sum(h["imbalance_wh"] for h in homes) == imbalance
    assert sum(h["bought_p2p_wh"] for h in homes) == sum(h["sold_p2p_wh"] for h in homes) == energy["p2p_wh"]
    addresses = {PrivateKey.from_label(f"neighbourhood/1/{h['name']}").address for h in homes}
    locked = sum(r.remaining for r in records if not r.closed and r.terms.buyer in addresses)
    held = [r for r in records if not r.closed and r.remaining]  # (settled in full: nothing held)
    assert locked > 0 and report["contracts"]["open_at_end"] == len(held) > 0
    assert sum(h["locked_gnc"] for h in homes) == pytest.approx(locked / 10**8, abs=1e-7)
