"""The auction benchmark at tiny sizes: both clearings trade the same energy at the same
prices, and its figures agree with each other (no time limits: rates are only positive)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

from gridnet.bench import auction
from gridnet.bench.ledger import measure_raw_verify
from gridnet.cli.bench import app as bench_app
from gridnet.ledger.params import default_params
from gridnet.market.matching import Clearing, clear_double_auction
from gridnet.market.orders import Side

TINY = {"homes": 10, "orders": 40}


@pytest.fixture(autouse=True)
def quick_verify_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shorter raw Ed25519 measurement (the figure is only reported)."""
    monkeypatch.setattr(auction, "measure_raw_verify", lambda: measure_raw_verify(0.05))


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(auction, "measure_raw_verify", lambda: measure_raw_verify(0.05))
        return auction.run(**TINY, rounds=2)


def test_both_clearings_trade_the_same_energy(figures: dict[str, Any]) -> None:
    homes = auction.make_homes(TINY["homes"], 4)
    book = auction.make_orders(homes, TINY["orders"], seed=1)
    bids = sum(o.wh for o in book if homes[o.home].side == Side.BID)
    offers = sum(o.wh for o in book if homes[o.home].side == Side.OFFER)
    assert 0 < figures["traded_wh"] <= min(bids, offers)
    assert figures["onchain_trades"] == figures["offchain_trades"] > 0
    assert set(figures["prices"]) == {f"area-{a}" for a in range(4)}
    assert all(p >= 0 for p in figures["prices"].values())


def test_the_figures_agree(figures: dict[str, Any]) -> None:
    f = figures
    assert f["orders"] == TINY["orders"] and f["homes"] == TINY["homes"]
    for rate in ("onchain_orders_per_s", "offchain_orders_per_s", "ed25519_verify_per_s"):
        assert f[rate] > 0
    assert f["onchain_clearing_s"] > 0 and f["offchain_clearing_s"] > 0
    assert f["onchain_to_offchain_ratio"] == pytest.approx(
        f["onchain_orders_per_s"] / f["offchain_orders_per_s"], rel=1e-2
    )
    assert f["onchain_bytes_per_trade"] > 0 and f["offchain_bytes_per_trade"] > 0
    assert f["onchain_bytes_per_trade"] == pytest.approx(
        f["onchain_order_tx_bytes"] / f["onchain_trades"], 0.01
    )
    assert f["offchain_bytes_per_trade"] == pytest.approx(
        f["offchain_open_contract_bytes"] / f["offchain_trades"], 0.01
    )
    assert f["onchain_to_offchain_bytes_ratio"] == pytest.approx(
        f["onchain_bytes_per_trade"] / f["offchain_bytes_per_trade"], rel=1e-2
    )
    # An OpenContract carries four signatures and keys beside its own: more than an order.
    assert f["offchain_bytes_per_trade"] > f["onchain_order_tx_bytes"] / f["orders"]
    assert f["onchain_latency_blocks"] == 2 and f["offchain_latency_blocks"] == 1
    assert f["auction_close_ms"] == default_params().auction_close_ms
    json.dumps(f, allow_nan=False)  # a JSON object as it is printed


def test_a_clearing_that_differs_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def short(*args: Any, **kwargs: Any) -> Clearing:
        c = clear_double_auction(*args, **kwargs)
        return msgspec.structs.replace(c, trades=c.trades[:-1]) if c.trades else c

    monkeypatch.setattr(auction, "clear_double_auction", short)
    with pytest.raises(RuntimeError, match="on chain"):
        auction.run(**TINY, rounds=1)


def test_sizes_it_cannot_run_with() -> None:
    with pytest.raises(ValueError, match="buyer and a seller"):
        auction.check_sizes(homes=7, orders=40, areas=4)
    with pytest.raises(ValueError, match="orders per area"):
        auction.check_sizes(homes=10, orders=2 * auction.MAX_AUCTION_ORDERS + 1, areas=2)
    auction.check_sizes(homes=10, orders=2 * auction.MAX_AUCTION_ORDERS, areas=2)


def test_the_command_prints_one_json_object() -> None:
    runner = CliRunner()
    result = runner.invoke(bench_app, ["auction", "--json", "--homes", "8", "--orders", "30", "--areas", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["homes"] == 8 and out["orders"] == 30 and out["areas"] == 2
    refused = runner.invoke(bench_app, ["auction", "--homes", "3", "--areas", "2"])
    assert refused.exit_code == 2 and "buyer and a seller" in refused.output
