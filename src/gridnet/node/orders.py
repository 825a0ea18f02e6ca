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
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gridnet.errors import OrderBookFull, OrderTooFarAhead, TooManyOrders
from gridnet.market.orders import SignedOrder, VerifiedOrder, topic
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
