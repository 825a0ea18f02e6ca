"""The transaction index of a real node process over a large chain: the first
``GET /transactions/{txid}`` after a start indexed the whole main chain inside the node's event
loop (~75 ms per MB: a 1 GB chain stalled the node, peers and /health included, for over a
minute). Now it is built in slices between which the node serves everything else, and a
lookup meanwhile is 503 ``IndexBuilding`` with the progress."""

from __future__ import annotations

from pathlib import Path

import msgspec

from gridnet.encoding import encode
from gridnet.ledger.blocks import Block, block_hash, encode_body
from gridnet.ledger.chain import Chain
from gridnet.ledger.merkle import merkle_root
from gridnet.ledger.store import Store
from gridnet.ledger.transactions import Transaction, tx_id
from gridnet.ledger.txs.transfer import Transfer
from gridnet.node.client import NodeClient
from gridnet.node.devnet import DevNode
from tests.functional.test_node_ops import fast_params, new_node
from tests.helpers import test_keys, wait_for

CEILING = 180
"""Seconds any wait may take on a loaded machine."""
BLOCKS, PER_BLOCK = 300, 2_000
"""A chain of 600,000 transactions (~80 MB): seconds to index, whatever the machine."""
ALICE, BOB = test_keys(2)


def stuff_chain(data_dir: Path, blocks: int, per_block: int) -> bytes:
    """Write ``blocks`` blocks of ``per_block`` transfers straight into the store after the
    genesis (what indexing them costs is the point, not their validity: no state changes, so
    the store still loads); the id of the last block's last transaction."""
    chain = Chain.open(data_dir)
    prev = chain.head.header
    chain.close()
    store = Store(data_dir)
    store.begin()
    n = 0
    last = b""
    for height in range(1, blocks + 1):
        txs = []
        for _ in range(per_block):
            n += 1
            txs.append(Transaction(Transfer(BOB.address, 1), ALICE.public_key, n, 0, bytes(64)))
        ids = [tx_id(t) for t in txs]
        header = msgspec.structs.replace(
            prev,
            height=height,
            prev_hash=block_hash(prev),
            tx_root=merkle_root(ids),
            timestamp=prev.timestamp + 1_000,
        )
        h = block_hash(header)
        store.put_block(h, height, encode(header), encode_body(Block(header, tuple(txs))))
        store.connect(h, height, {}, b"", [])
        prev, last = header, ids[-1]
    store.set_meta("head", block_hash(prev))
    store.commit()
    store.close()
    return last


def test_the_node_serves_while_its_transaction_index_is_built(tmp_path: Path, nodes: list[DevNode]) -> None:
    node = new_node(tmp_path, "n", fast_params())
    last = stuff_chain(node.data_dir, BLOCKS, PER_BLOCK).hex()
    nodes.append(node)
    node.start()
    assert wait_for(lambda: node.head() is not None, CEILING)
    client = NodeClient(f"127.0.0.1:{node.api_port}", timeout_s=CEILING)
    status, answer = client.call("GET", f"/transactions/{last}")
    assert status == 503 and answer["code"] == "IndexBuilding", answer
    assert f"of {BLOCKS + 1} blocks indexed" in answer["message"], answer
    # The node answers meanwhile: /health, then a lookup still told the index is being built.
    status, health = client.call("GET", "/health")
    assert status == 200 and health["status"] == "ok", health
    status, answer = client.call("GET", f"/transactions/{last}")
    assert status == 503 and answer["code"] == "IndexBuilding", answer

    def found() -> bool:
        status, answer = client.call("GET", f"/transactions/{last}")
        return status == 200 and answer["block"]["height"] == BLOCKS

    assert wait_for(found, CEILING)
    client.close()
