"""A node's book of market orders (off chain): the signed bids and offers of each topic
(area, delivery interval), bounded so no one can fill it or push honest orders out.

Bounds (``OrderLimits``), each refused by name:
- an order is kept only for a delivery interval within ``window`` intervals from now
  (``OrderTooFarAhead``; a past one is ``OrderExpired`` by the market rules);
- one key holds at most ``per_key`` orders on one topic (``TooManyOrders``);
- one topic holds at most ``per_topic`` orders (``OrderBookFull``);
- the book holds at most ``total`` orders. When full, an order for a nearer delivery
  interval takes the place of one of the farthest topic; an order no nearer than the
  farthest is refused (``OrderBookFull``). Topics whose delivery is over are forgotten.

Nearer delivery wins because that is the market that clears next: orders for far-off
intervals (cheap to make) can never evict an order for the next auction.

Who may hold orders (``check_trader``): before any bound, an order must pass, on the node's
head, the rules the chain's PlaceOrder applies to its owner and meter (the same functions,
so the same names): the owner is a registered identity, not revoked (``UnknownIdentity``,
``IdentityRevoked``), its meter is registered to it (``MeterNotOwned``) in the order's area
(``WrongArea``), each wrapped in ``OrderOwnerInvalid``, and the meter is not vulnerable
(``OrderFromVulnerableMeter``). So the per-key bound is a per-identity bound, and an
identity costs a proof-of-work and a meter a manufacturer's certificate: fresh keys cannot
fill a topic (a red team filled the next auction with 256 free keys' orders).

A peer's order that fails them is held aside (``HeldOrders``), neither kept nor gossiped: the
peer may have a newer head (the registration in a block that has not reached us yet). It is
checked again on each new head, taken if it passes; still failing after ``grace_ms`` (and two
block intervals: ``held_grace_ms``), it is dropped. A peer with ``held_per_peer`` orders held
aside has the next ones dropped. None of this is the peer's fault: on one chain these rules
only turn from failing to passing (a registration is never undone but by a revocation), so an
order failing on our head passed, if anywhere, on another head — a newer one, or one on the
other side of a fork — which an honest peer may have had when it relayed it.
``IdentityRevoked`` and a vulnerable meter are refused, not held (no newer head lets them pass)
and are no fault either: a peer behind our head may not know of the revocation or the
advisory yet.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from gridnet.errors import (
    InvalidTransaction,
    OrderBookFull,
    OrderFromVulnerableMeter,
    OrderOwnerInvalid,
    OrderTooFarAhead,
    TooManyOrders,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.advisory import vulnerable_meter
from gridnet.ledger.txs.auction import require_trader
from gridnet.market.orders import Order, SignedOrder, VerifiedOrder, compute_order_id, topic
from gridnet.units import Hash32, Interval


@dataclass(frozen=True)
class OrderLimits:
    window: int = 96
    """Delivery intervals ahead of now an order may be for (96: a day of 15 minutes)."""
    per_key: int = 16
    """Orders one key may hold on one topic."""
    per_topic: int = 4096
    """Orders one topic may hold."""
    total: int = 65_536
    """Orders the book may hold (about 20 MB)."""
    held_per_peer: int = 64
    """Orders of one peer held aside (their owner failed ``check_trader`` on our head)."""
    grace_ms: int = 10_000
    """How long a peer's order held aside may wait for the head that makes it pass (five
    status intervals: time for the peer's newer blocks to reach us) before it is dropped; at
    least two of the chain's block intervals (``held_grace_ms``), so an order whose
    registration is on the other side of a fork, or in a block we disconnected in a reorg,
    is taken if the next blocks settle the head on that registration."""


def check_trader(state: StateView, params: ChainParams, order: Order) -> None:
    """The chain's PlaceOrder rules on an order's owner and meter, on ``state`` (the node's
    head): ``OrderOwnerInvalid`` wrapping the rule broken (``require_trader``), or
    ``OrderFromVulnerableMeter``."""
    try:
        require_trader(state, order.owner, order.meter, order.area)
    except InvalidTransaction as exc:
        raise OrderOwnerInvalid(exc) from None
    why = vulnerable_meter(state, params, order.meter)
    if why is not None:  # the security layer: left out of the auction
        raise OrderFromVulnerableMeter(f"{why}: its orders are left out of the auction")


@dataclass
class _Topic:
    interval: Interval
    orders: dict[Hash32, SignedOrder]
    per_key: dict[bytes, int]
    """Owner key -> its orders on this topic."""


class OrderBook:
    def __init__(self, limits: OrderLimits | None = None) -> None:
        self.limits = limits or OrderLimits()
        self._topics: dict[str, _Topic] = {}
        self._where: dict[Hash32, str] = {}
        """Order id -> its topic, for every order held."""
        self._by_interval: dict[Interval, dict[str, None]] = {}
        """Delivery interval -> its topics (at most ``window`` + 1 intervals are held)."""
        self._oldest = 0
        """Orders for delivery intervals before this one were forgotten."""

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, oid: Hash32) -> bool:
        return oid in self._where

    def get(self, oid: Hash32) -> SignedOrder | None:
        name = self._where.get(oid)
        return None if name is None else self._topics[name].orders[oid]

    def topic_orders(self, name: str) -> dict[Hash32, SignedOrder]:
        """The orders of a topic, in the order they came (empty for an unknown topic)."""
        found = self._topics.get(name)
        return {} if found is None else found.orders

    def topics(self) -> Iterator[str]:
        return iter(self._topics)

    def add(self, verified: VerifiedOrder, signed: SignedOrder, now_interval: Interval) -> bool:
        """Keep a checked order; False if it was already here. Raises the bound it breaks."""
        if verified.id in self._where:
            return False
        order = signed.order
        limits = self.limits
        if order.interval > now_interval + limits.window:
            raise OrderTooFarAhead(
                f"order {verified.id.hex()[:16]} is for interval {order.interval}, more than "
                f"{limits.window} intervals after now ({now_interval})"
            )
        self._forget_past(now_interval)
        name = topic(order.area, order.interval)
        book = self._topics.get(name)
        if book is not None:
            if book.per_key.get(order.owner_key, 0) >= limits.per_key:
                raise TooManyOrders(
                    f"the key of order {verified.id.hex()[:16]} already has {limits.per_key} orders on {name}"
                )
            if len(book.orders) >= limits.per_topic:
                raise OrderBookFull(f"{name} already holds {limits.per_topic} orders")
        if len(self._where) >= limits.total:
            self._make_room(order.interval, name)
        if book is None:
            book = self._topics[name] = _Topic(order.interval, {}, {})
            self._by_interval.setdefault(order.interval, {})[name] = None
        book.orders[verified.id] = signed
        book.per_key[order.owner_key] = book.per_key.get(order.owner_key, 0) + 1
        self._where[verified.id] = name
        return True

    def _make_room(self, interval: Interval, name: str) -> None:
        """Evict an order of the farthest topic for one for ``interval`` (nearer), or refuse."""
        latest = max(self._by_interval)
        farthest = next(reversed(self._by_interval[latest]))  # (its newest topic)
        victim = self._topics[farthest]
        if victim.interval <= interval:
            raise OrderBookFull(
                f"the book holds {self.limits.total} orders, none for a later delivery than {name}"
            )
        oid, signed = next(reversed(victim.orders.items()))  # its newest
        self._drop(farthest, oid, signed)

    def _drop(self, name: str, oid: Hash32, signed: SignedOrder) -> None:
        book = self._topics[name]
        del book.orders[oid]
        del self._where[oid]
        key = signed.order.owner_key
        book.per_key[key] -= 1
        if not book.per_key[key]:
            del book.per_key[key]
        if not book.orders:
            del self._topics[name]
            topics = self._by_interval[book.interval]
            del topics[name]
            if not topics:
                del self._by_interval[book.interval]

    def _forget_past(self, now_interval: Interval) -> None:
        """Forget topics whose delivery interval is over (their orders can no longer match)."""
        if now_interval <= self._oldest:
            return
        self._oldest = now_interval
        for interval in [i for i in self._by_interval if i < now_interval]:
            for name in self._by_interval.pop(interval):
                for oid in self._topics.pop(name).orders:
                    del self._where[oid]


@dataclass(frozen=True)
class HeldOrder:
    peer: str
    signed: SignedOrder
    since: int
    """When it came [ms]."""


def held_grace_ms(limits: OrderLimits, block_interval_ms: int) -> int:
    """How long a held order waits for a head it passes on: ``grace_ms``, and at least two
    block intervals (a fork or a reorg is settled by the next blocks, not by the next
    status)."""
    return max(limits.grace_ms, 2 * block_interval_ms)


class HeldOrders:
    """Peers' orders whose owner or meter failed ``check_trader`` on this node's head, held
    aside (not kept, not gossiped) until a newer head lets them pass or their grace is over:
    at most ``held_per_peer`` a peer."""

    def __init__(self, limits: OrderLimits) -> None:
        self.limits = limits
        self._held: dict[str, OrderedDict[Hash32, HeldOrder]] = {}

    def __len__(self) -> int:
        return sum(len(h) for h in self._held.values())

    def hold(self, peer: str, signed: SignedOrder, now: int) -> None:
        """Hold ``signed`` from ``peer``, unless the peer has as many held as it may. An order
        already held from the peer keeps its first time."""
        held = self._held.setdefault(peer, OrderedDict())
        oid = compute_order_id(signed.order)
        if oid not in held and len(held) < self.limits.held_per_peer:
            held[oid] = HeldOrder(peer, signed, now)

    def take(self, now: int, every: bool) -> list[HeldOrder]:
        """Take out (oldest first) every held order (``every``: a new head to check them on),
        or those whose grace is over."""
        out: list[HeldOrder] = []
        for peer in list(self._held):
            held = self._held[peer]
            if every:
                out.extend(held.values())
                held.clear()
            else:
                while held and now - next(iter(held.values())).since >= self.limits.grace_ms:
                    out.append(held.popitem(last=False)[1])
            if not held:
                del self._held[peer]
        return out

    def put_back(self, item: HeldOrder) -> None:
        """Hold again an order taken out (its grace not over), with its first time."""
        self._held.setdefault(item.peer, OrderedDict())[compute_order_id(item.signed.order)] = item

    def drop_peer(self, peer: str) -> None:
        self._held.pop(peer, None)
