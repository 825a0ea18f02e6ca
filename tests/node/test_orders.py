"""Market orders gossip on their topics between nodes; bad ones fault the peer."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.errors import OrderSignatureInvalid
from gridnet.ledger.genesis import chain_id_of
from gridnet.market.orders import Order, Side, sign_order, topic
from gridnet.net.memory import MemoryNetwork
from gridnet.node.messages import OrderMsg
from gridnet.node.node import Node
from gridnet.units import interval_of
from tests.helpers import GENESIS_TIME, new_chain, test_keys, test_params

KEY = test_keys(1)[0]
NOW = GENESIS_TIME + 60_000
CHAIN = chain_id_of(test_params([KEY]))
"""The chain of the nodes here (``test_params([KEY])``)."""


def order(nonce: int = 0) -> object:
    interval = interval_of(NOW) + 2
    o = Order(
        Side.OFFER, KEY.address, KEY.public_key, KEY.address, "north", interval, 500, 9, interval, nonce
    )
    return sign_order(KEY, o, CHAIN)


def test_orders_spread_to_every_node_on_their_topic(tmp_path: Path) -> None:
    params = test_params([KEY])
    net = MemoryNetwork(start_ms=NOW, latency_ms=20, jitter_ms=0)
    for i in range(3):
        net.add(Node(f"n{i}", new_chain(tmp_path / f"n{i}", params)))
    net.link("n0", "n1")
    net.link("n1", "n2")
    signed = order()
    net.send("n0", net.nodes["n0"].post_order(signed, NOW))
    net.run_for(1_000)
    name = topic("north", interval_of(NOW) + 2)
    assert all(list(n.book.topic_orders(name).values()) == [signed] for n in net.nodes.values())


def test_a_forged_order_from_a_peer_faults_it(tmp_path: Path) -> None:
    node = Node("n", new_chain(tmp_path / "n", test_params([KEY])))
    forged = msgspec.structs.replace(order(), signature=bytes(64))
    assert node.handle("evil", OrderMsg(forged), NOW) == []
    assert node.stats.peer_faults == {"evil": 1}
    with pytest.raises(OrderSignatureInvalid):
        node.post_order(forged, NOW)
