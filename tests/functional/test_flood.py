"""A flood of 10,000 transactions over a real link into a node process with a small
mempool: the node stays responsive and every transaction ends in a block or is reported
back (refused or evicted) with its rule — none disappears.

The node takes the flood without mining, so its 300 places fill up whatever the machine's
speed (a miner draining the pool as fast as a busy machine handles the flood would leave it
never full); then it restarts as a miner with the pool it kept and mines all of it.

The test waits for outcomes, never for a fixed time: it closes its sending side once it has
sent everything and reads until the node closes the link. The node handles a link's frames
in order and closes it only after our end of stream, so by then it has answered for every
transaction it read. (Closing the link instead, with the node's answers unread, resets it:
the node then discards the frames it has not handled yet, and those transactions are neither
mined nor reported. On a busy machine that was most of the flood.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import urllib.request
from pathlib import Path

from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import Allocation
from gridnet.ledger.transactions import Transaction, min_fee, sign_transaction, tx_id
from gridnet.ledger.txs.transfer import Transfer
from gridnet.net.tcp import dial, frame, read_frame
from gridnet.node.devnet import LOCAL, DevNode, free_port, stop_all
from gridnet.node.messages import TxRejectedMsg, TxsMsg, decode_message, encode_message
from gridnet.units import UNITS_PER_GNC
from tests.helpers import test_params, wait_for

SENDERS = [PrivateKey.from_label(f"flood-{i}") for i in range(100)]
PER_SENDER = 100
START_S = 120.0
"""Ceiling for the node process to start answering [s] (a busy machine is slow to start it)."""
ANSWER_S = 60.0
"""Ceiling for one API answer while the node is flooded [s]."""
OUTCOME_S = 180.0
"""Ceiling for the node to handle the whole flood and close the link [s]."""
DRAIN_S = 120.0
"""Ceiling for the miner to include everything the mempool kept [s]."""
POOL = 300
"""The node's mempool capacity [transactions]."""


def get(port: int, path: str, timeout: float = ANSWER_S) -> dict[str, object]:
    with urllib.request.urlopen(f"http://{LOCAL}:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


async def flood(port: int, api: int, chain_id: bytes, txs: list[Transaction]) -> dict[bytes, str]:
    """Speak the link protocol as a peer: send every transaction, one per message; ask the
    API for the head while the node works through them; close our sending side and collect
    every rejection until the node closes the link. Returns txid -> rule reported."""
    reader, writer, session = await dial(LOCAL, port, PrivateKey.from_label("flooder"), chain_id)
    reported: dict[bytes, str] = {}

    async def listen() -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):  # the node closed the link
            while True:
                msg = decode_message(session.decrypt(await read_frame(reader)))
                if isinstance(msg, TxRejectedMsg):
                    reported[msg.txid] = msg.rule

    listener = asyncio.create_task(listen())
    for i, tx in enumerate(txs):
        writer.write(frame(session.encrypt(encode_message(TxsMsg((tx,))))))
        if i % 200 == 0:
            await writer.drain()
    await writer.drain()
    # The node still answers its API while it works through the flood (one event loop
    # serves both; a busy link yields to the others after every message).
    head = await asyncio.to_thread(get, api, "/head")
    assert head["height"] is not None
    writer.write_eof()
    await asyncio.wait_for(listener, OUTCOME_S)
    writer.close()
    return reported


def test_a_flood_against_a_small_mempool_loses_nothing(tmp_path: Path, nodes: list[DevNode]) -> None:
    params = test_params([], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    params = params.__class__(
        **{
            **{f: getattr(params, f) for f in params.__struct_fields__},
            "allocations": tuple(Allocation(k.address, 10 * UNITS_PER_GNC) for k in SENDERS),
        }
    )
    node = DevNode("flood", tmp_path / "node", free_port(), free_port())
    chain = Chain.create(node.data_dir, params)
    chain_id = chain.chain_id
    chain.close()
    write_key_file(node.data_dir / "node.key", PrivateKey.from_label("flood-node"))
    rng = random.Random(5)
    txs = []
    for nonce in range(PER_SENDER):
        for key in SENDERS:
            payload = Transfer(SENDERS[0].address, 1_000)
            fee = min_fee(params.min_fee_per_byte, payload, nonce) + rng.randrange(0, 500)
            txs.append(sign_transaction(key, chain_id, payload, nonce, fee))
    nodes.append(node)
    node.start("--mempool-max", str(POOL))
    assert wait_for(lambda: node.head() is not None, START_S)
    reported = asyncio.run(flood(node.port, node.api_port, chain_id, txs))
    assert get(node.api_port, "/mempool")["size"] == POOL  # full: the rest was refused or evicted
    # The pool survives a restart, and the miner includes all it kept.
    stop_all(nodes)
    node.start("--mine", "--hashes-per-tick", "300", "--mempool-max", str(POOL))
    assert wait_for(lambda: node.head() is not None, START_S)
    assert wait_for(lambda: get(node.api_port, "/mempool")["size"] == 0, DRAIN_S)
    stop_all(nodes)
    chain = Chain.open(node.data_dir, readonly=True)
    try:
        included = {tx_id(t) for h in range(1, chain.height + 1) for t in chain.block_at(h).txs[1:]}  # type: ignore[union-attr]
    finally:
        chain.close()
    sent = [tx_id(t) for t in txs]
    missing = [t for t in sent if t not in included and t not in reported]
    assert not missing, f"{len(missing)} transactions neither mined nor reported"
    assert len(included) == POOL  # what the full pool kept, all mined
    assert any(rule == "MempoolFull" for rule in reported.values())
