"""Faults against real node processes on 127.0.0.1: bad peers are cut off while the others
keep working; a node killed with SIGKILL in the middle of importing blocks restarts with a
consistent store and catches up. Every process started here is stopped (by PID)."""

from __future__ import annotations

import asyncio
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

from gridnet.bench.ledger import bench_params, make_blocks
from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import ChainParams
from gridnet.market.orders import Order, Side, SignedOrder
from gridnet.net.tcp import MAX_FRAME, dial, frame
from gridnet.node.devnet import LOCAL, DevNode, free_port, stop_all
from gridnet.node.messages import OrderMsg, encode_message
from gridnet.units import interval_of
from tests.helpers import test_params, wait_for
from tests.net.rogue import closes, forged_identity

WAIT_S = 120.0
"""Ceiling for a node to start, link, close a bad link or sync [s]: far above what a busy
machine needs (the tests wait for conditions, never for a fixed time)."""


def new_node(root: Path, name: str, params: ChainParams | None = None, existing: bool = False) -> DevNode:
    node = DevNode(name, root / name, free_port(), free_port())
    if not existing:
        assert params is not None
        Chain.create(node.data_dir, params).close()
    write_key_file(node.data_dir / "node.key", PrivateKey.from_label(f"faults-{name}"))
    return node


async def cut_off(reader: asyncio.StreamReader) -> bool:
    return await closes(reader, WAIT_S)


def bad_order(n: int) -> OrderMsg:
    key = PrivateKey.from_label("faults-trader")
    interval = interval_of(int(time.time() * 1000)) + 2
    order = Order(
        Side.OFFER, key.address, key.public_key, key.address, "north", interval, 500, 9, interval, n
    )
    return OrderMsg(SignedOrder(order, bytes(64)))  # a signature that does not verify


async def misbehave(port: int, chain_id: bytes) -> list[bool]:
    """Six kinds of bad peer, each with its own node key; whether each was cut off."""
    results = []
    # 1. Garbage instead of a hello.
    r, w = await asyncio.open_connection(LOCAL, port)
    w.write(frame(b"\xc1 not a hello"))
    results.append(await cut_off(r))
    # 2. A handshake whose identity is not signed by the key it names.
    key, other = PrivateKey.from_label("rogue-a"), PrivateKey.from_label("rogue-b")
    results.append(await cut_off(await forged_identity(LOCAL, port, chain_id, key, other)))
    # 3. A frame that does not authenticate under the session key.
    r, w, _ = await dial(LOCAL, port, PrivateKey.from_label("rogue-c"), chain_id)
    w.write(frame(b"\x00" * 40))
    results.append(await cut_off(r))
    # 4. A frame announcing more bytes than the limit.
    r, w, _ = await dial(LOCAL, port, PrivateKey.from_label("rogue-d"), chain_id)
    w.write(struct.pack(">I", MAX_FRAME + 1))
    results.append(await cut_off(r))
    # 5. An authentic frame that is not a message.
    r, w, session = await dial(LOCAL, port, PrivateKey.from_label("rogue-e"), chain_id)
    w.write(frame(session.encrypt(b"\xc1 not a message")))
    results.append(await cut_off(r))
    # 6. Well-formed messages carrying invalid signatures, again and again.
    r, w, session = await dial(LOCAL, port, PrivateKey.from_label("rogue-f"), chain_id)
    for n in range(5):
        w.write(frame(session.encrypt(encode_message(bad_order(n)))))
    results.append(await cut_off(r))
    return results


def test_bad_peers_are_cut_off_while_the_others_keep_syncing(tmp_path: Path, nodes: list[DevNode]) -> None:
    params = test_params([], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    miner, follower = new_node(tmp_path, "miner", params), new_node(tmp_path, "follower", params)
    nodes += [miner, follower]
    miner.start("--mine", "--hashes-per-tick", "300")
    follower.start("--peer", f"{LOCAL}:{miner.port}")
    assert wait_for(lambda: (h := follower.head()) is not None and h["peers"] == 1, WAIT_S)
    chain = Chain.open(miner.data_dir, readonly=True)
    chain_id = chain.chain_id
    chain.close()
    cut = asyncio.run(misbehave(miner.port, chain_id))
    assert cut == [True] * 6
    # The honest link still works: the follower keeps up with the miner's new blocks.
    before = miner.stored_height()
    assert wait_for(lambda: follower.stored_height() >= before + 2, WAIT_S)
    # Only the follower is still linked (read with a wait: a busy node may be slow to answer).
    assert wait_for(lambda: (h := miner.head()) is not None and h["peers"] == 1, WAIT_S)
    stop_all(nodes)
    rules = (miner.data_dir / "node.log").read_text()
    for rule in ("SealedBoxError", "FrameTooLarge", "Malformed", "TooManyFaults"):
        assert f": {rule}" in rules, rule


def test_a_node_killed_while_importing_blocks_restarts_consistent_and_catches_up(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    params, keys = bench_params(500, 60)
    make_blocks(tmp_path, params, keys, 60, 500, lambda _m: None)  # 30,000 transfers
    source = new_node(tmp_path, "producer", existing=True)  # the chain make_blocks built
    fresh = new_node(tmp_path, "fresh", params)
    nodes += [source, fresh]
    final = source.stored_height()
    source.start()
    fresh.start("--peer", f"{LOCAL}:{source.port}")
    assert wait_for(lambda: fresh.stored_height() >= 1, WAIT_S)
    assert fresh.process is not None
    fresh.process.send_signal(signal.SIGKILL)
    fresh.process.wait(timeout=10)
    killed_at = fresh.stored_height()
    assert 1 <= killed_at < final, "killed while blocks were still arriving"
    # The store is at its last complete block and passes a full audit, with no repair.
    audit = subprocess.run(
        [sys.executable, "-m", "gridnet", "chain", "verify", "--data-dir", str(fresh.data_dir)],
        capture_output=True,
        text=True,
        timeout=2 * WAIT_S,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    fresh.start("--peer", f"{LOCAL}:{source.port}")
    assert wait_for(lambda: fresh.stored_height() == final, 2 * WAIT_S)
    stop_all(nodes)
    a, b = Chain.open(source.data_dir, readonly=True), Chain.open(fresh.data_dir, readonly=True)
    try:
        assert a.head.hash == b.head.hash
        assert a.values == b.values
    finally:
        a.close()
        b.close()
