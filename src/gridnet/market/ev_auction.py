"""Vehicle-to-vehicle auctions (seed 003, section 3.2): the review's PETCON runs an *iterative*
double auction at each hotspot; the one-shot double auction of ``market/matching.py`` is the
reference it is compared with, on the same requests.

A charging vehicle's :class:`Request` is the most energy it takes this period and what the
energy is worth to it: its first Wh at ``value_hi`` (what it would otherwise pay the station's
grid supply), its last at ``value_lo``, linearly in between (the further from empty, the less
a kWh is worth). A discharging vehicle's :class:`Offer` is the most it can spare and what
giving it costs: its first Wh at ``cost_lo`` (what recharging at home costs), its last at
``cost_hi`` (deeper discharge wears the battery more). Prices are in base units per kWh. The
hotspot's terms sit between the two sides: a charging vehicle pays the auction's price plus
``buyer_wedge`` (the station's fee less the charging discount), a discharging vehicle gets the
price plus ``seller_gain`` (the parking discount).

:func:`iterative_auction` — the aggregator (the auctioneer) announces a price to every vehicle
in the auction; each answers with the energy it takes or gives at that price (read from its
curve); the aggregator raises the price while demand exceeds supply and lowers it otherwise,
halving the bracket each round, until the two are within ``tolerance_wh`` (that price is final)
or the bracket closes (or ``max_rounds``: the final price is then the one announced that
traded the most). Prices are at least 1. At the final price every vehicle takes or gives what
it answered;
the longer side is scaled down to the shorter, pro rata (largest remainders). A round costs two
messages per vehicle (the price out, the answer back), and the result one more each.

:func:`one_shot_auction` — each vehicle sends one order: all its energy at one price, its curve's
mean (what a vehicle that can name a single price asks on average), and the double auction of
``market/matching.py`` clears them once: one round, an order and a result per vehicle.

Both give :class:`Outcome`: the price, the pairs (charging vehicle, discharging vehicle, Wh; the
charging vehicles by their first Wh's value, highest first, meeting the discharging ones by
their first Wh's cost, lowest first), rounds, messages and the *welfare*: what the energy
bought is worth to its buyers less what giving it cost its sellers, on their true curves
[base units] (the price and the hotspot's fees are transfers between them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from gridnet.market.matching import clear_double_auction
from gridnet.market.orders import Order, Side, VerifiedOrder, compute_order_id
from gridnet.units import WH_PER_KWH, Address, Wh

AREA = "v2v"
"""The market area the one-shot auction's orders name (they never leave this module)."""
NO_KEY = b"\x00" * 32


@dataclass(frozen=True)
class Request:
    """A charging vehicle's: the most it takes and its value of the first and last Wh."""

    vehicle: Address
    want_wh: Wh
    value_hi: int
    value_lo: int

    def demand(self, price: int) -> Wh:
        """What it takes when a kWh costs it ``price``."""
        if price > self.value_hi:
            return 0
        if price <= self.value_lo:
            return self.want_wh
        return self.want_wh * (self.value_hi - price) // (self.value_hi - self.value_lo)

    def value(self, wh: Wh) -> float:
        """What its first ``wh`` are worth to it [base units] (beyond ``want_wh``, nothing more)."""
        wh = min(wh, self.want_wh)
        slope = (self.value_hi - self.value_lo) / self.want_wh
        return (wh * self.value_hi - slope * wh * wh / 2) / WH_PER_KWH


@dataclass(frozen=True)
class Offer:
    """A discharging vehicle's: the most it gives and its cost of the first and last Wh."""

    vehicle: Address
    spare_wh: Wh
    cost_lo: int
    cost_hi: int

    def supply(self, price: int) -> Wh:
        """What it gives when a kWh pays it ``price``."""
        if price < self.cost_lo:
            return 0
        if price >= self.cost_hi:
            return self.spare_wh
        return self.spare_wh * (price - self.cost_lo) // (self.cost_hi - self.cost_lo)

    def cost(self, wh: Wh) -> float:
        """What giving its first ``wh`` costs it [base units]."""
        slope = (self.cost_hi - self.cost_lo) / self.spare_wh
        return (wh * self.cost_lo + slope * wh * wh / 2) / WH_PER_KWH


class Pair(NamedTuple):
    buyer: Address
    seller: Address
    wh: Wh


@dataclass(frozen=True)
class Outcome:
    price: int | None
    """The auction's price [base units/kWh]; None when nothing traded."""
    pairs: tuple[Pair, ...]
    rounds: int
    messages: int
    welfare: float
    """[base units]"""

    @property
    def traded_wh(self) -> Wh:
        return sum(p.wh for p in self.pairs)


def _check(requests: Sequence[Request], offers: Sequence[Offer]) -> None:
    for r in requests:
        if r.want_wh < 1 or not 0 <= r.value_lo <= r.value_hi:
            raise ValueError(f"a request wants at least 1 Wh with 0 <= value_lo <= value_hi: {r}")
    for o in offers:
        if o.spare_wh < 1 or not 0 <= o.cost_lo <= o.cost_hi:
            raise ValueError(f"an offer spares at least 1 Wh with 0 <= cost_lo <= cost_hi: {o}")
    vehicles = [r.vehicle for r in requests] + [o.vehicle for o in offers]
    if len(set(vehicles)) != len(vehicles):
        raise ValueError("a vehicle is in an auction once, charging or discharging")


def _scale(amounts: list[Wh], total: Wh) -> list[Wh]:
    """``amounts`` scaled down to sum to ``total`` (pro rata, largest remainders; ties: first)."""
    whole = sum(amounts)
    if whole <= total:
        return list(amounts)
    scaled = [a * total // whole for a in amounts]
    rest = sorted(range(len(amounts)), key=lambda n: (-(amounts[n] * total % whole), n))
    for n in rest[: total - sum(scaled)]:
        scaled[n] += 1
    return scaled


def _pairs(
    requests: Sequence[Request], bought: list[Wh], offers: Sequence[Offer], sold: list[Wh]
) -> tuple[Pair, ...]:
    """Match what each buyer bought with what each seller sold (equal totals), in merit order."""
    buyers = sorted(range(len(requests)), key=lambda n: (-requests[n].value_hi, requests[n].vehicle))
    sellers = sorted(range(len(offers)), key=lambda n: (offers[n].cost_lo, offers[n].vehicle))
    pairs: list[Pair] = []
    left = {n: sold[n] for n in sellers}
    j = 0
    for b in buyers:
        need = bought[b]
        while need and j < len(sellers):
            s = sellers[j]
            q = min(need, left[s])
            if q:
                pairs.append(Pair(requests[b].vehicle, offers[s].vehicle, q))
                need -= q
                left[s] -= q
            if left[s] == 0:
                j += 1
    return tuple(pairs)


def welfare(requests: Sequence[Request], offers: Sequence[Offer], pairs: Sequence[Pair]) -> float:
    """Buyers' value less sellers' cost of what ``pairs`` trade, on the true curves [base units]."""
    got: dict[Address, Wh] = {}
    gave: dict[Address, Wh] = {}
    for p in pairs:
        got[p.buyer] = got.get(p.buyer, 0) + p.wh
        gave[p.seller] = gave.get(p.seller, 0) + p.wh
    value = sum(r.value(got.get(r.vehicle, 0)) for r in requests)
    cost = sum(o.cost(gave.get(o.vehicle, 0)) for o in offers)
    return value - cost


def iterative_auction(
    requests: Sequence[Request],
    offers: Sequence[Offer],
    *,
    buyer_wedge: int = 0,
    seller_gain: int = 0,
    tolerance_wh: Wh = 0,
    max_rounds: int = 64,
) -> Outcome:
    """PETCON's iterative double auction (rules in the module doc)."""
    _check(requests, offers)
    if not requests or not offers:
        return Outcome(None, (), 0, 0, 0.0)
    n = len(requests) + len(offers)
    lo = max(1, min(o.cost_lo for o in offers) - seller_gain)
    hi = max(r.value_hi for r in requests) - buyer_wedge
    rounds = 0
    price, best = lo, -1  # the price that traded most of those announced
    while rounds < max_rounds and lo <= hi:
        asked = (lo + hi) // 2
        rounds += 1
        demand = sum(r.demand(asked + buyer_wedge) for r in requests)
        supply = sum(o.supply(asked + seller_gain) for o in offers)
        if min(demand, supply) > best:
            price, best = asked, min(demand, supply)
        if abs(demand - supply) <= tolerance_wh and demand and supply:
            price = asked
            break
        if demand > supply:
            lo = asked + 1
        else:
            hi = asked - 1
    bought = [r.demand(price + buyer_wedge) for r in requests]
    sold = [o.supply(price + seller_gain) for o in offers]
    traded = min(sum(bought), sum(sold))
    bought, sold = _scale(bought, traded), _scale(sold, traded)
    pairs = _pairs(requests, bought, offers, sold)
    return Outcome(
        price if pairs else None, pairs, rounds, 2 * n * rounds + n, welfare(requests, offers, pairs)
    )


def one_shot_auction(
    requests: Sequence[Request], offers: Sequence[Offer], *, buyer_wedge: int = 0, seller_gain: int = 0
) -> Outcome:
    """The same requests in one double auction of ``market/matching.py`` (module doc)."""
    _check(requests, offers)
    if not requests or not offers:
        return Outcome(None, (), 0, 0, 0.0)

    def order(side: Side, vehicle: Address, wh: Wh, price: int) -> VerifiedOrder:
        o = Order(side, vehicle, NO_KEY, vehicle, AREA, 0, wh, max(0, price), 0, 0)
        return VerifiedOrder(compute_order_id(o), o)

    bids = [
        order(Side.BID, r.vehicle, r.want_wh, (r.value_hi + r.value_lo) // 2 - buyer_wedge) for r in requests
    ]
    asks = [
        order(Side.OFFER, o.vehicle, o.spare_wh, (o.cost_lo + o.cost_hi) // 2 - seller_gain) for o in offers
    ]
    clearing = clear_double_auction(bids, asks)
    bought = [sum(t.wh for t in clearing.trades if t.buyer == r.vehicle) for r in requests]
    sold = [sum(t.wh for t in clearing.trades if t.seller == o.vehicle) for o in offers]
    pairs = _pairs(requests, bought, offers, sold)
    n = len(requests) + len(offers)
    return Outcome(clearing.price, pairs, 1, 2 * n, welfare(requests, offers, pairs))
