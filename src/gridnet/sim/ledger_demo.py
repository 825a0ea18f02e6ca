"""The ledger demo (``gridnet demo``): three mining nodes on the in-memory network.

Participants register identities with their proof-of-work, bond coin and send
transfers; midway the network is partitioned and healed, so the nodes resolve a
fork by most cumulative work. Every block is real (signatures, proof-of-work,
SQLite); only the clock is simulated. The same seed gives the same chain.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.identity import find_identity_proof
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import (
    Allocation,
    ChainParams,
    default_params,
    max_supply,
    parse_time_ms,
    validate_params,
)
from gridnet.ledger.state import IDENTITIES
from gridnet.ledger.transactions import min_fee, sign_transaction
from gridnet.ledger.txs.bond import Bond, Unbond
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.transfer import Transfer
from gridnet.net.memory import MemoryNetwork
from gridnet.node.node import Node, NodeConfig
from gridnet.sim.output import audit, staged_out_dir, write_report
from gridnet.units import UNITS_PER_GNC
from gridnet.work import target_from_bits, target_to_bytes


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 1
    participants: int = 20
    nodes: int = 3
    duration_s: int = 300
    round_s: int = 5
    partition_start_s: int = 120
    partition_s: int = 60
    block_interval_s: float = 5.0
    hashes_per_tick: int = 30
    """Per node and 100 ms tick: 3 nodes x 300 H/s finds a 12-bit block every ~4.5 s."""


def demo_params(cfg: DemoConfig, keys: list[PrivateKey]) -> ChainParams:
    base = default_params(tuple(Allocation(k.address, 1_000 * UNITS_PER_GNC) for k in keys))
    params = msgspec.structs.replace(
        base,
        name="gridnet-demo",
        genesis_time=parse_time_ms("2026-06-21T00:00:00Z"),
        block_interval_ms=int(cfg.block_interval_s * 1000),
        initial_target=target_to_bytes(target_from_bits(12)),
        pow_limit=target_to_bytes(target_from_bits(8)),
        retarget_window=10,
        identity_target=target_to_bytes(target_from_bits(12)),
        unbonding_delay=6,
        max_dispute_window=5,  # (no contracts here; unbonding must still outlast any dispute)
    )
    return validate_params(params, "the ledger demo")


def run_demo(
    out: Path, cfg: DemoConfig = DemoConfig(), progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    started = time.perf_counter()
    with staged_out_dir(out, "ledger-demo") as staged:  # (replaced only by a complete demo)
        report = _run_demo(staged.begin(), cfg, progress, started)
    return report


def _run_demo(
    out: Path, cfg: DemoConfig, progress: Callable[[int, int], None] | None, started: float
) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    keys = [PrivateKey.from_label(f"demo-participant-{i}") for i in range(cfg.participants)]
    params = demo_params(cfg, keys)
    net = MemoryNetwork(start_ms=params.genesis_time, latency_ms=60, jitter_ms=40, seed=cfg.seed)
    for i in range(cfg.nodes):
        data_dir = out / "chain" if i == 0 else out / "nodes" / f"n{i}"
        chain = Chain.create(data_dir, params)
        miner = PrivateKey.from_label(f"demo-miner-{i}").address
        net.add(Node(f"n{i}", chain, NodeConfig(miner=miner, hashes_per_tick=cfg.hashes_per_tick)))
    net.link_all()
    names = list(net.nodes)
    chain_id = net.nodes[names[0]].chain.chain_id
    nonces = [0] * len(keys)
    submitted: Counter[str] = Counter()
    refused: Counter[str] = Counter()

    def send(i: int, payload: Any) -> None:
        """Participant ``i`` signs ``payload`` and hands it to its home node."""
        fee = min_fee(params.min_fee_per_byte, payload, nonces[i])
        tx = sign_transaction(keys[i], chain_id, payload, nonces[i], fee)
        events = net.submit(names[i % len(names)], tx)
        if events[0].kind.value == "accepted":
            nonces[i] += 1
            submitted[type(payload).__name__] += 1
        else:
            refused[events[0].rule] += 1

    # Every participant registers its identity with its proof-of-work.
    for i, key in enumerate(keys):
        send(i, RegisterIdentity(find_identity_proof(key.address, params.identity_target_int)))

    partitioned = False
    t0 = net.now
    end = t0 + cfg.duration_s * 1000
    rounds = 0
    while net.now < end:
        elapsed_s = (net.now - t0) // 1000
        if not partitioned and cfg.partition_start_s <= elapsed_s < cfg.partition_start_s + cfg.partition_s:
            net.partition(names[:1], names[1:])
            partitioned = True
        elif partitioned and elapsed_s >= cfg.partition_start_s + cfg.partition_s:
            net.heal()
            partitioned = False
        rounds += 1
        for _ in range(rng.randint(2, 6)):
            a, b = rng.sample(range(len(keys)), 2)
            send(a, Transfer(keys[b].address, rng.randint(1, 20) * UNITS_PER_GNC))
        if rounds % 7 == 0:
            send(rng.randrange(len(keys)), Bond(rng.randint(5, 50) * UNITS_PER_GNC))
        if rounds % 13 == 0:
            i = rng.randrange(len(keys))
            bonded = net.nodes[names[0]].chain.account(keys[i].address).bonded
            if bonded:
                send(i, Unbond(bonded))
        net.run_for(cfg.round_s * 1000)
        if progress is not None:
            progress(min(net.now - t0, end - t0) // 1000, cfg.duration_s)
    net.heal()
    converged = net.settle(max_ms=120_000)
    sim_seconds = time.perf_counter() - started

    chain = net.nodes[names[0]].chain
    report = build_report(net, chain, params, keys, submitted, refused, converged)
    for node in net.nodes.values():
        node.close()
    report["verify"] = audit(out / "chain")
    report["timing"] = {
        "simulation_s": round(sim_seconds, 2),
        "total_s": round(time.perf_counter() - started, 2),
    }
    write_report(out, report)
    return report


def build_report(
    net: MemoryNetwork,
    chain: Chain,
    params: ChainParams,
    keys: list[PrivateKey],
    submitted: Counter[str],
    refused: Counter[str],
    converged: bool,
) -> dict[str, Any]:
    by_type: Counter[str] = Counter()
    chain_bytes = 0
    for height in range(1, chain.height + 1):
        block = chain.block_at(height)
        assert block is not None
        chain_bytes += len(encode(block))
        by_type.update(type(t.payload).__name__ for t in block.txs)
    accounts = [chain.account(k.address) for k in keys]
    events: Counter[str] = Counter()
    for node in net.nodes.values():
        events.update(node.stats.tx_outcomes)
    return {
        "chain": {
            "name": params.name,
            "genesis": chain.chain_id.hex(),
            "height": chain.height,
            "head": chain.head.hash.hex(),
            "cumulative_work": chain.head.total_work,
            "bytes": chain_bytes,
            "transactions_by_type": dict(sorted(by_type.items())),
            "max_supply_units": max_supply(params),
        },
        "converged": converged,
        "nodes": {
            name: {
                "height": n.chain.height,
                "head": n.chain.head.hash.hex()[:16],
                "blocks_mined": n.stats.blocks_mined,
                "reorgs": n.stats.reorgs,
                "mempool": len(n.mempool),
            }
            for name, n in net.nodes.items()
        },
        "participants": {
            "count": len(keys),
            "identities_registered": sum(chain.view().get(IDENTITIES, k.address) is not None for k in keys),
            "balance_units": sum(a.balance for a in accounts),
            "bonded_units": sum(a.bonded for a in accounts),
            "unbonding_units": sum(a.unbonding for a in accounts),
            "richest": address_to_text(max(keys, key=lambda k: chain.account(k.address).balance).address),
        },
        "transactions": {"submitted": dict(submitted), "refused": dict(refused)},
        "mempool_events": dict(events),
        "network": {
            "messages": net.stats.delivered,
            "bytes": net.stats.bytes_sent,
            "dropped_by_partition": net.stats.dropped_partition,
        },
    }
