"""Hostile or unlucky inputs to nodes: each is refused by name and nothing gets stuck."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.crypto.ops import OPS, snapshot
from gridnet.encoding import encode
from gridnet.errors import BadMerkleRoot
from gridnet.ledger.blocks import Block, Header
from gridnet.ledger.chain import AddStatus, Chain
from gridnet.ledger.mempool import EventKind
from gridnet.ledger.transactions import Transaction, tx_id
from gridnet.ledger.txs.transfer import Transfer
from gridnet.net.memory import MemoryNetwork
from gridnet.node.messages import BlockMsg, TxsMsg, decode_message, encode_message
from gridnet.node.node import Node
from tests.helpers import extend, new_chain, next_block, sign, store_locked, test_keys, test_params

KEYS = test_keys(3)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Chain, Chain]:
    params = test_params(KEYS)
    return new_chain(tmp_path / "victim", params), new_chain(tmp_path / "source", params)


def test_a_wrong_body_never_condemns_the_real_header(pair: tuple[Chain, Chain]) -> None:
    chain, _ = pair
    real = next_block(chain, [sign(chain, KEYS[0], Transfer(KEYS[1].address, 5), 0)])
    stripped = msgspec.structs.replace(real, txs=real.txs[:1])
    with pytest.raises(BadMerkleRoot):
        chain.add_block(stripped, now=real.header.timestamp)
    assert chain.add_block(real, now=real.header.timestamp).status is AddStatus.EXTENDED


def test_a_side_block_with_a_wrong_body_is_not_stored(pair: tuple[Chain, Chain]) -> None:
    chain, source = pair
    extend(chain, miner=PrivateKey.from_label("victim-miner"))
    b1 = extend(source, [sign(source, KEYS[0], Transfer(KEYS[1].address, 5), 0)], miner=KEYS[2])
    b2 = extend(source, miner=KEYS[2])
    with pytest.raises(BadMerkleRoot):
        chain.add_block(msgspec.structs.replace(b1, txs=b1.txs[:1]), now=b1.header.timestamp)
    assert chain.add_block(b1, now=b1.header.timestamp).status is AddStatus.SIDE
    assert chain.add_block(b2, now=b2.header.timestamp).status is AddStatus.REORG
    assert chain.head.hash == source.head.hash


def test_a_storage_error_leaves_no_phantom_block(
    pair: tuple[Chain, Chain], monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, source = pair
    x1, x2 = extend(source), extend(source)

    def locked(*_args: object, **_kw: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    with monkeypatch.context() as m:
        m.setattr(chain.store, "connect", locked)
        with pytest.raises(sqlite3.OperationalError):
            chain.add_block(x1, now=x1.header.timestamp)
    assert chain.add_block(x1, now=x1.header.timestamp).status is AddStatus.EXTENDED
    assert chain.add_block(x2, now=x2.header.timestamp).status is AddStatus.EXTENDED


def test_junk_orphans_are_not_kept_and_fault_the_peer(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    node = Node("victim", chain)
    tx = Transaction(Transfer(bytes(20), 1), bytes(32), 0, 0, bytes(64))
    for _ in range(5):
        # Unknown parent, no proof-of-work (target zero): costs the sender nothing.
        header = Header(1, 5, os.urandom(32), bytes(32), bytes(32), 0, bytes(32), 0, bytes(20))
        out = node.handle("evil", BlockMsg(Block(header, (tx,) * 3)), now=0)
        assert out == []
    assert len(node.orphans) == 0
    assert node.stats.peer_faults == {"evil": 5}


def test_orphans_are_capped_per_peer(tmp_path: Path) -> None:
    params = test_params(KEYS)
    chain = new_chain(tmp_path / "c", params)
    source = new_chain(tmp_path / "s", params)
    blocks = [extend(source) for _ in range(30)]
    node = Node("victim", chain)
    for b in blocks[1:]:  # every one lacks its parent
        node.handle("peer", BlockMsg(b), now=b.header.timestamp)
    assert len(node.orphans) == node.config.max_orphans_per_peer


def test_malformed_frames_are_counted_not_fatal(tmp_path: Path) -> None:
    params = test_params(KEYS)
    net = MemoryNetwork(start_ms=params.genesis_time, latency_ms=10, jitter_ms=0)
    net.add(Node("a", new_chain(tmp_path / "a", params)))
    net.add(Node("b", new_chain(tmp_path / "b", params)))
    net.link_all()
    for junk in (b"\xc1", encode_message(BlockMsg(next_block(net.nodes["a"].chain)))[:-3], b"\x00" * 10):
        net._queue.append((net.now, 0, "a", "b", junk))
    net.run_for(100)
    assert net.stats.undecodable == 3
    with pytest.raises(Exception) as info:
        decode_message(b"\xc1")
    assert info.value.__class__.__name__ == "Malformed"


def test_local_transaction_outside_wire_ranges_is_rejected(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    node = Node("n", chain)
    evil = sign(chain, KEYS[0], Transfer(KEYS[1].address, -(10**11)), 0, fee=500)
    events, out = node.submit_tx(evil, now=chain.params.genesis_time)
    assert (events[0].kind, events[0].rule) == (EventKind.REJECTED, "WrongType")
    assert out == []


@pytest.mark.parametrize("jitter", [0, 40])
def test_lagging_node_on_a_long_weaker_branch_catches_up_with_few_messages(
    tmp_path: Path, jitter: int
) -> None:
    params = test_params(KEYS)
    a, b = new_chain(tmp_path / "a", params), new_chain(tmp_path / "b", params)
    for _ in range(150):
        extend(a, miner=PrivateKey.from_label("miner-a"))
    for _ in range(100):
        extend(b, miner=PrivateKey.from_label("miner-b"))
    assert a.head.total_work > b.head.total_work
    net = MemoryNetwork(start_ms=a.head.header.timestamp + 1_000, latency_ms=40, jitter_ms=jitter, seed=3)
    net.add(Node("A", a))
    net.add(Node("B", b))
    net.link_all()
    assert net.settle(max_ms=30_000)
    assert b.head.hash == a.head.hash
    assert net.stats.sent < 60  # a handful of batches and statuses, not a request storm


def test_a_restarted_node_keeps_its_pending_transactions(tmp_path: Path) -> None:
    params = test_params(KEYS)
    chain = new_chain(tmp_path / "n", params)
    node = Node("n", chain)
    txs = [sign(chain, KEYS[0], Transfer(KEYS[1].address, 5), nonce) for nonce in range(3)]
    for tx in txs:
        assert node.submit_tx(tx, now=params.genesis_time)[0][0].kind is EventKind.ACCEPTED
    chain.close()
    restarted = Node("n", Chain.open(tmp_path / "n"))
    assert len(restarted.mempool) == 3
    assert [v.tx.nonce for v in restarted.mempool.candidates()] == [0, 1, 2]


def test_transactions_from_peers_reach_the_pending_table_in_one_write_per_tick(tmp_path: Path) -> None:
    params = test_params(KEYS)
    chain = new_chain(tmp_path / "n", params)
    node = Node("n", chain)
    txs = [sign(chain, KEYS[0], Transfer(KEYS[1].address, 5), nonce) for nonce in range(3)]
    for tx in txs:
        node.handle("peer", TxsMsg((tx,)), now=params.genesis_time)
    assert chain.store.pending() == []  # batched, not yet written
    node.tick(params.genesis_time + 1)
    assert len(chain.store.pending()) == 3
    node.handle(
        "peer", TxsMsg((sign(chain, KEYS[0], Transfer(KEYS[1].address, 5), 3),)), now=params.genesis_time
    )
    node.close()  # a graceful stop writes the rest
    restarted = Node("n", Chain.open(tmp_path / "n"))
    assert [v.tx.nonce for v in restarted.mempool.candidates()] == [0, 1, 2, 3]


def test_a_transaction_mined_before_the_batch_is_written_does_not_linger_in_the_pending_table(
    tmp_path: Path,
) -> None:
    params = test_params(KEYS)
    chain = new_chain(tmp_path / "n", params)
    node = Node("n", chain)
    tx = sign(chain, KEYS[0], Transfer(KEYS[1].address, 5), 0)
    node.handle("peer", TxsMsg((tx,)), now=params.genesis_time)
    block = next_block(chain, [tx])
    node.handle("peer", BlockMsg(block), now=block.header.timestamp)
    node.tick(block.header.timestamp + 1)
    assert chain.head.height == block.header.height
    assert chain.store.pending() == []


def test_local_transactions_handed_over_together_are_checked_as_one_batch_and_written_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``submit_txs``: each transaction has the outcome ``submit_tx`` gives it (a forged one is
    refused by name, the others taken in order), each signature is checked once, in the batch
    before admission (admission finds them in the node's cache), and the pending table is
    written in one SQLite transaction."""
    params = test_params(KEYS)
    chain = new_chain(tmp_path / "n", params)
    node = Node("n", chain)
    good = [sign(chain, KEYS[0], Transfer(KEYS[1].address, 5), nonce) for nonce in range(3)]
    honest = sign(chain, KEYS[1], Transfer(KEYS[2].address, 5), 0)
    forged = msgspec.structs.replace(honest, signature=bytes(64))
    commits = []
    real_commit = chain.store.commit
    monkeypatch.setattr(chain.store, "commit", lambda: commits.append(1) or real_commit())
    before = snapshot()
    events, out = node.submit_txs([good[0], forged, *good[1:]], now=params.genesis_time)
    done = OPS.since(before)
    assert [(e[0].kind, e[0].rule) for e in events] == [
        (EventKind.ACCEPTED, ""),
        (EventKind.REJECTED, "BadSignature"),
        (EventKind.ACCEPTED, ""),
        (EventKind.ACCEPTED, ""),
    ]
    assert (done.verifies, done.verifies_cached) == (4 + 1, 3)  # (the forged one is checked again)
    assert len(commits) == 1
    assert [bytes(t) for t, _ in chain.store.pending()] == [tx_id(t) for t in good]
    assert out == []  # (no peers)


def test_local_transactions_the_store_cannot_write_are_not_taken(tmp_path: Path) -> None:
    """A batch whose pending rows cannot be written (another writer holds the database) is
    not taken at all: the users hear the store's error, the pool is as before (a peer's
    transaction held until their nonces are taken is still held, not admitted after nothing),
    and the same batch is taken once the store can be written, the held one after it."""
    params = test_params(KEYS)
    chain = new_chain(tmp_path / "n", params)
    node = Node("n", chain)
    txs = [sign(chain, KEYS[0], Transfer(KEYS[1].address, 5), nonce) for nonce in range(4)]
    node.handle("peer", TxsMsg((txs[3],)), now=params.genesis_time)  # ahead of its nonce: held
    assert len(node.mempool) == 0 and node.early.holds_sender(KEYS[0].public_key)
    txs = txs[:3]
    with store_locked(chain), pytest.raises(sqlite3.OperationalError, match="locked"):
        node.submit_txs(txs, now=params.genesis_time)
    assert len(node.mempool) == 0 and node.stats.txs_accepted == 0  # (the held one still held)
    assert node.early.holds_sender(KEYS[0].public_key)
    events, _ = node.submit_txs(txs, now=params.genesis_time)
    assert [e[0].kind for e in events] == [EventKind.ACCEPTED] * 3
    assert [v.tx.nonce for v in node.mempool.candidates()] == [0, 1, 2, 3]  # the held one follows
    node.tick(params.genesis_time + 1)
    assert len(chain.store.pending()) == 4


def test_a_batch_the_store_cannot_write_puts_back_what_its_replacement_replaced(tmp_path: Path) -> None:
    """A batch with a replacement of a pending transaction followed by others is not taken
    when its write fails, and the replaced one is pending again: withdrawing the replacement
    alone left a missing nonce before the others (the sender's next nonce was refused as
    ``NonceGap``, the next replacement met the missing one building the sender's state
    afresh: ``KeyError``, a 500 or a closed link). The pool, the pending table and the lost
    transactions are as before the batch, and the sender goes on."""
    params = test_params(KEYS)
    chain = new_chain(tmp_path / "n", params)
    node = Node("n", chain)
    node.add_peer("p")
    now = params.genesis_time
    sender = KEYS[0]
    pending = [sign(chain, sender, Transfer(KEYS[1].address, 5), nonce) for nonce in range(3)]
    node.submit_txs(pending, now)
    node.tick(now)
    queue = node.mempool.by_sender[sender.address]
    before = {n: v.txid for n, v in queue.items()}
    dearer = sign(chain, sender, Transfer(KEYS[1].address, 6), 1, fee=3 * pending[1].fee)
    batch = [sign(chain, KEYS[1], Transfer(KEYS[2].address, 5), 0), dearer]
    with store_locked(chain), pytest.raises(sqlite3.OperationalError, match="locked"):
        node.submit_txs(batch, now)
    assert {n: v.txid for n, v in node.mempool.by_sender[sender.address].items()} == before
    assert len(node.mempool) == 3 and node.stats.txs_accepted == 3
    node.tick(now + 1)
    assert node.lost.total == 0  # (nothing was let go)
    assert sorted(bytes(t) for t, _ in chain.store.pending()) == sorted(before.values())
    nxt = sign(chain, sender, Transfer(KEYS[1].address, 5), 3)
    events, out = node.submit_tx(nxt, now)
    assert events[0].kind is EventKind.ACCEPTED and out == [("p", TxsMsg((nxt,)))]
    last = sign(chain, sender, Transfer(KEYS[1].address, 7), 3, fee=3 * nxt.fee)
    events, _ = node.submit_tx(last, now)
    assert [(e.kind, e.rule) for e in events] == [(EventKind.ACCEPTED, ""), (EventKind.EVICTED, "Replaced")]
    admitted, _ = node.submit_txs(batch, now)  # the batch again: taken now
    assert [e[0].kind for e in admitted] == [EventKind.ACCEPTED] * 2
    node.tick(now + 2)
    mined = [tx_id(t) for t in (pending[0], dearer, pending[2], last)]
    assert [v.txid for _, v in sorted(node.mempool.by_sender[sender.address].items())] == mined
    assert sorted(bytes(t) for t, _ in chain.store.pending()) == sorted([*mined, tx_id(batch[0])])
    assert [e.txid for _, e in node.lost.since(0)] == [tx_id(nxt), tx_id(pending[1])]


def test_transactions_a_reorg_returns_to_the_pool_are_written_and_relayed(tmp_path: Path) -> None:
    params = test_params(KEYS)
    chain, other = new_chain(tmp_path / "n", params), new_chain(tmp_path / "o", params)
    node = Node("n", chain)
    node.add_peer("p")
    returned = sign(chain, KEYS[0], Transfer(KEYS[1].address, 5), 0)
    mined = next_block(chain, [returned])
    node.handle("p", BlockMsg(mined), now=mined.header.timestamp)  # the pending table is left empty
    node.tick(mined.header.timestamp + 1)
    branch = [extend(other, miner=KEYS[2]), extend(other, miner=KEYS[2])]
    assert chain.add_block(branch[0], now=branch[0].header.timestamp).status is AddStatus.SIDE
    node.handle(
        "p", BlockMsg(branch[1]), now=branch[1].header.timestamp
    )  # a reorg: `returned` is pending again
    assert chain.head.hash == other.head.hash and tx_id(returned) in node.mempool
    assert chain.store.pending() == [(tx_id(returned), encode(returned))]  # in the reorg's own write
    sent = node.tick(branch[1].header.timestamp + 1)
    assert ("p", TxsMsg((returned,))) in sent
    node.close()
    restarted = Node("n", Chain.open(tmp_path / "n"))
    assert [v.tx for v in restarted.mempool.candidates()] == [returned]
    restarted.close()
    other.close()
