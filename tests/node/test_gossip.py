"""Transaction gossip in batches: a user's transaction goes out at once, relayed ones in
batches (full ones at once, the rest on the next tick), never back to a peer that has them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from unittest.mock import ANY

import msgspec
import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import WrongType
from gridnet.ledger.chain import Chain
from gridnet.ledger.genesis import chain_id_of
from gridnet.ledger.mempool import EventKind
from gridnet.ledger.transactions import Transaction, tx_body, tx_id, tx_size
from gridnet.ledger.txs.relay import CreateTokenPool
from gridnet.ledger.txs.transfer import Transfer
from gridnet.market.orders import Order, Side, SignedOrder, order_id, sign_order, topic
from gridnet.net.memory import MemoryNetwork
from gridnet.node.gossip import EarlyTxs
from gridnet.node.messages import (
    MAX_INVENTORY,
    BlockMsg,
    BlocksMsg,
    GetSenderTxsMsg,
    HaveMsg,
    OrderMsg,
    TxRejectedMsg,
    TxsMsg,
    WantMsg,
    decode_message,
    encode_message,
)
from gridnet.node.node import Node, NodeConfig, Outgoing
from gridnet.relay.tokens import HashChain
from gridnet.units import interval_of
from tests.helpers import (
    GENESIS_TIME,
    METER_MAKER,
    extend,
    meter_of,
    new_chain,
    register_traders,
    sign,
    test_keys,
    test_params,
)

KEYS = test_keys(3)


def node_with_peers(tmp_path: Path, batch: int = 4) -> Node:
    node = Node("n", new_chain(tmp_path / "n", test_params(KEYS)), NodeConfig(tx_batch=batch))
    for peer in ("a", "b", "c"):
        node.add_peer(peer)
    return node


def transfers(chain: Chain, n: int) -> list[Transaction]:
    return [sign(chain, KEYS[0], Transfer(KEYS[1].address, 5), nonce) for nonce in range(n)]


def sent(out: list[Outgoing]) -> dict[str, list[Transaction]]:
    by_peer: dict[str, list[Transaction]] = {}
    for peer, msg in out:
        if isinstance(msg, TxsMsg):  # (a tick also sends status messages)
            by_peer.setdefault(peer, []).extend(msg.txs)
    return by_peer


def test_a_users_transaction_goes_to_every_peer_at_once(tmp_path: Path) -> None:
    node = node_with_peers(tmp_path)
    tx = transfers(node.chain, 1)[0]
    _, out = node.submit_tx(tx, now=0)
    assert sent(out) == {"a": [tx], "b": [tx], "c": [tx]}


def test_relayed_transactions_wait_for_the_tick_and_skip_their_source(tmp_path: Path) -> None:
    node = node_with_peers(tmp_path)
    txs = transfers(node.chain, 3)
    assert node.handle("a", TxsMsg(tuple(txs)), now=0) == []  # a partial batch waits
    assert sent(node.tick(1)) == {"b": txs, "c": txs}


def test_a_full_batch_goes_out_without_waiting(tmp_path: Path) -> None:
    node = node_with_peers(tmp_path, batch=4)
    txs = transfers(node.chain, 6)
    assert sent(node.handle("a", TxsMsg(tuple(txs)), now=0)) == {"b": txs[:4], "c": txs[:4]}
    assert sent(node.tick(1)) == {"b": txs[4:], "c": txs[4:]}


def test_a_peer_that_sends_a_queued_transaction_is_not_sent_it_back(tmp_path: Path) -> None:
    node = node_with_peers(tmp_path)
    txs = transfers(node.chain, 2)
    node.handle("a", TxsMsg(tuple(txs)), now=0)
    node.handle("b", TxsMsg((txs[0],)), now=0)  # b has the first one already
    assert sent(node.tick(1)) == {"b": [txs[1]], "c": txs}
    assert node.stats.tx_outcomes["accepted"] == 2
    assert node.stats.tx_outcomes["rejected"] == 0  # a repeat from gossip is not a refusal


def test_a_copy_is_known_by_its_signature_alone(tmp_path: Path) -> None:
    node = node_with_peers(tmp_path)
    tx = transfers(node.chain, 1)[0]
    node.handle("a", TxsMsg((tx,)), now=0)
    # Same signature, another body: a forgery no check would pass. It is taken for the held
    # one (neither read nor held against the peer), and nothing changes.
    forged = msgspec.structs.replace(tx, fee=tx.fee + 1)
    assert node.mempool.copy_of(forged) == tx_id(tx) and node.mempool.copy_of(tx) == tx_id(tx)
    assert node.handle("b", TxsMsg((forged,)), now=0) == []
    assert node.stats.peer_faults == {} and node.stats.tx_outcomes["rejected"] == 0
    assert list(node.mempool.by_id) == [tx_id(tx)]
    assert sent(node.tick(1)) == {"c": [tx]}  # b holds it (as far as this node can tell)
    node.mempool.update_after_block([tx_id(tx)], node.chain.account)  # (it leaves the pool)
    assert node.mempool.copy_of(tx) is None


def test_a_copy_of_a_held_transaction_ahead_of_its_nonce_is_known(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    _, second = transfers(chain, 2)
    richer = sign(chain, KEYS[0], Transfer(KEYS[1].address, 5), 1, fee=second.fee + 1)
    early = EarlyTxs(max_txs=10, max_bytes=10_000, max_per_peer=10)
    early.hold("a", tx_id(second), second, 100)
    assert early.copy_of(second) == tx_id(second)
    assert early.copy_of(richer) is None  # the same nonce, another transaction
    early.take(second.sender, 1)
    assert early.copy_of(second) is None


def test_a_copy_of_one_replaced_earlier_in_the_same_batch_is_read_again(tmp_path: Path) -> None:
    node = node_with_peers(tmp_path)
    held = transfers(node.chain, 1)[0]
    node.handle("a", TxsMsg((held,)), now=0)
    richer = sign(node.chain, KEYS[0], Transfer(KEYS[1].address, 5), 0, fee=3 * held.fee)
    # When b's batch is read, its second transaction is a copy of the held one; by the time
    # it is admitted, the first has replaced it: it is a transaction to try like any other.
    out = node.handle("b", TxsMsg((richer, held)), now=0)
    told = [(p, m.rule) for p, m in out if isinstance(m, TxRejectedMsg)]
    assert told == [("a", "Replaced"), ("b", "ReplacementUnderpriced")]  # (a hears its one left)
    assert list(node.mempool.by_id) == [tx_id(richer)] and node.stats.peer_faults == {}


def test_a_gone_peers_queue_is_dropped(tmp_path: Path) -> None:
    node = node_with_peers(tmp_path)
    node.handle("a", TxsMsg(tuple(transfers(node.chain, 2))), now=0)
    node.remove_peer("c")
    assert set(sent(node.tick(1))) == {"b"}
    assert tx_id(transfers(node.chain, 1)[0]) in node.mempool


TRADER = PrivateKey.from_label("gossip-trader")
"""The owner of the tests' orders: a registered identity with a meter (``trading_chain``)."""


def trading_chain(path: Path, **params: object) -> Chain:
    """A chain of ``KEYS`` where ``TRADER`` has an identity and a meter in "north" (the same
    blocks, whatever the path)."""
    chain = new_chain(path, test_params([*KEYS, TRADER, METER_MAKER], **params))
    register_traders(chain, [TRADER])
    return chain


def fanned_node(tmp_path: Path, peers: int = 12) -> Node:
    node = Node("n", trading_chain(tmp_path / "n"), NodeConfig(tx_batch=1, max_fanout=3))
    for i in range(peers):
        node.add_peer(f"p{i}")
    return node


def announced(out: list[Outgoing]) -> dict[str, HaveMsg]:
    return {peer: msg for peer, msg in out if isinstance(msg, HaveMsg)}


def test_gossip_goes_to_at_most_max_fanout_peers_and_the_others_hear_the_id(tmp_path: Path) -> None:
    node = fanned_node(tmp_path)
    own, relayed = transfers(node.chain, 2)
    own_to = set(sent(node.submit_tx(own, now=0)[1]))
    assert len(own_to) == 3
    relayed_to = set(sent(node.handle("p0", TxsMsg((relayed,)), now=0)))
    assert len(relayed_to) == 3 and "p0" not in relayed_to  # never back to the source
    told = announced(node.tick(1))
    for peer in node.peers:
        ids = told[peer].txids if peer in told else ()
        assert (tx_id(own) in ids) == (peer not in own_to)
        assert (tx_id(relayed) in ids) == (peer not in relayed_to and peer != "p0")
    picks = {frozenset(sent(node.submit_tx(tx, now=2)[1])) for tx in transfers(node.chain, 8)[2:]}
    assert picks == {frozenset(own_to)}  # one sender's transactions take the same links, in order
    orders = [one_order(nonce) for nonce in range(8)]
    order_picks = {frozenset(p for p, _ in node.post_order(o, GENESIS_TIME)) for o in orders}
    assert len(order_picks) > 1  # other items: a fresh random choice each


def test_a_new_block_goes_to_the_fanout_peers_only(tmp_path: Path) -> None:
    node = fanned_node(tmp_path)
    block = extend(trading_chain(tmp_path / "other"))
    out = node.handle("p0", BlockMsg(block), now=block.header.timestamp)
    assert len({p for p, m in out if isinstance(m, BlockMsg)}) == 3
    assert [m for _, m in out if not isinstance(m, BlockMsg)] == []  # the rest learn from others


def one_order(nonce: int = 0) -> SignedOrder:
    interval = interval_of(GENESIS_TIME) + 2
    key = TRADER
    meter = meter_of(key)
    bid = Order(Side.BID, key.address, key.public_key, meter, "north", interval, 5, 9, interval, nonce)
    return sign_order(key, bid, chain_id_of(test_params([*KEYS, TRADER, METER_MAKER])))


def announcer(tmp_path: Path, txs: int = 2) -> tuple[Node, list[Transaction], SignedOrder]:
    """A node that only announces (fan-out 0) to its one peer "n" what it holds."""
    holder = Node("h", trading_chain(tmp_path / "h"), NodeConfig(tx_batch=1, max_fanout=0))
    holder.add_peer("n")
    held = transfers(holder.chain, txs)
    for tx in held:
        holder.submit_tx(tx, now=0)
    signed = one_order()
    holder.post_order(signed, GENESIS_TIME)
    return holder, held, signed


def test_announced_items_are_asked_for_once_and_served(tmp_path: Path) -> None:
    node = fanned_node(tmp_path, peers=2)
    holder, txs, signed = announcer(tmp_path / "h")
    (have,) = announced(holder.tick(1)).values()
    oid = order_id(signed)
    assert have == HaveMsg(tuple(tx_id(t) for t in txs), (oid,))
    assert node.handle("p0", have, now=0) == [("p0", WantMsg(have.txids, (oid,)))]
    assert node.handle("p1", have, now=1) == []  # already asked of p0
    answer = holder.handle("n", WantMsg(have.txids, (oid,)), now=2)
    assert answer == [("n", TxsMsg((txs[0],))), ("n", TxsMsg((txs[1],))), ("n", OrderMsg(signed))]
    assert holder.handle("n", WantMsg(have.txids, (oid,)), now=3) == []  # served once
    for _, msg in answer:
        node.handle("p0", msg, now=GENESIS_TIME)
    assert all(tx_id(t) in node.mempool for t in txs)
    assert node.book.topic_orders(topic("north", signed.order.interval)) == {oid: signed}
    assert node.inventory.asks() == 0
    late = node.config.request_timeout_ms + 10
    assert node.handle("p1", have, now=late) == []  # held now: nothing to ask


def test_items_not_announced_to_a_peer_are_not_served_to_it(tmp_path: Path) -> None:
    holder, txs, signed = announcer(tmp_path)
    asked = WantMsg(tuple(tx_id(t) for t in txs), (order_id(signed),))
    assert holder.handle("n", asked, now=1) == []  # nothing was announced yet
    holder.add_peer("stranger")
    holder.tick(2)
    assert holder.handle("stranger", asked, now=3) == []  # "n" was told, not this one


def test_an_announcer_that_never_answers_is_passed_over(tmp_path: Path) -> None:
    node = fanned_node(tmp_path, peers=2)
    have = HaveMsg((b"\x01" * 32,), (b"\x02" * 32,))
    assert node.handle("p0", have, now=0) == [("p0", WantMsg(have.txids, have.orders))]
    assert node.handle("p1", have, now=1) == []  # remembered as the next to ask
    timeout = node.config.request_timeout_ms
    assert [m for _, m in node.tick(timeout - 1) if isinstance(m, WantMsg)] == []
    wants = [(p, m) for p, m in node.tick(timeout) if isinstance(m, WantMsg)]
    assert wants == [("p1", WantMsg(have.txids, have.orders))]
    node.remove_peer("p1")  # the next one goes away too: given up, until announced again
    assert [m for _, m in node.tick(timeout + 1) if isinstance(m, WantMsg)] == []
    assert node.inventory.asks() == 0


def test_a_peer_flooding_announcements_cannot_crowd_out_the_others(tmp_path: Path) -> None:
    node = Node("n", new_chain(tmp_path / "n", test_params(KEYS)), NodeConfig(max_asks_per_peer=100))
    for peer in ("evil", "honest"):
        node.add_peer(peer)
    junk = tuple(i.to_bytes(32, "big") for i in range(1, MAX_INVENTORY))
    ((_, want),) = node.handle("evil", HaveMsg(junk, ()), now=0)
    assert isinstance(want, WantMsg) and len(want.txids) == 100
    real = HaveMsg((b"\xaa" * 32,), ())
    assert node.handle("honest", real, now=1) == [("honest", WantMsg(real.txids, ()))]


def test_announcements_beyond_the_ask_cap_are_asked_for_later(tmp_path: Path) -> None:
    node = Node("n", trading_chain(tmp_path / "n"), NodeConfig(max_asks_per_peer=2))
    node.add_peer("p0")
    holder, _, _ = announcer(tmp_path / "h", txs=3)
    (have,) = announced(holder.tick(1)).values()
    first = node.handle("p0", HaveMsg(have.txids, ()), now=0)
    assert first == [("p0", WantMsg(have.txids[:2], ()))]
    for _, msg in holder.handle("n", first[0][1], now=1):  # type: ignore[arg-type]
        node.handle("p0", msg, now=1)
    later = [(p, m) for p, m in node.tick(2) if isinstance(m, WantMsg)]
    assert later == [("p0", WantMsg(have.txids[2:], ()))]


def test_what_waits_beyond_the_ask_cap_is_bounded_by_it(tmp_path: Path) -> None:
    """As many as may be asked wait (the rest are forgotten): one peer's announcements cost
    the node at most twice its ask cap."""
    node = Node("n", trading_chain(tmp_path / "n"), NodeConfig(max_asks_per_peer=2))
    node.add_peer("p0")
    holder, _, _ = announcer(tmp_path / "h", txs=7)
    (have,) = announced(holder.tick(1)).values()
    asked: list[bytes] = []
    want = node.handle("p0", HaveMsg(have.txids, ()), now=0)
    for t in range(2, 10):
        for _, msg in want:
            assert isinstance(msg, WantMsg)
            asked.extend(msg.txids)
            for _, answer in holder.handle("n", msg, now=t):
                node.handle("p0", answer, now=t)
        want = [(p, m) for p, m in node.tick(t) if isinstance(m, WantMsg)]
    assert asked == list(have.txids[:4])


def test_a_peer_that_leaves_an_ask_unanswered_is_not_asked_for_its_backlog(tmp_path: Path) -> None:
    """A junk announcer is asked for one cap's worth, and after the timeout for nothing more of
    what it announced (another announcement of it is asked for again)."""
    node = Node("n", new_chain(tmp_path / "n", test_params(KEYS)), NodeConfig(max_asks_per_peer=100))
    node.add_peer("evil")
    junk = tuple(i.to_bytes(32, "big") for i in range(1, 4_000))
    ((_, want),) = node.handle("evil", HaveMsg(junk, ()), now=0)
    assert isinstance(want, WantMsg) and want.txids == junk[:100]
    timeout = node.config.request_timeout_ms
    assert [m for _, m in node.tick(timeout) if isinstance(m, WantMsg)] == []
    assert node.inventory.asks() == 0
    again = node.handle("evil", HaveMsg(junk[150:160], ()), now=timeout + 1)
    assert again == [("evil", WantMsg(junk[150:160], ()))]


def test_a_peer_leaving_walks_no_ask_and_its_asks_move_on(tmp_path: Path) -> None:
    """Asks are found by the peer asked: one that leaves costs its own asks, not a walk of all
    the others' (a peer could otherwise make each disconnect cost every ask held); at the next
    tick its asks go to the next announcer, or are given up."""

    class Walked(dict[bytes, object]):
        walks = 0

        def items(self):  # type: ignore[no-untyped-def, override]
            Walked.walks += 1
            return super().items()

        def values(self):  # type: ignore[no-untyped-def, override]
            Walked.walks += 1
            return super().values()

    node = Node("n", new_chain(tmp_path / "n", test_params(KEYS)), NodeConfig(max_asks_per_peer=100))
    for peer in ("a", "b", "c"):
        node.add_peer(peer)
    ids = [i.to_bytes(32, "big") for i in range(1, 201)]
    node.handle("a", HaveMsg(tuple(ids[:100]), ()), now=0)
    node.handle("b", HaveMsg(tuple(ids[100:]), ()), now=0)
    assert node.handle("c", HaveMsg(tuple(ids[:10]), ()), now=0) == []  # (c is a's next)
    node.inventory._asks = Walked(node.inventory._asks)  # type: ignore[assignment]
    node.remove_peer("b")
    assert Walked.walks == 0
    node.tick(1)
    assert node.inventory.asks() == 100  # b's are given up (nobody else announced them)
    node.remove_peer("a")
    wants = [(p, m) for p, m in node.tick(2) if isinstance(m, WantMsg)]
    assert wants == [("c", WantMsg(tuple(ids[:10]), ()))] and node.inventory.asks() == 10


def test_a_forged_copy_does_not_cancel_the_ask_for_an_order(tmp_path: Path) -> None:
    node = fanned_node(tmp_path, peers=3)
    signed = one_order()
    oid = order_id(signed)
    node.handle("p0", HaveMsg((), (oid,)), now=GENESIS_TIME)
    node.handle("p1", HaveMsg((), (oid,)), now=GENESIS_TIME)
    forged = msgspec.structs.replace(signed, signature=bytes(64))  # same order id, bad signature
    node.handle("p2", OrderMsg(forged), now=GENESIS_TIME)
    assert node.stats.peer_faults == {"p2": 1} and node.inventory.asks() == 1
    late = GENESIS_TIME + node.config.request_timeout_ms
    assert [(p, m) for p, m in node.tick(late) if isinstance(m, WantMsg)] == [("p1", WantMsg((), (oid,)))]


def test_the_hold_is_bounded_per_peer_and_a_huge_transaction_does_not_empty_it(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    txs = transfers(chain, 4)
    early = EarlyTxs(max_txs=10, max_bytes=1_000, max_per_peer=2)
    for tx in txs[:3]:
        early.hold("a", tx_id(tx), tx, 100)
    assert len(early) == 2  # a's share is full
    early.hold("b", tx_id(txs[3]), txs[3], 5_000)  # larger than the whole hold: not held
    assert len(early) == 2 and early.bytes == 200
    assert early.take(txs[0].sender, 0) == ("a", txs[0]) and len(early) == 1


def test_answers_and_relay_batches_stay_within_the_byte_bound(tmp_path: Path) -> None:
    config = NodeConfig(tx_batch=100, tx_batch_bytes=600, max_fanout=0)
    holder = Node("h", new_chain(tmp_path / "h", test_params(KEYS)), config)
    holder.add_peer("n")
    txs = transfers(holder.chain, 12)
    for tx in txs:
        holder.submit_tx(tx, now=0)
    holder.tick(1)
    answer = holder.handle("n", WantMsg(tuple(tx_id(t) for t in txs), ()), now=2)
    size = len(encode(txs[0]))
    assert [t for _, m in answer for t in m.txs] == txs  # type: ignore[attr-defined]
    assert all(len(m.txs) * size <= 600 for _, m in answer)  # type: ignore[attr-defined]
    relay = Node(
        "r", new_chain(tmp_path / "r", test_params(KEYS)), NodeConfig(tx_batch=100, tx_batch_bytes=600)
    )
    relay.add_peer("src")
    relay.add_peer("dst")
    out = relay.handle("src", TxsMsg(tuple(txs)), now=0) + relay.tick(1)
    batches = [m.txs for p, m in out if p == "dst" and isinstance(m, TxsMsg)]
    assert [t for b in batches for t in b] == txs and all(len(b) * size <= 600 for b in batches)


def test_an_inventory_longer_than_the_limit_is_malformed() -> None:
    too_many = HaveMsg(tuple(bytes([i % 256]) * 32 for i in range(MAX_INVENTORY + 1)), ())
    with pytest.raises(WrongType):
        decode_message(encode_message(too_many))


def test_a_transaction_ahead_of_its_nonce_waits_for_the_gap_to_fill(tmp_path: Path) -> None:
    node = node_with_peers(tmp_path)
    first, second, third = transfers(node.chain, 3)
    refusals = node.handle("a", TxsMsg((third, second)), now=0)
    rules = [(p, m.rule) for p, m in refusals if isinstance(m, TxRejectedMsg)]
    assert rules == [("a", "NonceGap"), ("a", "NonceGap")]  # the sender's user hears why ...
    assert len(node.mempool) == 0 and len(node.early) == 2  # ... but they are held
    out = node.handle("b", TxsMsg((first,)), now=1)
    assert [tx_id(t) in node.mempool for t in (first, second, third)] == [True, True, True]
    assert node.stats.tx_outcomes["accepted"] == 3
    assert not [m for _, m in out if isinstance(m, TxRejectedMsg)]  # nobody is told twice


def test_only_a_near_nonce_of_a_sender_that_can_pay_is_held(tmp_path: Path) -> None:
    node = node_with_peers(tmp_path)
    far = sign(node.chain, KEYS[0], Transfer(KEYS[1].address, 5), node.config.max_early_ahead + 1)
    broke = sign(node.chain, PrivateKey.from_label("no coin"), Transfer(KEYS[1].address, 5), 1)
    near = sign(node.chain, KEYS[0], Transfer(KEYS[1].address, 5), 1)
    richer = sign(node.chain, KEYS[0], Transfer(KEYS[1].address, 5), 1, fee=near.fee + 1)
    for tx in (far, broke, near, richer):
        node.handle("a", TxsMsg((tx,)), now=0)
    assert [tx_id(t) in node.early for t in (far, broke, near, richer)] == [False, False, False, True]


def test_a_block_fills_the_gap_of_a_held_transaction(tmp_path: Path) -> None:
    node = node_with_peers(tmp_path)
    first, second = transfers(node.chain, 2)
    node.handle("a", TxsMsg((second,)), now=0)
    other = new_chain(tmp_path / "other", node.chain.params)
    block = extend(other, [first])  # the first was mined without passing through this node
    node.handle("b", BlockMsg(block), now=block.header.timestamp)
    assert node.chain.height == 1 and tx_id(second) in node.mempool and len(node.early) == 0


def fanout_network(tmp_path: Path, miner: int | None) -> MemoryNetwork:
    """Sixteen nodes, all linked, each passing gossip on to only 3 of its 15 peers."""
    net = MemoryNetwork(start_ms=GENESIS_TIME, latency_ms=20, jitter_ms=10, seed=5)
    for i in range(16):
        config = NodeConfig(miner=KEYS[2].address if i == miner else None, hashes_per_tick=300, max_fanout=3)
        net.add(Node(f"n{i}", trading_chain(tmp_path / f"n{i}", block_interval_ms=2_000), config))
    net.link_all()
    return net


def test_transactions_and_orders_with_a_bounded_fanout_reach_every_node(tmp_path: Path) -> None:
    net = fanout_network(tmp_path, miner=None)
    txs = transfers(net.nodes["n5"].chain, 200)  # one sender's burst: gossip reorders it
    for tx in txs:
        net.submit("n5", tx)
    interval = interval_of(GENESIS_TIME) + 2
    order = Order(
        Side.OFFER,
        TRADER.address,
        TRADER.public_key,
        meter_of(TRADER),
        "north",
        interval,
        500,
        9,
        interval,
        0,
    )
    signed = sign_order(TRADER, order, net.nodes["n9"].chain.chain_id)
    net.send("n9", net.nodes["n9"].post_order(signed, GENESIS_TIME))
    net.run_for(2_000)
    for node in net.nodes.values():
        assert all(tx_id(tx) in node.mempool for tx in txs), node.name
        assert list(node.book.topic_orders(topic("north", interval)).values()) == [signed], node.name


def test_blocks_with_a_bounded_fanout_reach_every_node(tmp_path: Path) -> None:
    net = fanout_network(tmp_path, miner=0)
    copies: Counter[str] = Counter()
    send = net.send

    def counting(src: str, out: Iterable[Outgoing]) -> None:
        out = list(out)
        for _, msg in out:
            if isinstance(msg, BlockMsg):
                copies["pushed"] += 1
            elif isinstance(msg, BlocksMsg):
                copies["synced"] += len(msg.blocks)
        send(src, out)

    net.send = counting  # type: ignore[method-assign]
    for tx in transfers(net.nodes["n7"].chain, 5):
        net.submit("n7", tx)
    net.run_for(20_000)
    assert net.settle()
    heads = {n.chain.head.hash for n in net.nodes.values()}
    assert len(heads) == 1 and net.nodes["n0"].stats.blocks_mined >= 3
    assert {n.chain.account(KEYS[1].address).balance for n in net.nodes.values()} == {
        net.nodes["n0"].chain.account(KEYS[1].address).balance
    }
    assert all(len(n.mempool) == 0 for n in net.nodes.values())  # the transfers got mined
    per_block = (copies["pushed"] + copies["synced"]) / net.nodes["n0"].chain.height
    assert per_block <= 16 * 3 * 2  # about nodes x fan-out (plus some synced); a flood: 16 x 14


def test_a_gapped_transaction_asks_its_relayer_for_the_ones_before_it(tmp_path: Path) -> None:
    node = node_with_peers(tmp_path)
    txs = transfers(node.chain, 3)
    out = node.handle("a", TxsMsg((txs[2],)), now=0)
    sender = txs[0].sender
    assert [(p, m) for p, m in out if isinstance(m, GetSenderTxsMsg)] == [("a", GetSenderTxsMsg(sender, 0))]
    assert node.handle("a", TxsMsg((txs[1],)), now=1) == [
        ("a", TxRejectedMsg(tx_id(txs[1]), "NonceGap", ANY))
    ]
    timeout = node.config.request_timeout_ms
    again = [(p, m) for p, m in node.tick(timeout) if isinstance(m, GetSenderTxsMsg)]
    assert again == [("a", GetSenderTxsMsg(sender, 0))]  # no answer came: asked again
    holder = Node(
        "h", new_chain(tmp_path / "h", test_params(KEYS)), NodeConfig(gap_fill=2, gap_fills_per_tick=1)
    )
    for tx in txs:
        holder.submit_tx(tx, now=0)
    answer = holder.handle("n", GetSenderTxsMsg(sender, 0), now=1)
    assert answer == [("n", TxsMsg(tuple(txs[:2])))]  # at most gap_fill, in nonce order
    assert holder.handle("n", GetSenderTxsMsg(sender, 0), now=1) == []  # over this tick's budget
    node.handle("a", answer[0][1], now=2)
    assert all(tx_id(t) in node.mempool for t in txs) and len(node.early) == 0


def test_a_burst_through_a_fanout_of_one_reaches_every_node(tmp_path: Path) -> None:
    """Each node passes each sender's transactions to one peer and tells the others: gossip
    on several paths reorders them, the holds are small, and the gaps are filled."""
    senders = [PrivateKey.from_label(f"burst-{i}") for i in range(50)]
    params = test_params(senders)
    net = MemoryNetwork(start_ms=GENESIS_TIME, latency_ms=20, jitter_ms=10, seed=1)
    for i in range(4):
        config = NodeConfig(max_fanout=1, max_early_per_peer=64)
        net.add(Node(f"n{i}", new_chain(tmp_path / f"n{i}", params), config))
    net.link_all()
    chain = net.nodes["n0"].chain
    txs = [sign(chain, k, Transfer(senders[0].address, 1_000), n) for n in range(40) for k in senders]
    for tx in txs:
        net.submit("n0", tx)
    net.run_for(30_000)
    for node in net.nodes.values():
        assert sum(tx_id(t) in node.mempool for t in txs) == len(txs), node.name


def test_a_gap_is_asked_of_another_peer_when_the_relayer_leaves_and_given_up_when_it_never_fills(
    tmp_path: Path,
) -> None:
    node = node_with_peers(tmp_path)
    txs = transfers(node.chain, 3)
    node.handle("a", TxsMsg((txs[2],)), now=0)
    node.remove_peer("a")
    timeout = node.config.request_timeout_ms
    asks = [(p, m) for p, m in node.tick(timeout) if isinstance(m, GetSenderTxsMsg)]
    assert asks == [("b", GetSenderTxsMsg(txs[0].sender, 0))]  # a is gone: b is asked
    for k in range(2, 6):  # nobody ever fills it: after GAP_TRIES fruitless asks, no more
        node.tick(k * timeout)
    assert [m for _, m in node.tick(7 * timeout) if isinstance(m, GetSenderTxsMsg)] == []


def test_gap_answers_are_bounded_in_bytes_per_tick_and_not_repeated(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "h", test_params(KEYS))
    txs = transfers(chain, 10)
    size = max(tx_size(tx_body(t)) for t in txs)
    holder = Node("h", chain, NodeConfig(gap_fill=32, tx_batch_bytes=3 * size))
    for tx in txs:
        holder.submit_tx(tx, now=0)
    sender = txs[0].sender
    ((_, first),) = holder.handle("n", GetSenderTxsMsg(sender, 0), now=1)
    assert isinstance(first, TxsMsg) and len(first.txs) == 3  # this tick's bytes
    assert holder.handle("n", GetSenderTxsMsg(sender, 5), now=1) == []  # budget spent
    holder.tick(2)
    assert holder.handle("n", GetSenderTxsMsg(sender, 0), now=3) == []  # asked already
    assert holder.handle("n", GetSenderTxsMsg(sender, 5), now=3) != []


def test_the_user_transactions_of_one_instant_go_to_each_peer_as_one_message(tmp_path: Path) -> None:
    """On the in-memory network, the transactions a node takes from its users at one instant
    reach each peer as one message (at most ``tx_batch`` each), in order, before what the node
    sends after them, and at the simulated time they would have one by one."""
    net = MemoryNetwork(start_ms=GENESIS_TIME, latency_ms=20, jitter_ms=0, seed=1)
    for name in ("a", "b"):
        net.add(Node(name, new_chain(tmp_path / name, test_params(KEYS)), NodeConfig(tx_batch=4)))
    net.link_all()
    received: list[tuple[int, str, int]] = []  # (time, message type, transactions)
    b = net.nodes["b"]
    handle = b.handle

    def watched(peer: str, msg: object, now: int) -> list[Outgoing]:
        received.append((now, type(msg).__name__, len(msg.txs) if isinstance(msg, TxsMsg) else 0))
        return handle(peer, msg, now)  # type: ignore[arg-type]

    b.handle = watched  # type: ignore[method-assign]
    txs = transfers(net.nodes["a"].chain, 7)
    for tx in txs[:6]:
        net.submit("a", tx)
    net.send("a", [("b", net.nodes["a"].status())])
    net.submit("a", txs[6])
    net.run_for(20, tick_ms=20)
    at = GENESIS_TIME + 20
    assert received == [(at, "TxsMsg", 4), (at, "TxsMsg", 2), (at, "StatusMsg", 0), (at, "TxsMsg", 1)]
    assert all(tx_id(t) in b.mempool for t in txs)


def test_a_node_that_makes_no_blocks_lets_go_what_no_block_includes_any_more(tmp_path: Path) -> None:
    """A pool that expires at the next height can only be created in that block; the blocks
    that came did not include it. Miners drop it after ``defer_blocks``; a node that mines
    nothing tries its pool on each new head as they do, and drops it (and what its sender
    sent after it) too, instead of holding it for ever."""
    node = node_with_peers(tmp_path)
    chain = node.chain
    assert node.config.miner is None
    hashes = HashChain(b"soon-expired" * 3, 100)
    soon = sign(chain, KEYS[0], CreateTokenPool(hashes.final, hashes.length, 100_000, expiry_height=2), 0)
    after = sign(chain, KEYS[0], Transfer(KEYS[1].address, 5), 1)
    for tx in (soon, after):
        assert node.submit_tx(tx, now=GENESIS_TIME)[0][0].kind is EventKind.ACCEPTED
    source = new_chain(tmp_path / "source", chain.params)
    for _ in range(1 + node.mempool.defer_blocks):
        block = extend(source)  # (empty: the miners did not include it)
        node.handle("a", BlockMsg(block), now=block.header.timestamp)
        assert len(node.mempool) == 2
        node.tick(block.header.timestamp)
    block = extend(source)
    node.handle("a", BlockMsg(block), now=block.header.timestamp)
    node.tick(block.header.timestamp)
    assert len(node.mempool) == 0
    lost = [(e.tx, e.rule) for _, e in node.lost.since(0)]
    assert lost == [(soon, "MalformedTransaction"), (after, "NonceGap")]
