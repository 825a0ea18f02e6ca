"""The vehicle-to-vehicle auctions (``market/ev_auction.py``): the iterative double auction
settles demand and supply round by round and reaches the welfare the curves allow; the one-shot
double auction on the same requests trades in one round with fewer messages and less welfare."""

from __future__ import annotations

import random

import pytest

from gridnet.market.ev_auction import Offer, Request, iterative_auction, one_shot_auction, welfare

GNC = 100_000_000


def vid(n: int) -> bytes:
    return n.to_bytes(20, "big")


def market(seed: int, buyers: int = 6, sellers: int = 5) -> tuple[list[Request], list[Offer]]:
    rng = random.Random(seed)
    requests = [
        Request(vid(n), rng.randint(2_000, 11_000), int(0.55 * GNC), int(rng.uniform(0.30, 0.42) * GNC))
        for n in range(buyers)
    ]
    offers = [
        Offer(vid(100 + n), rng.randint(2_000, 11_000), int(0.30 * GNC), int(rng.uniform(0.33, 0.40) * GNC))
        for n in range(sellers)
    ]
    return requests, offers


def test_the_iterative_auction_settles_demand_and_supply_at_one_price() -> None:
    requests, offers = market(1)
    out = iterative_auction(requests, offers, buyer_wedge=3_000_000, seller_gain=2_000_000, tolerance_wh=50)
    assert out.price is not None and 1 < out.rounds <= 64
    assert out.messages == 2 * 11 * out.rounds + 11  # price out, answer back each round; the result
    bought = {r.vehicle: sum(p.wh for p in out.pairs if p.buyer == r.vehicle) for r in requests}
    sold = {o.vehicle: sum(p.wh for p in out.pairs if p.seller == o.vehicle) for o in offers}
    assert sum(bought.values()) == sum(sold.values()) == out.traded_wh > 0
    for r in requests:  # nobody takes more than it wants at the price, nor gives more
        assert bought[r.vehicle] <= r.demand(out.price + 3_000_000)
    for o in offers:
        assert sold[o.vehicle] <= o.supply(out.price + 2_000_000)
    # At the price the two sides met: within the tolerance, or the bracket closed on one price.
    demand = sum(r.demand(out.price + 3_000_000) for r in requests)
    supply = sum(o.supply(out.price + 2_000_000) for o in offers)
    assert abs(demand - supply) <= max(50, sum(r.want_wh for r in requests) // 100)


@pytest.mark.parametrize("seed", range(12))
def test_the_iterative_auction_reaches_more_welfare_than_the_one_shot(seed: int) -> None:
    requests, offers = market(seed)
    iterative = iterative_auction(requests, offers, tolerance_wh=20)
    one_shot = one_shot_auction(requests, offers)
    assert one_shot.rounds == 1 and one_shot.messages == 2 * (len(requests) + len(offers))
    assert iterative.messages > one_shot.messages
    assert iterative.welfare >= one_shot.welfare - 1e-6 * GNC
    # No reallocation of the same energy beats it by more than rounding: moving 100 Wh from any
    # buyer to another with room left for it never adds welfare.
    base = iterative.welfare
    got = {r.vehicle: sum(p.wh for p in iterative.pairs if p.buyer == r.vehicle) for r in requests}
    for p in iterative.pairs:
        for r in requests:
            if r.vehicle != p.buyer and p.wh >= 100 and got[r.vehicle] + 100 <= r.want_wh:
                moved = [q for q in iterative.pairs if q != p]
                moved += [p._replace(wh=p.wh - 100), p._replace(buyer=r.vehicle, wh=100)]
                assert welfare(requests, offers, moved) <= base + 0.0005 * GNC


def test_the_benchmark_compares_the_two_auctions_on_the_same_hotspots() -> None:
    from gridnet.bench import ev_auction

    figures = ev_auction.run(auctions=60)
    assert figures["auctions"] == 60 and figures["welfare_ratio"] > 1
    assert figures["messages_per_vehicle_one_shot"] == 2.0 < figures["messages_per_vehicle_iterative"]
    assert 1 < figures["rounds_mean"] <= figures["rounds_max"] <= 40


def test_the_iterative_auction_trades_whenever_some_price_would() -> None:
    # The bracket may close on a price where one side is empty: the price announced that traded
    # the most is kept instead.
    out = iterative_auction([Request(vid(1), 2, 153, 153)], [Offer(vid(2), 1_280, 74, 76)])
    assert out.price is not None and out.traded_wh == 2 and 76 <= out.price <= 153
    rng = random.Random(7)
    for _ in range(3_000):
        requests = [
            Request(vid(n), rng.randint(1, 3_000), hi := rng.randint(1, 300), rng.randint(0, hi))
            for n in range(rng.randint(1, 4))
        ]
        offers = [
            Offer(vid(50 + n), rng.randint(1, 3_000), lo := rng.randint(0, 300), rng.randint(lo, 320))
            for n in range(rng.randint(1, 4))
        ]
        possible = max(
            min(sum(r.demand(p) for r in requests), sum(o.supply(p) for o in offers)) for p in range(1, 322)
        )
        out = iterative_auction(requests, offers, tolerance_wh=10)
        assert (out.traded_wh > 0) == (possible > 0)
        assert out.price is None or out.price >= 1
