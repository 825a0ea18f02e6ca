"""Network benchmarks with real node processes on 127.0.0.1.

* ``propagation``: a 4-node devnet where one node mines; every node's API is polled; for
  each block, the time from when the miner shows it to when the last node shows it. The
  median is reported (polling adds up to ``POLL_S`` of error to each figure).
* ``sync``: a chain of ``sync_blocks`` blocks is built, a node serves it, a fresh node
  dials it; blocks per second until the fresh node reaches the head.
* ``gossip``: signed transfers flooded into one node of a 4-node devnet; the rate at which all
  four hold them all, set against the single-node ledger rate measured in the same run
  (``ratio``), with each node's CPU time and signature checks per transaction. The four nodes
  share this machine's cores and each checks every signature, so two more figures say what
  the ratio can be here: ``machine_ratio``, the transactions all nodes took in per second
  (rate x nodes) over the single node's rate on the same cores (1: a gossiping node costs what
  importing a block costs), and ``ratio_ceiling``, the ratio if the nodes did nothing but
  check signatures (raw verifications on all cores at once / nodes / single-node rate).

``GRIDNET_NODE_PROFILE=cpu`` (``node/process.py``) runs the nodes under cProfile; the gossip's
four data directories, each with its node's ``node.prof`` (``python -m pstats``) and
``node-ops.json``, are then kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from gridnet.bench import ledger
from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.ledger.chain import Chain
from gridnet.ledger.genesis import chain_id_of
from gridnet.ledger.miner import produce_block
from gridnet.ledger.params import Allocation, default_params
from gridnet.ledger.store import DB_NAME, readonly_uri
from gridnet.ledger.transactions import min_fee, sign_transaction
from gridnet.ledger.txs.transfer import Transfer
from gridnet.net.tcp import flood
from gridnet.node.devnet import LOCAL, DevNode, cores_each, free_port, stop_all
from gridnet.node.process import OPS_NAME, PROFILE_ENV, PROFILE_NAME
from gridnet.system import usable_cores
from gridnet.units import UNITS_PER_GNC
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
        node = DevNode(f"n{i}", root / f"p{i}", free_port(), free_port(), check_cores=cores_each(4))
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
        "seconds": round(seconds, 3),
        "blocks_per_s": round(height / seconds, 1),
    }


def run(
    *, sync_blocks: int = 10_000, gossip_txs: int = 40_000, progress: Progress | None = None
) -> dict[str, Any]:
    say = progress or (lambda _m: None)
    root = Path(tempfile.mkdtemp(prefix="gridnet-bench-net-"))
    profiling = os.environ.get(PROFILE_ENV, "") in ("cpu", "wall")
    try:
        say("block propagation on a 4-node devnet")
        prop = propagation(root)
        say(f"sync of a {sync_blocks}-block chain")
        syn = sync(root, sync_blocks, say)
        say("transaction gossip on a 4-node devnet")
        gos = gossip(root, gossip_txs, say)
        say("single-node ledger rate in the same run (10 blocks of 1,000 transfers)")
        single = round(ledger.import_rate(), 1)
        say("raw Ed25519 verification on all cores at once")
        ed_all = ledger.measure_raw_verify_threads(usable_cores())
    finally:
        if profiling:  # (the nodes' statistics are in their data directories)
            say(f"node profiles kept: {root}/g0 ... g3/{PROFILE_NAME}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if profiling:
        gos["profiles"] = str(root)
    gos.update(against_single_node(gos["tx_per_s"], gos["nodes"], single, ed_all))
    return {"propagation": prop, "sync": syn, "gossip": gos}


def against_single_node(tx_per_s: float, nodes: int, single: float, ed_all: float) -> dict[str, float]:
    """The gossip rate ``tx_per_s`` of ``nodes`` nodes on this machine's cores, set against
    the single-node ledger rate ``single`` and the raw verifications per second of all the
    cores at once ``ed_all``, all measured in the same run (see the module's docstring)."""
    return {
        "single_node_tx_per_s": single,
        "ratio": round(tx_per_s / single, 3),
        "node_tx_per_s": round(tx_per_s * nodes, 1),
        "machine_ratio": round(tx_per_s * nodes / single, 3),
        "ed25519_verify_per_s_all_cores": round(ed_all, 1),
        "ratio_ceiling": round(ed_all / nodes / single, 3),
    }


def gossip(root: Path, n_tx: int, say: Progress) -> dict[str, Any]:
    """Transactions flooded into one node of a 4-node devnet (mining off, so they stay in the
    mempools): the rate at which all four nodes hold them all.

    The time is the last admission at any node (each node stamps a transaction's entry in its
    pending table with the time it took it in) from the start of the flood; polling the nodes'
    APIs only tells when to stop (an answer waits behind the node's work, so the polled time,
    also reported, runs late by up to a round of polls). Per node: the CPU time it used during
    the flood, per transaction, and the Ed25519 verifications it did per transaction (libsodium
    and answered by its signature cache; ``GRIDNET_NODE_PROFILE``, ``node/process.py``)."""
    senders = [PrivateKey.from_label(f"bench-gossip-{i}") for i in range(200)]
    funded = tuple(Allocation(k.address, 100 * UNITS_PER_GNC) for k in senders)
    params = msgspec.structs.replace(_params(3_600_000, 10), allocations=funded)
    share = cores_each(4)
    nodes = [DevNode(f"g{i}", root / f"g{i}", free_port(), free_port(), check_cores=share) for i in range(4)]
    for node in nodes:
        Chain.create(node.data_dir, params).close()
        write_key_file(node.data_dir / "node.key", PrivateKey.generate())
    chain_id = chain_id_of(params)
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
        with _node_environment(PROFILE_ENV, "ops"):  # (unless set: then as set, e.g. "cpu")
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
        cpu_before = [_cpu_seconds(n) for n in nodes]
        started_ms = time.time() * 1000
        started = time.monotonic()
        sender = threading.Thread(target=asyncio.run, args=(flood(nodes[0].port, chain_id, txs),))
        sender.start()
        reached = 0  # transactions the slowest node holds
        while time.monotonic() - started < 300 and reached < len(txs):
            time.sleep(GOSSIP_POLL_S)
            reached = min(int(h["mempool_size"]) if (h := n.head()) else 0 for n in nodes)  # type: ignore[call-overload]
        polled = time.monotonic() - started
        cpu = [_cpu_seconds(n) - b for n, b in zip(nodes, cpu_before, strict=True)]
        sender.join()
    finally:
        stop_all(nodes)  # (each writes its pending table and its figures as it stops)
    if reached < len(txs):
        raise RuntimeError(f"gossip: the slowest node holds {reached} of {len(txs)} transactions after 300 s")
    last = [_last_admission_ms(n, len(txs)) for n in nodes]
    seconds = polled if None in last else max(t for t in last if t is not None) / 1000 - started_ms / 1000
    figures = [_node_figures(n) for n in nodes]
    return {
        "nodes": 4,
        "transactions": len(txs),
        "seconds": round(seconds, 3),  # (the nodes' stamps are in milliseconds)
        "seconds_polled": round(polled, 3),
        "tx_per_s": round(len(txs) / seconds, 1),
        "cores": usable_cores(),
        "node_cpu_s": [round(c, 2) for c in cpu],
        "node_cpu_us_per_tx": [round(c / len(txs) * 1e6, 1) for c in cpu],
        "node_verifies_per_tx": [
            None if f is None else round(int(f["verifies"]) / len(txs), 3) for f in figures
        ],
        "node_cached_verifies_per_tx": [
            None if f is None else round(int(f["verifies_cached"]) / len(txs), 3) for f in figures
        ],
    }


GOSSIP_POLL_S = 0.5
"""Between polls of the nodes' transaction counts (each poll takes CPU from the nodes; the
time measured does not depend on it)."""


@contextlib.contextmanager
def _node_environment(name: str, default: str) -> Iterator[None]:
    """Node processes started within inherit ``name`` (``default`` unless it is set)."""
    before = os.environ.get(name)
    os.environ[name] = before or default
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def _last_admission_ms(node: DevNode, expected: int) -> int | None:
    """When the (stopped) node took in the last of its pending transactions [ms since 1970]
    (None unless it holds ``expected`` of them)."""
    try:
        db = sqlite3.connect(readonly_uri(node.data_dir / DB_NAME), uri=True)
        try:
            count, last = db.execute("SELECT COUNT(*), MAX(added) FROM pending").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return int(last) if count == expected and last is not None else None


def _node_figures(node: DevNode) -> dict[str, Any] | None:
    """What the (stopped) node wrote of its crypto operations and CPU time (None: nothing)."""
    try:
        figures: dict[str, Any] = json.loads((node.data_dir / OPS_NAME).read_text())
    except (OSError, ValueError):
        return None
    return figures


def _cpu_seconds(node: DevNode) -> float:
    """CPU time a node process and its children (the processes checking signatures beside it,
    ``crypto/checkers.py``) have used so far [s] (0 where /proc cannot tell)."""
    if node.process is None:
        return 0.0
    pid = node.process.pid
    children: list[str] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += (task / "children").read_text().split()
        except OSError:
            continue
    return sum(_process_cpu_seconds(p) for p in [str(pid), *children])


def _process_cpu_seconds(pid: str) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0
