"""Market benchmark: uniform-price double auctions over already verified orders.

The clearing rate is set against the raw Ed25519 verification rate measured in the same
process (as in the ledger benchmark): machines are noisy, the ratio is what counts.
Orders are built (and their ids computed) before the clock starts: verification is what
the Ed25519 figure stands for, clearing is what this measures.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from gridnet.bench.ledger import measure_raw_verify
from gridnet.crypto.keys import PrivateKey
from gridnet.market.matching import clear_auctions
from gridnet.market.orders import Order, Side, VerifiedOrder, compute_order_id

Progress = Callable[[str], None]

BASE_PRICE = 25_000
"""Centre of the generated prices [base units / kWh]."""


def make_orders(
    n: int, *, areas: int = 4, intervals: int = 96, traders: int = 1000, seed: int = 1
) -> list[VerifiedOrder]:
    """``n`` bids and offers (half each) with overlapping prices, spread at random over
    ``areas`` x ``intervals`` auctions, in random arrival order."""
    rng = random.Random(seed)
    keys = [PrivateKey.from_label(f"bench-market-{i}") for i in range(min(traders, 64))]
    owners = [(keys[i % len(keys)].address, keys[i % len(keys)].public_key) for i in range(traders)]
    meters = [rng.randbytes(20) for _ in range(traders)]
    first_interval = 1_900_000
    out = []
    for k in range(n):
        side = Side.BID if k % 2 == 0 else Side.OFFER
        t = rng.randrange(traders)
        # Bids a little above offers on average, so that about half the energy trades.
        shift = 1_500 if side == Side.BID else -1_500
        interval = first_interval + rng.randrange(intervals)
        order = Order(
            side=side,
            owner=owners[t][0],
            owner_key=owners[t][1],
            meter=meters[t],
            area=f"area-{rng.randrange(areas)}",
            interval=interval,
            wh=rng.randint(100, 5_000),
            price=BASE_PRICE + shift + rng.randint(-8_000, 8_000),
            expiry=interval,
            nonce=k,
        )
        out.append(VerifiedOrder(compute_order_id(order), order))
    return out


def run(*, orders: int = 200_000, rounds: int = 3, progress: Progress | None = None) -> dict[str, Any]:
    """Clear ``orders`` pre-verified orders ``rounds`` times; report the median round."""
    say = progress or (lambda _msg: None)
    say("measuring raw Ed25519 verification")
    verify_before = measure_raw_verify()
    say(f"building {orders} orders")
    book = make_orders(orders)
    times = []
    result = {}
    for r in range(rounds):
        say(f"clearing round {r + 1}/{rounds}")
        start = time.perf_counter()
        result = clear_auctions(book)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    verify_after = measure_raw_verify()
    ed_rate = (verify_before + verify_after) / 2
    orders_per_s = orders / median
    trades = sum(len(c.trades) for c in result.values())
    traded_wh = sum(c.traded_wh for c in result.values())
    return {
        "orders_per_s": round(orders_per_s, 1),
        "ed25519_verify_per_s": round(ed_rate, 1),
        "ratio": round(orders_per_s / ed_rate, 3),
        "orders": orders,
        "auctions": len(result),
        "trades": trades,
        "traded_wh": traded_wh,
        "seconds": round(median, 4),
        "rounds": rounds,
    }
