"""Transaction gossip in batches: a user's transaction goes out at once, relayed ones in
batches (full ones at once, the rest on the next tick), never back to a peer that has them."""

from __future__ import annotations

from pathlib import Path

from gridnet.ledger.chain import Chain
from gridnet.ledger.transactions import Transaction, tx_id
from gridnet.ledger.txs.transfer import Transfer
from gridnet.node.messages import TxsMsg
from gridnet.node.node import Node, NodeConfig, Outgoing
from tests.helpers import new_chain, sign, test_keys, test_params

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


def test_a_gone_peers_queue_is_dropped(tmp_path: Path) -> None:
    node = node_with_peers(tmp_path)
    node.handle("a", TxsMsg(tuple(transfers(node.chain, 2))), now=0)
    node.remove_peer("c")
    assert set(sent(node.tick(1))) == {"b"}
    assert tx_id(transfers(node.chain, 1)[0]) in node.mempool
