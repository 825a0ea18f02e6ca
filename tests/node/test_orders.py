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
from gridnet.node.messages import OrderMsg
from gridnet.node.node import Node, NodeConfig
from gridnet.node.orders import OrderLimits
from gridnet.units import interval_of
from tests.helpers import (
    GENESIS_TIME,
    METER_MAKER,
    add_blocks,
    extend,
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
    Now every one is refused (UnknownIdentity), none is kept or gossiped, at most the peer's
    share is held aside (the rest dropped), and the honest trader's order is taken."""
    node = Node("n", traders_chain(tmp_path / "n"))
    node.add_peer("evil")
    node.add_peer("honest-peer")
    sent = []
    for k in range(256):
        key = PrivateKey.from_label(f"free-key-{k}")
        for n in range(16):
            sent.extend(node.handle("evil", OrderMsg(order(n, key, meter=key.address)), NOW))
    assert sent == [] and len(node.book) == 0
    assert len(node.held_orders) == OrderLimits().held_per_peer  # the rest dropped
    with pytest.raises(OrderOwnerInvalid) as refused:
        node.post_order(order(0, PrivateKey.from_label("free-key-0")), NOW)
    assert refused.value.rule == "UnknownIdentity"
    out = node.post_order(order(), NOW)
    assert {m for _, m in out} == {OrderMsg(order())}  # (in the tests, no transport cut "evil" off)
    assert list(node.book.topic_orders(topic("north", interval_of(NOW) + 1)).values()) == [order()]
    node.tick(NOW + GRACE)  # the held ones' grace is over: dropped
    assert len(node.held_orders) == 0 and len(node.book) == 1


@pytest.mark.parametrize(
    ("signed", "rule"),
    [
        (order(key=LATE), "UnknownIdentity"),  # coin, no identity
        (order(meter=meter_of(OTHER)), "MeterNotOwned"),  # another trader's meter
        (order(meter=KEY.address), "MeterNotOwned"),  # no meter registered
        (order(area="south"), "WrongArea"),
    ],
)
def test_a_peers_order_breaking_an_owner_rule_is_held_then_dropped(
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
    assert len(node.held_orders) == 1
    assert node.tick(NOW + GRACE) == [] and len(node.book) == 0 and len(node.held_orders) == 0
    assert node.stats.peer_faults == {}  # (its head may be on another branch: _hold_order)


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


def test_a_held_order_waits_two_block_intervals_for_its_registration(tmp_path: Path) -> None:
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
    assert len(node.held_orders) == 1
    node.tick(NOW + 600_000)
    assert node.stats.peer_faults == {} and len(node.held_orders) == 0


def test_the_orders_a_peer_left_held_go_with_it(tmp_path: Path) -> None:
    node = Node("n", traders_chain(tmp_path / "n"))
    node.add_peer("p")
    node.handle("p", OrderMsg(order(key=LATE)), NOW)
    assert len(node.held_orders) == 1
    node.remove_peer("p")
    node.tick(NOW + 1)
    node.tick(NOW + GRACE)
    assert len(node.held_orders) == 0 and node.stats.peer_faults == {}


@pytest.mark.parametrize("orders", [3, 5], ids=["within its share", "beyond it"])
def test_an_order_checked_on_the_other_side_of_a_fork_is_not_the_relayers_fault(
    tmp_path: Path, orders: int
) -> None:
    """No transaction moves or deregisters a meter, but a fork can hold it elsewhere: the
    relayer's branch registers the trader's meter in the north, ours, heavier, in the south.
    The relayer checked the orders on its head and relayed them in good faith; each was a fault
    (WrongArea) once its grace was over, or at once beyond its share held aside: three cut the
    honest peer off for 60 s."""
    theirs, ours = new_chain(tmp_path / "theirs", PARAMS), new_chain(tmp_path / "ours", PARAMS)
    register_traders(theirs, [KEY], "north")
    register_traders(ours, [KEY], "south")
    extend(ours, miner=PrivateKey.from_label("fork miner"))
    assert ours.head.total_work > theirs.head.total_work
    relayer = Node("relayer", theirs)
    node = Node("n", ours, NodeConfig(orders=OrderLimits(held_per_peer=3)))
    relayer.add_peer("n")
    node.add_peer("relayer")
    node.handle("relayer", relayer.status(), NOW)
    for n in range(orders):
        ((to, relayed),) = relayer.post_order(order(n), NOW)
        assert to == "n" and node.handle("relayer", relayed, NOW) == []
    assert len(node.held_orders) == 3 and node.stats.peer_faults == {}
    node.tick(NOW + GRACE)
    assert len(node.held_orders) == 0 and len(node.book) == 0 and node.stats.peer_faults == {}
    relayer.close()


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
