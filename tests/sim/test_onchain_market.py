"""The same day with the market off chain (paper 001: the hub clears gossiped orders) and on
chain (seed 004: orders are transactions, the chain clears): the same auctions, the same
contracts, the same energy; the on-chain day's contracts are those the chain's auctions made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.auction import AUCTIONS, Auction
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import scenario_from_dict

DAY: dict[str, Any] = {
    "simulation": {"intervals": 6, "start": "2026-06-21T10:00:00Z"},
    "homes": {"count": 6, "battery_share": 0.0},
    "chain": {"block_interval_s": 30},
}
"""(Blocks every 30 s: the DSO places its own orders from those on its node's head halfway to
the auction's close, and with blocks every 60 s a gap of 400 s without one had left it none
to size its orders to in an interval: the markets then cleared differently.)"""


def test_both_markets_clear_the_same_day_alike(tmp_path: Path) -> None:
    reports = {}
    for mode in ("offchain", "onchain"):
        doc = {**DAY, "chain": {**DAY["chain"], "market": mode}}
        reports[mode] = simulate(scenario_from_dict(doc, f"{mode}.toml"), tmp_path / mode)
    off, on = reports["offchain"], reports["onchain"]
    for r in (off, on):
        assert r["converged"] and r["verify"]["ok"] and r["transactions"]["refused"] == {}
        assert r["transactions"]["abandoned"] == 0
    assert "PlaceOrder" not in off["transactions"]["submitted"]
    assert on["transactions"]["submitted"]["PlaceOrder"] > 0
    assert on["transactions"]["submitted"].get("OpenContract") == 6  # only the balancing contracts
    assert on["contracts"]["opened"] == off["contracts"]["opened"] > 0
    assert on["energy"]["contracted_p2p_wh"] == off["energy"]["contracted_p2p_wh"] > 0
    chain = Chain.open(tmp_path / "onchain" / "chain")
    try:
        auctions = [
            a
            for key in chain.values
            if key.startswith(AUCTIONS.prefix)
            and isinstance(a := chain.view().get(AUCTIONS, key[1:]), Auction)
        ]
    finally:
        chain.close()
    assert len(auctions) == 6 and all(a.cleared and a.late == 0 for a in auctions)
    assert sum(len(a.contracts) for a in auctions) == on["contracts"]["opened"]
