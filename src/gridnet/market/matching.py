"""Deterministic matching: anyone holding the same orders computes the same trades.

Two mechanisms, both pure functions of a *set* of already verified orders (the order in
which orders arrived never matters, and an order received twice counts once):

* :func:`clear_double_auction` — the uniform-price double auction of one area and delivery
  interval (pay-as-clear). Bids are ranked by price, highest first, offers by price, lowest
  first; equal prices are ranked by order id (the byte order of the digests). The best bid
  and the best offer are matched while the bid's price is at least the offer's price, each
  trade filling the smaller remaining amount, so an order may be split over several trades.
  **A bid and an offer of one owner that meet make no trade**: the owner keeps that energy
  (it is matched, neither traded nor left over), and a contract needs two parties. The result
  for everyone else is what it would be had the owner bid and offered that much less.
  **Clearing price:** the floor of the midpoint of the last traded bid's price and the last
  traded offer's price (a meeting of one owner's orders sets no price: at no cost, its own
  bid and offer just under the best remaining bid would raise what every buyer pays). The
  last traded bid has the lowest price of all traded bids and the last traded offer the
  highest of all traded offers, so the clearing price is never above any traded bid's price
  nor below any traded offer's price. Every trade of the auction is at that one price. When
  matching stops, no remaining bid and remaining offer both accept the clearing price, and
  the matched energy is the most any uniform price could clear. Two identities of one person
  can still trade with each other to set the price, as in any uniform-price auction, at the
  cost of a real trade: a second identity and meter, the fees, and a contract whose deposit
  stays locked until it closes (off chain, its line fees too). With ``PAY_AS_OFFERED`` the
  matching is the same and each trade is at its offer's own price instead (as seed 004's
  auctions pay).
* :func:`buyer_auction` — a buyer-initiated auction (seed 004: n1 asks, n3 and n5 offer, the
  lowest eligible offer wins). The buyer's request is a bid: an amount under a price cap.
  The offers for the same area and interval that the buyer's eligibility predicate accepts
  and that ask no more than the cap are taken cheapest first (ties by order id) until the
  amount is filled. **Each trade is at the offer's own price** (pay-as-offered): the buyer
  asked, and each seller named what it accepts.

Eligibility is a predicate on the offer (``Callable[[Order], bool]``) so that the buyer's
private policy, not the matcher, decides which offers count (see
:meth:`gridnet.market.policy.Policy.is_offer_eligible`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from msgspec.structs import replace

from gridnet.encoding import U63, AddressBytes, HashBytes, Wire
from gridnet.errors import OrderNotInAuction
from gridnet.market.orders import Order, Side, VerifiedOrder
from gridnet.units import Hash32, Interval, UnitsPerKWh, Wh

Eligibility = Callable[[Order], bool]
"""Does a buyer consider this offer at all (trusted meter, not flagged, ...)?"""


class Trade(Wire, frozen=True):
    bid_id: HashBytes
    """Id of the bid (the buyer's order)."""
    offer_id: HashBytes
    """Id of the offer (the seller's order)."""
    buyer: AddressBytes
    """The bid's owner."""
    seller: AddressBytes
    """The offer's owner."""
    seller_meter: AddressBytes
    """The meter the offer sells from."""
    wh: U63
    """Energy traded [Wh]."""
    price: U63
    """Price of this trade [base units / kWh]."""


class Remainder(NamedTuple):
    """What is left of an order after an auction."""

    order_id: Hash32
    wh: Wh
    """Energy not matched [Wh]."""


class Clearing(Wire, frozen=True):
    """Outcome of one double auction."""

    price: U63 | None
    """The uniform clearing price [base units / kWh]; None when nothing traded."""
    trades: tuple[Trade, ...]
    """In matching order (best bid and best offer first); each between two owners."""
    unmatched_bids: tuple[Remainder, ...]
    """Bids or parts of bids left over, best first."""
    unmatched_offers: tuple[Remainder, ...]
    """Offers or parts of offers left over, best first."""

    @property
    def traded_wh(self) -> Wh:
        """Total energy traded [Wh]."""
        return sum(t.wh for t in self.trades)


NO_CLEARING = Clearing(None, (), (), ())


def _misplaced(orders: dict[Hash32, Order], side: Side, area: str, interval: Interval) -> None:
    """Raise when an order is not a ``side`` order of the (``area``, ``interval``) auction."""
    for oid, o in orders.items():
        if o.side != side or o.interval != interval or o.area != area:
            raise OrderNotInAuction(
                f"order {oid.hex()[:16]} ({Side(o.side).name.lower()}, area {o.area!r}, interval "
                f"{o.interval}) given as a {side.name.lower()} of the auction for area {area!r}, "
                f"interval {interval}"
            )


UNIFORM, PAY_AS_OFFERED = 0, 1
"""How the trades of a double auction are priced: all at the clearing price, or each at its
offer's own price (the matching is the same; a buyer never pays above its bid either way)."""


def clear_double_auction(
    bids: Iterable[VerifiedOrder], offers: Iterable[VerifiedOrder], pricing: int = UNIFORM
) -> Clearing:
    """Double auction of one area and interval (rules in the module doc); with
    ``PAY_AS_OFFERED`` each trade is at its offer's price (``Clearing.price`` stays the
    uniform price the same matching gives: the reference for reports).

    All bids must be BID orders and all offers OFFER orders of the same area and delivery
    interval, else :class:`~gridnet.errors.OrderNotInAuction`. Orders are taken as already
    verified (signature, owner, expiry): this function checks none of that.
    """
    # dict(): an order received twice counts once (VerifiedOrder is an (id, order) pair).
    bid_orders: dict[Hash32, Order] = dict(bids)
    offer_orders: dict[Hash32, Order] = dict(offers)
    first = next(iter(bid_orders.values()), None) or next(iter(offer_orders.values()), None)
    if first is None:
        return NO_CLEARING
    area, interval = first.area, first.interval
    if any(o.side != 0 or o.interval != interval or o.area != area for o in bid_orders.values()):
        _misplaced(bid_orders, Side.BID, area, interval)
    if any(o.side != 1 or o.interval != interval or o.area != area for o in offer_orders.values()):
        _misplaced(offer_orders, Side.OFFER, area, interval)

    # Plain tuples in the hot path. Ids are unique, so comparison never goes past them.
    b_rows = [(-o.price, oid, o.wh, o.owner) for oid, o in bid_orders.items()]
    a_rows = [(o.price, oid, o.wh, o.owner, o.meter) for oid, o in offer_orders.items()]
    b_rows.sort()
    a_rows.sort()
    nb, na = len(b_rows), len(a_rows)

    fills: list[tuple[int, int, int]] = []  # (bid index, offer index, Wh) of the trades
    append = fills.append
    i = j = 0
    b_left = b_rows[0][2] if nb else 0
    a_left = a_rows[0][2] if na else 0
    while i < nb and j < na:
        if -b_rows[i][0] < a_rows[j][0]:
            break  # the best bid left no longer meets the best offer left
        q = b_left if b_left < a_left else a_left
        if b_rows[i][3] != a_rows[j][3]:  # (one owner's bid and offer: no trade)
            append((i, j, q))
        b_left -= q
        a_left -= q
        if b_left == 0:
            i += 1
            if i < nb:
                b_left = b_rows[i][2]
        if a_left == 0:
            j += 1
            if j < na:
                a_left = a_rows[j][2]

    unmatched_bids = [Remainder(r[1], r[2]) for r in b_rows[i + 1 :]]
    if i < nb:
        unmatched_bids.insert(0, Remainder(b_rows[i][1], b_left))
    unmatched_offers = [Remainder(r[1], r[2]) for r in a_rows[j + 1 :]]
    if j < na:
        unmatched_offers.insert(0, Remainder(a_rows[j][1], a_left))
    if not fills:
        return Clearing(None, (), tuple(unmatched_bids), tuple(unmatched_offers))

    last_bid, last_offer, _ = fills[-1]
    price: UnitsPerKWh = (-b_rows[last_bid][0] + a_rows[last_offer][0]) // 2
    trades = []
    for bi, ai, q in fills:
        b = b_rows[bi]
        a = a_rows[ai]
        trades.append(Trade(b[1], a[1], b[3], a[3], a[4], q, price if pricing == UNIFORM else a[0]))
    return Clearing(price, tuple(trades), tuple(unmatched_bids), tuple(unmatched_offers))


def clear_auctions(orders: Iterable[VerifiedOrder]) -> dict[tuple[str, Interval], Clearing]:
    """Run :func:`clear_double_auction` for every (area, interval) the orders name; the
    result is ordered by area, then interval."""
    books: dict[tuple[str, Interval], tuple[list[VerifiedOrder], list[VerifiedOrder]]] = {}
    for v in orders:
        o = v.order
        key = (o.area, o.interval)
        book = books.get(key)
        if book is None:
            book = books[key] = ([], [])
        book[o.side].append(v)  # side 0 = bids, 1 = offers
    return {key: clear_double_auction(*books[key]) for key in sorted(books)}


def _any_offer(_offer: Order) -> bool:
    return True


def buyer_auction(
    request: VerifiedOrder, offers: Iterable[VerifiedOrder], eligible: Eligibility = _any_offer
) -> list[Trade]:
    """Fill the buyer's ``request`` (a bid: amount and price cap) from the cheapest offers
    it considers (rules in the module doc); an empty list when none qualifies.

    Offers for another area or interval, bids, offers above the cap, and offers
    ``eligible`` rejects are not considered.
    """
    rid, req = request
    if req.side != Side.BID:
        raise OrderNotInAuction(f"order {rid.hex()[:16]} is an offer; a buyer's request must be a bid")
    candidates = sorted(
        (o.price, oid, o)
        for oid, o in dict(offers).items()
        if o.side == Side.OFFER
        and o.area == req.area
        and o.interval == req.interval
        and o.price <= req.price
        and eligible(o)
    )
    trades: list[Trade] = []
    wanted = req.wh
    for price, oid, o in candidates:
        if wanted == 0:
            break
        q = min(wanted, o.wh)
        trades.append(Trade(rid, oid, req.owner, o.owner, o.meter, q, price))
        wanted -= q
    return trades


class StagedClearing(NamedTuple):
    """Outcome of :func:`clear_with_eligibility`: one clearing per group of buyers."""

    stages: tuple[Clearing, ...]

    @property
    def trades(self) -> tuple[Trade, ...]:
        return tuple(t for stage in self.stages for t in stage.trades)

    @property
    def traded_wh(self) -> Wh:
        return sum(stage.traded_wh for stage in self.stages)

    @property
    def price(self) -> UnitsPerKWh | None:
        """The clearing price of the stage that traded the most energy (first on a tie)."""
        traded = [s for s in self.stages if s.price is not None]
        return max(traded, key=lambda s: s.traded_wh).price if traded else None


def clear_with_eligibility(
    bids: Iterable[VerifiedOrder],
    offers: Iterable[VerifiedOrder],
    eligibility: Callable[[Order], Eligibility],
) -> StagedClearing:
    """A double auction where each buyer's policy decides which offers it accepts.

    Buyers are grouped by the set of offers they accept. Each group, the most restrictive
    first (fewest offers accepted; ties by the smallest bid id), runs
    :func:`clear_double_auction` with its bids and what is left of the offers it accepts;
    what the group buys is taken off those offers before the next group. Every rule of the
    single auction holds within each stage (its own uniform price); a buyer never trades
    with an offer its policy rejects. With one group this is exactly the single auction.
    """
    offer_list = sorted(dict(offers).items())
    groups: dict[frozenset[Hash32], list[VerifiedOrder]] = {}
    for bid in sorted(dict(bids).items()):
        accepts = eligibility(bid[1])
        key = frozenset(oid for oid, o in offer_list if accepts(o))
        groups.setdefault(key, []).append(VerifiedOrder(*bid))
    left = {oid: o.wh for oid, o in offer_list}
    by_id = dict(offer_list)
    stages = []
    for accepted, group in sorted(groups.items(), key=lambda g: (len(g[0]), g[1][0].id)):
        available = [
            VerifiedOrder(oid, replace(by_id[oid], wh=left[oid])) for oid in sorted(accepted) if left[oid] > 0
        ]
        clearing = clear_double_auction(group, available)
        for t in clearing.trades:
            left[t.offer_id] -= t.wh
        stages.append(clearing)
    return StagedClearing(tuple(stages))
