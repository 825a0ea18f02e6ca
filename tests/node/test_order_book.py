"""The order book's bounds (node/orders.py): a window of delivery intervals, orders per key
and per topic, a total in which nearer deliveries win; each refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import OrderBookFull, OrderTooFarAhead, TooManyOrders
from gridnet.ledger.genesis import chain_id_of
from gridnet.market.orders import Order, Side, SignedOrder, sign_order, topic, validate_order
from gridnet.node.messages import OrderMsg
from gridnet.node.node import Node, NodeConfig
from gridnet.node.orders import OrderBook, OrderLimits
from gridnet.units import interval_of
from tests.helpers import GENESIS_TIME, METER_MAKER, meter_of, new_chain, register_traders, test_params

NOW = GENESIS_TIME + 60_000
NOW_INTERVAL = interval_of(NOW)
CHAIN = chain_id_of(test_params())
"""The chain of the node here (``test_params()``)."""


def make(
    key: PrivateKey, interval: int, nonce: int = 0, area: str = "north", chain: bytes = CHAIN
) -> SignedOrder:
    meter = meter_of(key)
    order = Order(Side.BID, key.address, key.public_key, meter, area, interval, 100, 5, interval, nonce)
    return sign_order(key, order, chain)


def add(book: OrderBook, signed: SignedOrder, now_interval: int = NOW_INTERVAL) -> bool:
    return book.add(validate_order(signed, now_interval=now_interval, chain_id=CHAIN), signed, now_interval)


def keys(n: int) -> list[PrivateKey]:
    return [PrivateKey.from_label(f"order-book-{i}") for i in range(n)]


def test_only_a_window_of_upcoming_deliveries_is_kept() -> None:
    book = OrderBook(OrderLimits(window=4))
    [key] = keys(1)
    assert add(book, make(key, NOW_INTERVAL + 4))
    with pytest.raises(OrderTooFarAhead):
        add(book, make(key, NOW_INTERVAL + 5))
    assert not add(book, make(key, NOW_INTERVAL + 4))  # the same order again: nothing new


def test_one_key_and_one_topic_hold_bounded_orders() -> None:
    book = OrderBook(OrderLimits(per_key=3, per_topic=5))
    a, b, c = keys(3)
    for nonce in range(3):
        add(book, make(a, NOW_INTERVAL + 1, nonce))
    with pytest.raises(TooManyOrders):
        add(book, make(a, NOW_INTERVAL + 1, 3))
    add(book, make(a, NOW_INTERVAL + 2, 3))  # another topic: its own count
    add(book, make(b, NOW_INTERVAL + 1, 0))
    add(book, make(b, NOW_INTERVAL + 1, 1))
    with pytest.raises(OrderBookFull):
        add(book, make(c, NOW_INTERVAL + 1, 0))
    assert len(book.topic_orders(topic("north", NOW_INTERVAL + 1))) == 5


def test_far_off_orders_never_push_out_the_next_auction() -> None:
    book = OrderBook(OrderLimits(total=10, per_key=100))
    next_auction = make(keys(1)[0], NOW_INTERVAL + 1)
    add(book, next_auction)
    flooder = PrivateKey.from_label("flooder")
    for i in range(9):
        add(book, make(flooder, NOW_INTERVAL + 90, i, area=f"fake-{i}"))
    # The book is full: a farther order is refused, a nearer one takes a far one's place ...
    with pytest.raises(OrderBookFull):
        add(book, make(flooder, NOW_INTERVAL + 90, 99, area="fake-x"))
    honest = make(keys(2)[1], NOW_INTERVAL + 2)
    add(book, honest)
    assert len(book) == 10
    assert book.get(validate_order(honest, now_interval=NOW_INTERVAL, chain_id=CHAIN).id) == honest
    # ... and nothing evicts the next auction's order: orders for the same delivery only take
    # the places of later ones, then are refused.
    refused = 0
    for i in range(20):
        try:
            add(book, make(flooder, NOW_INTERVAL + 1, 100 + i, area=f"near-{i}"))
        except OrderBookFull:
            refused += 1
    assert refused == 11 and len(book) == 10
    assert (
        book.get(validate_order(next_auction, now_interval=NOW_INTERVAL, chain_id=CHAIN).id) == next_auction
    )


def test_topics_whose_delivery_is_over_are_forgotten() -> None:
    book = OrderBook()
    [key] = keys(1)
    add(book, make(key, NOW_INTERVAL))
    add(book, make(key, NOW_INTERVAL + 1))
    add(book, make(key, NOW_INTERVAL + 2), now_interval=NOW_INTERVAL + 1)
    assert len(book) == 2 and not book.topic_orders(topic("north", NOW_INTERVAL))


def test_a_peer_is_faulted_for_a_far_off_order_but_not_for_a_full_book(tmp_path: Path) -> None:
    config = NodeConfig(orders=OrderLimits(window=4, per_key=1))
    [key] = keys(1)
    chain = new_chain(tmp_path / "n", test_params([key, METER_MAKER]))
    register_traders(chain, [key])  # (an identity with a meter: the node takes its orders)
    node = Node("n", chain, config)
    here = chain.chain_id
    assert node.handle("p", OrderMsg(make(key, NOW_INTERVAL + 1, chain=here)), NOW) == []  # kept (no peers)
    node.handle(
        "p", OrderMsg(make(key, NOW_INTERVAL + 1, 1, chain=here)), NOW
    )  # over the key's bound: dropped
    assert node.stats.peer_faults.get("p", 0) == 0  # honest peers may have taken another subset
    node.handle("p", OrderMsg(make(key, NOW_INTERVAL + 9, chain=here)), NOW)  # no honest node relays this
    assert node.stats.peer_faults == {"p": 1}
    assert len(node.book) == 1
    node.close()
