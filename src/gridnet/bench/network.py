"""Network benchmarks with real node processes on 127.0.0.1.

* ``propagation``: a 4-node devnet where one node mines; every node's API is polled; for
  each block, the time from when the miner shows it to when the last node shows it. The
  median is reported (polling adds up to ``POLL_S`` of error to each figure).
* ``sync``: a chain of ``sync_blocks`` blocks is built, a node serves it, a fresh node
  dials it; blocks per second until the fresh node reaches the head.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from gridnet.bench import ledger
from gridnet.crypto.hashing import header_hash
from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.encoding import encode
from gridnet.ledger.chain import Chain
from gridnet.ledger.genesis import genesis_block
from gridnet.ledger.miner import produce_block
from gridnet.ledger.params import Allocation, default_params
from gridnet.ledger.transactions import min_fee, sign_transaction
from gridnet.ledger.txs.transfer import Transfer
from gridnet.net.tcp import flood
from gridnet.node.devnet import LOCAL, DevNode, free_port, stop_all
from gridnet.units import UNITS_PER_GNC
from gridnet.work import target_from_bits, target_to_bytes

POLL_S = 0.01


def genesis_hash(params: Any) -> bytes:
    return header_hash(encode(genesis_block(params).header))


Progress = Callable[[str], None]


def _params(genesis_age_ms: int, bits: int) -> Any:
    return msgspec.structs.replace(
        default_params(),
        genesis_time=int(time.time() * 1000) - genesis_age_ms,
        initial_target=target_to_bytes(target_from_bits(bits)),
        pow_limit=target_to_bytes(target_from_bits(bits)),
    )


def propagation(root: Path, seconds: float = 20.0) -> dict[str, Any]:
    params = _params(3_600_000, 10)
    nodes = []
    for i in range(4):
        node = DevNode(f"n{i}", root / f"p{i}", free_port(), free_port())
        Chain.create(node.data_dir, params).close()
        write_key_file(node.data_dir / "node.key", PrivateKey.generate())
        nodes.append(node)
    try:
        nodes[0].start("--mine", "--hashes-per-tick", "150")
        for i, node in enumerate(nodes[1:], start=1):
            node.start(*[a for p in nodes[:i] for a in ("--peer", f"{LOCAL}:{p.port}")])
        first_seen: dict[tuple[int, int], float] = {}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for i, node in enumerate(nodes):
                head = node.head()
                if head is not None:
                    first_seen.setdefault((i, int(str(head["height"]))), time.monotonic())
            time.sleep(POLL_S)
    finally:
        stop_all(nodes)
    delays = []
    for (i, height), t0 in first_seen.items():
        if i != 0 or height == 0:
            continue
        others = [first_seen.get((j, height)) for j in range(1, 4)]
        if all(t is not None for t in others):
            delays.append(max(t for t in others if t is not None) - t0)
    return {
        "nodes": 4,
        "blocks": len(delays),
        "median_ms": round(statistics.median(delays) * 1000, 1) if delays else None,
        "p90_ms": round(sorted(delays)[int(0.9 * (len(delays) - 1))] * 1000, 1) if delays else None,
        "poll_ms": POLL_S * 1000,
    }


def sync(root: Path, blocks: int, say: Progress) -> dict[str, Any]:
    params = _params(blocks * 1000 + 3_600_000, 4)
    source = DevNode("source", root / "source", free_port(), free_port())
    fresh = DevNode("fresh", root / "fresh", free_port(), free_port())
    chain = Chain.create(source.data_dir, params)
    miner = PrivateKey.from_label("bench-sync-miner").address
    for n in range(1, blocks + 1):
        ts = params.genesis_time + n * params.block_interval_ms
        block, _ = produce_block(chain, miner, (), now=ts, timestamp=ts)
        chain.add_block(block, now=ts)
        if n % 1000 == 0:
            say(f"built {n}/{blocks} blocks")
    chain.close()
    Chain.create(fresh.data_dir, params).close()
    for node in (source, fresh):
        write_key_file(node.data_dir / "node.key", PrivateKey.generate())
    try:
        source.start()
        fresh.start("--peer", f"{LOCAL}:{source.port}")
        started = time.monotonic()
        height = 0
        while height < blocks and time.monotonic() - started < 600:
            head = fresh.head()
            height = 0 if head is None else int(str(head["height"]))
            time.sleep(0.1)
        seconds = time.monotonic() - started
    finally:
        stop_all([source, fresh])
    return {
        "blocks": blocks,
        "synced": height,
        "seconds": round(seconds, 2),
        "blocks_per_s": round(height / seconds, 1),
    }


def run(
    *, sync_blocks: int = 10_000, gossip_txs: int = 40_000, progress: Progress | None = None
) -> dict[str, Any]:
    say = progress or (lambda _m: None)
    root = Path(tempfile.mkdtemp(prefix="gridnet-bench-net-"))
    try:
        say("block propagation on a 4-node devnet")
        prop = propagation(root)
        say(f"sync of a {sync_blocks}-block chain")
        syn = sync(root, sync_blocks, say)
        say("transaction gossip on a 4-node devnet")
        gos = gossip(root, gossip_txs, say)
        say("single-node ledger rate in the same run (10 blocks of 1,000 transfers)")
        single = round(ledger.import_rate(), 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    gos["single_node_tx_per_s"] = single
    gos["ratio"] = round(gos["tx_per_s"] / single, 3)
    return {"propagation": prop, "sync": syn, "gossip": gos}


def gossip(root: Path, n_tx: int, say: Progress) -> dict[str, Any]:
    """Transactions flooded into one node of a 4-node devnet (mining off, so they stay in the
    mempools): the rate at which all four nodes hold them all."""
    senders = [PrivateKey.from_label(f"bench-gossip-{i}") for i in range(200)]
    funded = tuple(Allocation(k.address, 100 * UNITS_PER_GNC) for k in senders)
    params = msgspec.structs.replace(_params(3_600_000, 10), allocations=funded)
    nodes = [DevNode(f"g{i}", root / f"g{i}", free_port(), free_port()) for i in range(4)]
    for node in nodes:
        Chain.create(node.data_dir, params).close()
        write_key_file(node.data_dir / "node.key", PrivateKey.generate())
    chain_id = genesis_hash(params)
    txs = []
    for nonce in range(n_tx // len(senders)):
        for key in senders:
            payload = Transfer(senders[0].address, 1_000)
            txs.append(
                sign_transaction(
                    key, chain_id, payload, nonce, min_fee(params.min_fee_per_byte, payload, nonce)
                )
            )
    try:
        for i, node in enumerate(nodes):
            node.start(
                "--mempool-max",
                str(2 * n_tx),
                *[a for p in nodes[:i] for a in ("--peer", f"{LOCAL}:{p.port}")],
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all((h := n.head()) and h["peers"] == 3 for n in nodes):
            time.sleep(0.1)
        say(f"flooding {len(txs)} transactions into g0")
        started = time.monotonic()
        sender = threading.Thread(target=asyncio.run, args=(flood(nodes[0].port, chain_id, txs),))
        sender.start()
        reached = 0  # transactions the slowest node holds
        while time.monotonic() - started < 300 and reached < len(txs):
            time.sleep(0.2)  # polling often would take CPU from the nodes
            reached = min(int(h["mempool_size"]) if (h := n.head()) else 0 for n in nodes)  # type: ignore[call-overload]
        seconds = time.monotonic() - started
        sender.join()
    finally:
        stop_all(nodes)
    if reached < len(txs):
        raise RuntimeError(f"gossip: the slowest node holds {reached} of {len(txs)} transactions after 300 s")
    return {
        "nodes": 4,
        "transactions": len(txs),
        "seconds": round(seconds, 2),
        "tx_per_s": round(reached / seconds, 1),
    }
