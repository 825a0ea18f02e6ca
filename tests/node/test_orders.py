"""Market orders gossip on their topics between nodes; bad ones fault the peer. A node keeps
an order only from a registered identity for its own meter in the order's area (the chain's
PlaceOrder rules): free keys cannot fill the next auction."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import OrderOwnerInvalid, OrderSignatureInvalid
from gridnet.ledger.chain import Chain
from gridnet.ledger.genesis import chain_id_of
from gridnet.ledger.state import IDENTITIES
from gridnet.ledger.txs.identity import REVOKED, Revocation
from gridnet.market.orders import Order, Side, SignedOrder, sign_order, topic
from gridnet.net.memory import MemoryNetwork
from gridnet.node.messages import HeadersMsg, OrderMsg, StatusMsg, encode_work
from gridnet.node.node import Node, NodeConfig
from gridnet.node.orders import OrderLimits
from gridnet.units import interval_of
from tests.helpers import (
    GENESIS_TIME,
    METER_MAKER,
    add_blocks,
    meter_of,
    new_chain,
    register_traders,
    test_keys,
    test_params,
)

KEY, LATE, OTHER = test_keys(3)
NOW = GENESIS_TIME + 60_000
GRACE = OrderLimits().grace_ms


def order(
    nonce: int = 0, key: PrivateKey = KEY, meter: bytes | None = None, area: str = "north"
) -> SignedOrder:
    interval = interval_of(NOW) + 1
    o = Order(
        Side.OFFER,
        key.address,
        key.public_key,
        meter_of(key) if meter is None else meter,
        area,
        interval,
        500,
        9,
        interval,
        nonce,
    )
    return sign_order(key, o, CHAIN)


PARAMS = test_params([KEY, LATE, OTHER, METER_MAKER])
CHAIN = chain_id_of(PARAMS)
"""The chain of the nodes here."""


def traders_chain(path: Path) -> Chain:
    chain = new_chain(path, PARAMS)
    register_traders(chain, [KEY, OTHER])
    return chain


def test_orders_spread_to_every_node_on_their_topic(tmp_path: Path) -> None:
    net = MemoryNetwork(start_ms=NOW, latency_ms=20, jitter_ms=0)
    blocks = register_traders(new_chain(tmp_path / "src", PARAMS), [KEY])
    for i in range(3):
        chain = new_chain(tmp_path / f"n{i}", PARAMS)
        add_blocks(chain, blocks)
        net.add(Node(f"n{i}", chain))
    net.link("n0", "n1")
    net.link("n1", "n2")
    signed = order()
    net.send("n0", net.nodes["n0"].post_order(signed, NOW))
    net.run_for(1_000)
    name = topic("north", interval_of(NOW) + 1)
    assert all(list(n.book.topic_orders(name).values()) == [signed] for n in net.nodes.values())


def test_a_forged_order_from_a_peer_faults_it(tmp_path: Path) -> None:
    node = Node("n", traders_chain(tmp_path / "n"))
    forged = msgspec.structs.replace(order(), signature=bytes(64))
    assert node.handle("evil", OrderMsg(forged), NOW) == []
    assert node.stats.peer_faults == {"evil": 1}
    with pytest.raises(OrderSignatureInvalid):
        node.post_order(forged, NOW)


def test_free_keys_cannot_fill_the_next_auction(tmp_path: Path) -> None:
    """The red team's attack: 256 fresh keys x 16 orders for the next auction over one peer
    link filled its topic (4,096 orders) and an honest order was refused (OrderBookFull).
    Now every one is refused (UnknownIdentity), none is kept or gossiped, the peer is cut off
    by its faults, and the honest trader's order is taken."""
    node = Node("n", traders_chain(tmp_path / "n"))
    node.add_peer("evil")
    node.add_peer("honest-peer")
    sent = []
    for k in range(256):
        key = PrivateKey.from_label(f"free-key-{k}")
        for n in range(16):
            sent.extend(node.handle("evil", OrderMsg(order(n, key, meter=key.address)), NOW))
    assert sent == [] and len(node.book) == 0
    held = OrderLimits().held_per_peer
    assert len(node.held_orders) == held  # the rest was a fault each, at once
    assert node.stats.peer_faults["evil"] == 256 * 16 - held
    assert node.stats.fault_rules["UnknownIdentity"] == 256 * 16 - held
    with pytest.raises(OrderOwnerInvalid) as refused:
        node.post_order(order(0, PrivateKey.from_label("free-key-0")), NOW)
    assert refused.value.rule == "UnknownIdentity"
    out = node.post_order(order(), NOW)
    assert {m for _, m in out} == {OrderMsg(order())}  # (in the tests, no transport cut "evil" off)
    assert list(node.book.topic_orders(topic("north", interval_of(NOW) + 1)).values()) == [order()]
    node.tick(NOW + GRACE)  # the held ones' grace is over: a fault each
    assert len(node.held_orders) == 0 and node.stats.peer_faults["evil"] == 256 * 16
    assert "honest-peer" not in node.stats.peer_faults


@pytest.mark.parametrize(
    ("signed", "rule"),
    [
        (order(key=LATE), "UnknownIdentity"),  # coin, no identity
        (order(meter=meter_of(OTHER)), "MeterNotOwned"),  # another trader's meter
        (order(meter=KEY.address), "MeterNotOwned"),  # no meter registered
        (order(area="south"), "WrongArea"),
    ],
)
def test_a_peers_order_breaking_an_owner_rule_is_a_fault_after_its_grace(
    tmp_path: Path, signed: SignedOrder, rule: str
) -> None:
    node = Node("n", traders_chain(tmp_path / "n"))
    node.add_peer("p")
    with pytest.raises(OrderOwnerInvalid) as refused:
        node.post_order(signed, NOW)
    assert refused.value.rule == rule
    assert node.handle("p", OrderMsg(signed), NOW) == []
    assert len(node.book) == 0 and len(node.held_orders) == 1  # its head may be newer than ours
    node.tick(NOW + GRACE - 1)
    assert node.stats.peer_faults.get("p", 0) == 0
    assert node.tick(NOW + GRACE) == [] and len(node.book) == 0
    assert node.stats.peer_faults == {"p": 1} and node.stats.fault_rules[rule] == 1


def test_a_peers_order_whose_registration_reaches_us_later_is_taken_without_fault(tmp_path: Path) -> None:
    """The peer's head had the trader's registration; ours gets it within the grace."""
    source = new_chain(tmp_path / "src", PARAMS)
    blocks = register_traders(source, [KEY])
    node = Node("n", new_chain(tmp_path / "n", PARAMS))
    node.add_peer("p")
    node.add_peer("q")
    assert node.handle("p", OrderMsg(order()), NOW) == [] and len(node.held_orders) == 1
    node.tick(NOW + 100)
    add_blocks(node.chain, blocks)
    out = node.tick(NOW + 200)  # a new head: checked again, taken and gossiped
    assert ("q", OrderMsg(order())) in out and order() in node.book.topic_orders(
        topic("north", interval_of(NOW) + 1)
    ).values()
    node.tick(NOW + 2 * GRACE)
    assert node.stats.peer_faults == {} and len(node.held_orders) == 0


def test_a_held_order_waits_two_block_intervals_before_it_is_a_fault(tmp_path: Path) -> None:
    """A peer on the other side of a fork, or whose registration block our reorg took back,
    relays the order in good faith: the next blocks settle which head holds the registration,
    so on a chain of 5-minute blocks it waits 10 minutes, not 10 s (a second reading)."""
    params = test_params([KEY, LATE, OTHER, METER_MAKER], block_interval_ms=300_000)
    node = Node("n", new_chain(tmp_path / "n", params))
    node.add_peer("p")
    o = order().order
    signed = sign_order(KEY, o, node.chain.chain_id)  # (no registration on our head)
    node.handle("p", OrderMsg(signed), NOW)
    node.tick(NOW + GRACE)
    node.tick(NOW + 600_000 - 1)
    assert node.stats.peer_faults == {} and len(node.held_orders) == 1
    node.tick(NOW + 600_000)
    assert node.stats.peer_faults == {"p": 1} and len(node.held_orders) == 0


def test_the_orders_a_peer_left_held_go_with_it(tmp_path: Path) -> None:
    node = Node("n", traders_chain(tmp_path / "n"))
    node.add_peer("p")
    node.handle("p", OrderMsg(order(key=LATE)), NOW)
    assert len(node.held_orders) == 1
    node.remove_peer("p")
    node.tick(NOW + 1)
    node.tick(NOW + GRACE)
    assert len(node.held_orders) == 0 and node.stats.peer_faults == {}


def test_no_fault_from_a_peer_ahead_of_us(tmp_path: Path) -> None:
    node = Node("n", new_chain(tmp_path / "n", PARAMS), NodeConfig(orders=OrderLimits(held_per_peer=2)))
    ahead = Node("p", traders_chain(tmp_path / "p"))  # its head has the trader's registration
    node.add_peer("p")
    ((_, ask),) = node.handle("p", ahead.status(), NOW)
    ((_, headers),) = ahead.handle("n", ask, NOW)
    node.handle("p", headers, NOW)  # its headers back the height it announces (its blocks are late)
    for n in range(5):  # beyond its share held aside: dropped, not a fault (it is ahead)
        node.handle("p", OrderMsg(order(n)), NOW)
    node.tick(NOW + GRACE)
    assert node.stats.peer_faults == {} and len(node.book) == 0 and len(node.held_orders) == 0
    ahead.close()


@pytest.mark.parametrize("work", [0, 2**64], ids=["less work", "more work, no headers"])
def test_a_height_a_peer_announces_but_never_serves_does_not_spare_it_its_faults(
    tmp_path: Path, work: int
) -> None:
    """A peer announcing height 10**15 counted as ahead of us: the orders it relayed were
    never its fault, however many failed. Its height counts only as far as the headers it
    served back it."""
    node = Node("n", new_chain(tmp_path / "n", PARAMS), NodeConfig(orders=OrderLimits(held_per_peer=2)))
    node.add_peer("p")
    node.handle("p", StatusMsg(10**15, b"\x01" * 32, encode_work(work)), NOW)
    node.handle("p", HeadersMsg(()), NOW)  # (asked for its headers when it announced more work)
    for n in range(5):  # two held aside, three a fault at once
        node.handle("p", OrderMsg(order(n)), NOW)
    assert node.stats.peer_faults == {"p": 3} and len(node.held_orders) == 2
    node.tick(NOW + GRACE)
    assert node.stats.peer_faults == {"p": 5} and len(node.held_orders) == 0


def test_a_revoked_identitys_order_is_refused_but_no_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer behind our head may not know of the revocation yet."""
    node = Node("n", traders_chain(tmp_path / "n"))
    node.add_peer("p")
    view = node.chain.view()
    view.put(IDENTITIES, KEY.address, None)  # (as a proven fraud does: revoke_identity)
    view.put(REVOKED, KEY.address, Revocation(revoked_at=node.chain.height))
    monkeypatch.setattr(node.chain, "view", lambda: view)
    with pytest.raises(OrderOwnerInvalid) as refused:
        node.post_order(order(), NOW)
    assert refused.value.rule == "IdentityRevoked"
    assert node.handle("p", OrderMsg(order()), NOW) == []
    node.tick(NOW + GRACE)
    assert node.stats.peer_faults == {} and len(node.book) == 0 and len(node.held_orders) == 0
