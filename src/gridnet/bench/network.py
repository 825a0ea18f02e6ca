"""Network benchmarks with real node processes on 127.0.0.1.

* ``propagation``: a 4-node devnet where one node mines; every node's API is polled; for
  each block, the time from when the miner shows it to when the last node shows it. The
  median is reported (polling adds up to ``POLL_S`` of error to each figure).
* ``sync``: a chain of ``sync_blocks`` blocks is built, a node serves it, a fresh node
  dials it; blocks per second until the fresh node reaches the head.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.ledger.chain import Chain
from gridnet.ledger.miner import produce_block
from gridnet.ledger.params import default_params
from gridnet.node.devnet import LOCAL, DevNode, free_port, stop_all
from gridnet.work import target_from_bits, target_to_bytes

POLL_S = 0.01
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


def run(*, sync_blocks: int = 10_000, progress: Progress | None = None) -> dict[str, Any]:
    say = progress or (lambda _m: None)
    root = Path(tempfile.mkdtemp(prefix="gridnet-bench-net-"))
    try:
        say("block propagation on a 4-node devnet")
        prop = propagation(root)
        say(f"sync of a {sync_blocks}-block chain")
        syn = sync(root, sync_blocks, say)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"propagation": prop, "sync": syn}
