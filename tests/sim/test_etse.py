"""Seed 004's illustrative scenario on the ledger (scenarios/etse.toml and its variant), with
both outcomes read from the chain itself: n1's policy buys 12 Ah under £60/MWh; n3 (outdated,
updated) sells at £45, or, when its update fails, stays banned and n5 sells at £50."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gridnet.contracts.channel import contract_id
from gridnet.crypto.keys import PrivateKey
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.advisory import vulnerable_meter
from gridnet.ledger.txs.auction import AUCTIONS, Auction
from gridnet.ledger.txs.contract import CONTRACTS, ContractRecord
from gridnet.ledger.txs.meter import METERS
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import load_scenario
from gridnet.units import UNITS_PER_GNC

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
GBP_PER_GNC = Decimal("0.5")  # the scenarios' [currency] rate


def key(name: str, label: str) -> PrivateKey:
    return PrivateKey.from_label(f"{name}/1/{label}")


def gbp_per_mwh(units_per_kwh: int) -> Decimal:
    return Decimal(units_per_kwh) * 1000 / UNITS_PER_GNC * GBP_PER_GNC


@pytest.mark.parametrize(
    ("file", "winner", "price", "n3_firmware"),
    [("etse.toml", "home-3", 45, "2.1.0"), ("etse-update-fails.toml", "home-5", 50, "2.0.3")],
)
def test_the_seeds_scenario_ends_on_chain_as_the_seed_tells(
    tmp_path: Path, file: str, winner: str, price: int, n3_firmware: str
) -> None:
    scenario = load_scenario(SCENARIOS / file)
    name = scenario.simulation.name
    report = simulate(scenario, tmp_path / "out")
    assert report["converged"] and report["verify"]["ok"]
    assert report["currency"] == {"name": "GBP", "per_gnc": 0.5}
    n1, n3 = key(name, "home-1"), key(name, "home-3/meter")
    chain = Chain.open(tmp_path / "out" / "chain")
    try:
        view = chain.view()
        records = [view.get(CONTRACTS, k[1:]) for k in chain.values if k.startswith(CONTRACTS.prefix)]
        bought = [r for r in records if isinstance(r, ContractRecord) and r.terms.buyer == n1.address]
        auctions = [view.get(AUCTIONS, k[1:]) for k in chain.values if k.startswith(AUCTIONS.prefix)]
        n3_meter = view.get(METERS, n3.address)
        banned = vulnerable_meter(view, chain.params, n3.address) is not None
    finally:
        chain.close()
    peer = [r for r in bought if r.terms.seller != key(name, "dso").address]  # (not its balancing)
    assert len(peer) == 1  # one purchase: 12 Ah at 48 V
    (deal,) = peer
    assert deal.terms.seller == key(name, winner).address
    assert deal.terms.max_wh == deal.paid_wh == 576
    assert gbp_per_mwh(deal.terms.price) == price  # pay as offered: the winner's own price
    assert any(contract_id(deal.terms) in a.contracts for a in auctions if isinstance(a, Auction))
    assert n3_meter is not None and n3_meter.firmware == n3_firmware
    assert banned == (winner == "home-5")
    assert report["roles"]["advisor"]["meters_banned_at_end"] == ([] if winner == "home-3" else ["home-3"])
