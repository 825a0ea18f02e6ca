"""Sustained transaction rate of a 4-node devnet: permissioned (1 s slots) against proof of work.

For each chain kind (``poa``, then ``pow``) a 4-node devnet runs on 127.0.0.1 (``Devnet``: its
own processes, every node producing blocks) with ``senders`` funded accounts. Once every node
is linked to the three others, the pre-signed transfers (nonce after nonce, sender after
sender) are flooded into node 0 over one peer link, and each node's SQLite file is read
(read-only, beside the running node) every ``POLL_S`` until every node's main chain holds them
all. ``tx_per_s`` is the transactions over the seconds from the first submission to that
moment; ``blocks`` the blocks node 0's main chain gained meanwhile, ``stale_blocks`` the other
blocks of those heights any node stored (produced, then left on a side branch: on a busy
machine a validator that has not yet received and checked the previous slot's block seals its
own on the same parent). On the permissioned chain the benchmark then waits until the
finalized part of every node's main chain holds them all (``final_tx_per_s``).

``paper`` is the paper's ceiling for the same block size: tau = beta / mu / rho, with beta the
largest block [bytes], mu the mean encoded size of the transactions sent [bytes] and rho the
block interval [s] (the formula of ``bench ledger``).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import NodeFailed
from gridnet.ledger.params import CONSENSUS_POA, Allocation, ChainParams
from gridnet.ledger.store import DB_NAME, readonly_uri
from gridnet.ledger.transactions import Transaction, min_fee, sign_transaction
from gridnet.ledger.txs.transfer import Transfer
from gridnet.net.tcp import flood
from gridnet.node.config import NodeSettings
from gridnet.node.devnet import Devnet, DevNode
from gridnet.units import UNITS_PER_GNC

Progress = Callable[[str], None]

NODES = 4
POLL_S = 0.25
"""How often the nodes' files are read (often would take CPU from the nodes)."""
PROGRESS_S = 2.0
LINK_TIMEOUT_S = 60.0
POW_HASHES_PER_TICK = 200
"""Proof-of-work attempts per node every 100 ms (``Devnet``'s default)."""
MAX_PER_SENDER = 4096
"""Pending transactions a mempool holds per sender (``Mempool.max_per_sender``)."""
MEMPOOL_MAX = NodeSettings.mempool_max_txs
"""A node's default mempool capacity [transactions]: the devnet nodes run with it."""
KINDS = ("poa", "pow")


def check_sizes(*, transactions: int, senders: int) -> None:
    """Raise ValueError when the load cannot fit the nodes' mempools."""
    if transactions < 1 or senders < 1:
        raise ValueError("--transactions and --senders must be at least 1")
    if transactions > MEMPOOL_MAX:
        raise ValueError(f"--transactions must be at most {MEMPOOL_MAX} (a node's mempool capacity)")
    if -(-transactions // senders) > MAX_PER_SENDER:
        raise ValueError(
            f"at most {MAX_PER_SENDER} transactions per sender: "
            f"use at least {-(-transactions // MAX_PER_SENDER)} senders"
        )


def sender_keys(senders: int) -> list[PrivateKey]:
    return [PrivateKey.from_label(f"bench-consensus-{i}") for i in range(senders)]


def sign_load(
    params: ChainParams, chain_id: bytes, keys: list[PrivateKey], transactions: int
) -> list[Transaction]:
    """``transactions`` transfers of 1,000 base units, key after key, nonce after nonce."""
    to = PrivateKey.from_label("bench-consensus-sink").address
    payload = Transfer(to, 1_000)
    txs = []
    for i in range(transactions):
        nonce = i // len(keys)
        fee = min_fee(params.min_fee_per_byte, payload, nonce)
        txs.append(sign_transaction(keys[i % len(keys)], chain_id, payload, nonce, fee))
    return txs


class _Reader:
    """A node's main chain read from its SQLite file (read-only, beside the running node)."""

    def __init__(self, node: DevNode) -> None:
        self.db = sqlite3.connect(readonly_uri(node.data_dir / DB_NAME), uri=True, isolation_level=None)

    def totals(self) -> tuple[int, int]:
        """(height, signed transactions) of the main chain."""
        height, txs = self.db.execute("SELECT MAX(height), COALESCE(SUM(txs), 0) FROM main").fetchone()
        return int(height), int(txs)

    def counts(self, above: int, upto: int) -> list[tuple[int, int]]:
        """(height, transactions) of the main blocks above ``above`` up to ``upto``."""
        rows = self.db.execute(
            "SELECT height, txs FROM main WHERE height > ? AND height <= ? ORDER BY height", (above, upto)
        ).fetchall()
        return [(int(h), int(t)) for h, t in rows]

    def hashes(self, above: int, upto: int, table: str) -> set[bytes]:
        """Hashes of the blocks above ``above`` up to ``upto`` in ``table``: "main", or
        "blocks" (every block the node stored, side branches too)."""
        assert table in ("main", "blocks")
        rows = self.db.execute(
            f"SELECT hash FROM {table} WHERE height > ? AND height <= ?", (above, upto)
        ).fetchall()
        return {bytes(r[0]) for r in rows}

    def txs_upto(self, height: int) -> int:
        """Signed transactions in the main blocks up to ``height``."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(txs), 0) FROM main WHERE height <= ?", (height,)
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self.db.close()


def _check_alive(net: Devnet) -> None:
    for node in net.nodes:
        if node.process is not None and node.process.poll() is not None:
            raise NodeFailed(f"{node.name} exited (see {node.data_dir / 'node.log'} and console.log)")


def _wait_linked(net: Devnet) -> None:
    deadline = time.monotonic() + LINK_TIMEOUT_S
    while True:
        _check_alive(net)
        heads = [n.head() for n in net.nodes]
        if all(h is not None and h["peers"] == NODES - 1 for h in heads):
            return
        if time.monotonic() > deadline:
            peers = [None if h is None else h["peers"] for h in heads]
            raise NodeFailed(f"the devnet did not link within {LINK_TIMEOUT_S:.0f} s (peers: {peers})")
        time.sleep(0.2)


def _finalized(node: DevNode) -> int:
    head = node.head()
    value = None if head is None else head.get("finalized_height")
    return -1 if value is None else int(str(value))


def measure(
    root: Path, kind: str, *, transactions: int, senders: int, seconds: float, say: Progress
) -> tuple[dict[str, Any], list[Transaction], ChainParams]:
    """One devnet of ``kind`` ("poa" or "pow"): its figures, the transactions it was sent
    and its genesis."""
    keys = sender_keys(senders)
    funded = tuple(Allocation(k.address, 1_000 * UNITS_PER_GNC) for k in keys)
    if kind == "poa":
        net = Devnet(root, NODES, consensus="poa", allocations=funded)
    else:
        net = Devnet(root, NODES, hashes_per_tick=POW_HASHES_PER_TICK, allocations=funded)
    say(f"{kind}: signing {transactions} transfers from {senders} senders")
    txs = sign_load(net.params, net.chain_id, keys, transactions)
    readers: list[_Reader] = []
    sender: threading.Thread | None = None
    flood_error: list[BaseException] = []
    submitted_at: list[float] = []

    def send() -> None:
        try:
            asyncio.run(flood(net.nodes[0].port, net.chain_id, txs))
            submitted_at.append(time.monotonic())
        except BaseException as exc:  # reported by the main thread
            flood_error.append(exc)

    try:
        say(f"{kind}: starting {NODES} nodes")
        net.start()
        _wait_linked(net)
        readers = [_Reader(n) for n in net.nodes]
        start_height, _ = readers[0].totals()
        base = [r.totals()[1] for r in readers]
        say(f"{kind}: flooding {len(txs)} transactions into n0 (height {start_height})")
        started = time.monotonic()
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        deadline = started + seconds
        included = 0  # transactions the slowest node's main chain holds
        said = started
        while True:
            time.sleep(POLL_S)
            now = time.monotonic()
            totals = [r.totals() for r in readers]
            included = min(t[1] - b for t, b in zip(totals, base, strict=True))
            if included >= len(txs) or now > deadline:
                break
            if flood_error:
                raise RuntimeError(f"{kind}: flooding n0 failed: {flood_error[0]!r}")
            _check_alive(net)
            if now - said >= PROGRESS_S:
                said = now
                say(f"{kind}: {included}/{len(txs)} included on every node, height {totals[0][0]}")
        elapsed = now - started
        end_height = totals[0][0]
        rows = readers[0].counts(start_height, end_height)
        stored = set().union(*(r.hashes(start_height, end_height, "blocks") for r in readers))
        stale = len(stored - readers[0].hashes(start_height, end_height, "main"))
        complete = included >= len(txs)
        figures: dict[str, Any] = {
            "consensus": kind,
            "nodes": NODES,
            "transactions": len(txs),
            "included": included,
            "complete": complete,
            "seconds": round(elapsed, 3),
            "submit_seconds": round(submitted_at[0] - started, 2) if submitted_at else None,
            "tx_per_s": round(included / elapsed, 1),
            "blocks": len(rows),
            "blocks_per_s": round(len(rows) / elapsed, 2),
            "mean_txs_per_block": round(sum(t for _, t in rows) / len(rows), 1) if rows else 0.0,
            "max_txs_per_block": max((t for _, t in rows), default=0),
            "stale_blocks": stale,
            "block_interval_s": net.params.block_interval_ms / 1000,
            "start_height": start_height,
            "height": end_height,
        }
        if kind == "pow":
            figures["hashes_per_tick"] = POW_HASHES_PER_TICK
        if net.params.consensus == CONSENSUS_POA:
            figures.update(_finality(net, readers, base, len(txs), started, deadline, say))
        return figures, txs, net.params
    finally:
        for r in readers:
            r.close()
        net.stop()
        if sender is not None:
            sender.join(timeout=10)


def _finality(
    net: Devnet,
    readers: list[_Reader],
    base: list[int],
    n: int,
    started: float,
    deadline: float,
    say: Progress,
) -> dict[str, Any]:
    """Wait until the finalized part of every node's main chain holds the ``n`` transactions."""
    said = time.monotonic()
    while True:
        finals = [_finalized(node) for node in net.nodes]
        held = [r.txs_upto(f) - b for r, f, b in zip(readers, finals, base, strict=True)]
        now = time.monotonic()
        if min(held) >= n or now > deadline:
            break
        _check_alive(net)
        if now - said >= PROGRESS_S:
            said = now
            say(f"poa: {min(held)}/{n} final on every node (finalized heights {finals})")
        time.sleep(POLL_S)
    final = min(held) >= n
    elapsed = now - started
    return {
        "finalized_height": min(finals),
        "final": final,
        "final_seconds": round(elapsed, 3) if final else None,  # (as "seconds": never below it)
        "final_tx_per_s": round(n / elapsed, 1) if final else None,
    }


def run(
    *,
    transactions: int = 20_000,
    senders: int = 200,
    seconds: float = 300.0,
    root: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Both devnets, one after the other, with the same load (``seconds``: the most to wait
    for it on each); every process started is stopped whatever happens."""
    check_sizes(transactions=transactions, senders=senders)
    say = progress or (lambda _m: None)
    senders = min(senders, transactions)
    work = Path(tempfile.mkdtemp(prefix="gridnet-bench-consensus-", dir=root))
    chains: dict[str, dict[str, Any]] = {}
    sizes: list[int] = []
    params: ChainParams | None = None
    try:
        for kind in KINDS:
            figures, txs, chain_params = measure(
                work / kind, kind, transactions=transactions, senders=senders, seconds=seconds, say=say
            )
            chains[kind] = figures
            sizes.extend(len(encode(tx)) for tx in txs)
            params = params or chain_params  # the permissioned chain's (it runs first)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert params is not None
    beta = params.max_block_bytes
    mu = sum(sizes) / len(sizes)
    rho = params.block_interval_ms / 1000
    tau = beta / mu / rho
    poa, pow_ = chains["poa"], chains["pow"]
    return {
        "transactions": transactions,
        "senders": senders,
        "poa": poa,
        "pow": pow_,
        "poa_to_pow_tx_ratio": round(poa["tx_per_s"] / pow_["tx_per_s"], 3) if pow_["tx_per_s"] else None,
        "paper": {
            "beta_block_bytes": beta,
            "mu_mean_tx_bytes": round(mu, 1),
            "rho_block_interval_s": rho,
            "tau_tx_per_s": round(tau, 1),
            "poa_tx_per_s": poa["tx_per_s"],
            "pow_tx_per_s": pow_["tx_per_s"],
            "poa_to_tau": round(poa["tx_per_s"] / tau, 4),
            "pow_to_tau": round(pow_["tx_per_s"] / tau, 4),
        },
    }
