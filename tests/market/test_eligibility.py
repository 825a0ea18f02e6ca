"""Double auction with per-buyer eligibility: a buyer never trades with an offer its policy
rejects; with one group it is the single auction; offers are never oversold."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.market.matching import clear_double_auction, clear_with_eligibility
from gridnet.market.orders import Order, VerifiedOrder
from gridnet.market.policy import MeterStanding, Policy
from tests.market.test_matching import TRADERS, bid, books, offer

PROPS = settings(max_examples=100, deadline=None)


def accept_all(_bid: Order) -> object:
    return lambda _offer: True


@PROPS
@given(books())
def test_one_group_is_exactly_the_single_auction(
    book: tuple[list[VerifiedOrder], list[VerifiedOrder]],
) -> None:
    bids, offers = book
    staged = clear_with_eligibility(bids, offers, accept_all)  # type: ignore[arg-type]
    single = clear_double_auction(bids, offers)
    assert staged.trades == single.trades and staged.price == single.price


@PROPS
@given(books(), st.sets(st.integers(0, 3)))
def test_rejected_offers_are_never_traded_and_never_oversold(
    book: tuple[list[VerifiedOrder], list[VerifiedOrder]], picky_traders: set[int]
) -> None:
    """Buyers in ``picky_traders`` reject every offer of trader 1."""
    bids, offers = book
    rejected_owner = TRADERS[1].address
    picky = {TRADERS[t].address for t in picky_traders}

    def eligibility(b: Order) -> object:
        if b.owner in picky:
            return lambda o: o.owner != rejected_owner
        return lambda o: True

    staged = clear_with_eligibility(bids, offers, eligibility)  # type: ignore[arg-type]
    bid_owner = {v.id: v.order.owner for v in bids}
    sold: Counter[bytes] = Counter()
    for t in staged.trades:
        assert not (bid_owner[t.bid_id] in picky and t.seller == rejected_owner)
        sold[t.offer_id] += t.wh
    for v in offers:
        assert sold[v.id] <= v.order.wh


def test_a_flagged_meter_is_avoided_only_by_buyers_who_trust_the_flagger() -> None:
    flagger = TRADERS[3].address
    flagged = offer(10, 100, 1, trader=1)  # the cheapest offer, from a flagged meter
    clean = offer(12, 100, 2, trader=2)
    trusting, sceptic = bid(20, 100, 3, trader=0), bid(20, 100, 4, trader=3)
    standings = {
        flagged.order.meter: MeterStanding(manufacturer=b"m" * 20, flagged_by=frozenset({flagger})),
        clean.order.meter: MeterStanding(manufacturer=b"m" * 20),
    }
    policies = {
        trusting.order.owner: Policy(trusted={"meters": frozenset({flagger})}),
        sceptic.order.owner: Policy(),
    }
    staged = clear_with_eligibility(
        [trusting, sceptic], [flagged, clean], lambda b: policies[b.owner].offer_filter(standings)
    )
    pairs = {(t.bid_id, t.offer_id) for t in staged.trades}
    assert pairs == {(trusting.id, clean.id), (sceptic.id, flagged.id)}
