"""Meters benchmark: how many signed 15-minute readings one node validates and stores, and the
chain and disk bytes they take (issue 16, point 6: meters at national scale).

Setup (not timed, in this process): a chain in a temporary directory (SQLite, easy
proof-of-work as in the tests) where a manufacturer authority certified ``meters`` meters,
each registered by its own owner (a home: a registered identity, then ``RegisterMeter``).
Every meter signs a reading per 15-minute interval for ``intervals`` intervals (cumulative
counters of a meter some years old, so that the integers take their usual widths); a
collector per area batches every meter's reading of an interval into one ``SubmitReadings``,
as the simulator's collector does (``agents/collector.py``), and an area holds as many meters
as one batch may carry (``MAX_READINGS_PER_TX``). Blocks of such batches are then built and
mined as full as ``max_block_bytes`` lets them be. Making the signatures is the meters' work,
building the blocks a miner's: neither is timed.

Measured (each in a fresh child process, so that nothing the setup verified or cached counts):

- the node path: every ``SubmitReadings`` decoded from its wire bytes and checked statelessly
  (``validate_transaction``: size, fee, the collector's signature), then every block decoded
  and added with ``Chain.add_block`` — which validates everything again, applies each reading
  (the meter's signature, its registration, counters, duplicates) and persists the block, its
  state changes and its undo record in SQLite. ``readings_per_s`` is this rate.
- the relaying node: the same, but each transaction taken into the mempool as a peer's gossip
  is (``Mempool.admit`` with the trial on the head, ``ledger/trial.py``, which applies it as a
  block would), and the mempool updated after each block.

Each child measures the raw Ed25519 verification rate before and after, in its own process:
machines are noisy, the ratio is what counts. Sizes: the encoded blocks of readings over the
readings (``SubmitReadings`` framing, the collector's signature, headers and coinbases
included); the growth of the SQLite files (blocks, state, undo, indexes) over the readings;
the state entries the readings add (held in memory by ``Chain`` as well).
"""

from __future__ import annotations

import gc
import multiprocessing
import random
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any, Final

import msgspec

from gridnet.bench.ledger import measure_raw_verify
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import decode, encode
from gridnet.identity import find_identity_proof
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import AddStatus, Chain
from gridnet.ledger.mempool import Mempool
from gridnet.ledger.miner import produce_block
from gridnet.ledger.params import Allocation, ChainParams, default_params
from gridnet.ledger.registry import Payload
from gridnet.ledger.store import DB_NAME
from gridnet.ledger.transactions import Transaction, min_fee, sign_transaction, tx_id
from gridnet.ledger.transition import VerifiedTx, validate_transaction
from gridnet.ledger.trial import TrialState
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.meter import MAX_READINGS_PER_TX, SubmitReadings, registration
from gridnet.meter.certificate import issue_certificate
from gridnet.meter.reading import Reading, SignedReading, sign_reading
from gridnet.security.roles import Role
from gridnet.system import settle_gc
from gridnet.units import INTERVAL_MS, UNITS_PER_GNC, interval_of
from gridnet.work import target_from_bits, target_to_bytes

Progress = Callable[[str], None]

READINGS_PER_YEAR: Final = 365 * 24 * 3600 * 1000 // INTERVAL_MS
"""One reading per 15-minute interval for a year: 35,040."""
NATIONAL_METERS: Final = 10_000_000
"""The national scale the issue asks about."""
METERS_PER_COLLECTOR: Final = MAX_READINGS_PER_TX
"""Meters of one area, whose collector batches an interval's readings in one transaction."""
VENDOR, MODEL, FIRMWARE = "GridMeter", "GM-15", "1.0.0"
MAKER = PrivateKey.from_label("bench-meters-maker")
MINER = PrivateKey.from_label("bench-meters-miner")


@dataclass(frozen=True)
class Fleet:
    """The meters, their owners (one home each) and the areas' collectors."""

    meters: list[PrivateKey]
    owners: list[PrivateKey]
    collectors: list[PrivateKey]


class Produced(msgspec.Struct, frozen=True):
    """What the setup hands the measured nodes (a file in the temporary directory)."""

    params: bytes
    """Encoded chain parameters."""
    setup: list[bytes]
    """Encoded blocks registering the manufacturer, the owners and their meters."""
    blocks: list[bytes]
    """Encoded blocks of readings."""
    txs: list[list[bytes]]
    """Each block's ``SubmitReadings`` transactions, encoded (as gossip carries them)."""
    readings: list[int]
    """Readings in each block."""
    reading_bytes: int
    """Sum of the encoded signed readings [bytes]."""


@dataclass(frozen=True)
class NodeRun:
    """What one measured node did (returned by the child process)."""

    ed25519_verify_per_s: float
    check_s: float
    """Stateless checks (node path) or mempool admission with the trial (relaying node) [s]."""
    import_s: float
    """Decoding and adding the blocks (and, relaying, updating the mempool) [s]."""
    store_bytes_before: int
    """SQLite files after genesis, after the registrations, after the readings [bytes]."""
    store_bytes_registered: int
    store_bytes_after: int
    state_entries: int
    """State entries the readings added."""
    state_bytes: int
    """Their keys and values, encoded [bytes]."""
    memory_bytes: int
    """Growth of what ``Chain`` holds in memory for the state (its values and the state
    commitment's trie) over the readings [bytes]."""
    undo_bytes: int
    """Undo records of the blocks of readings [bytes]."""


def check_sizes(*, meters: int, intervals: int) -> None:
    """``ValueError`` for sizes the benchmark cannot run with."""
    if meters < 1:
        raise ValueError(f"{meters} meters: at least one")
    if intervals < 1:
        raise ValueError(f"{intervals} intervals: at least one")


def make_fleet(meters: int) -> Fleet:
    collectors = (meters + METERS_PER_COLLECTOR - 1) // METERS_PER_COLLECTOR
    return Fleet(
        meters=[PrivateKey.from_label(f"bench-meters-meter-{i}") for i in range(meters)],
        owners=[PrivateKey.from_label(f"bench-meters-owner-{i}") for i in range(meters)],
        collectors=[PrivateKey.from_label(f"bench-meters-collector-{a}") for a in range(collectors)],
    )


def chain_params(fleet: Fleet) -> ChainParams:
    """Default parameters (block size, interval, fees) with easy targets (4-bit blocks, 6-bit
    identities, as the tests), genesis a day ago (every block's timestamp is in the past),
    owners, collectors and the manufacturer funded."""
    keys = [MAKER, *fleet.owners, *fleet.collectors]
    base = default_params(tuple(Allocation(k.address, 1_000 * UNITS_PER_GNC) for k in keys))
    easy = target_to_bytes(target_from_bits(4))
    return msgspec.structs.replace(
        base,
        genesis_time=int(time.time() * 1000) - 24 * 3600 * 1000,
        initial_target=easy,
        pow_limit=easy,
        identity_target=target_to_bytes(target_from_bits(6)),
    )


def sign(chain: Chain, key: PrivateKey, payload: Payload, nonce: int) -> VerifiedTx:
    tx = sign_transaction(
        key, chain.chain_id, payload, nonce, min_fee(chain.params.min_fee_per_byte, payload, nonce)
    )
    return validate_transaction(tx, chain.params, chain.chain_id)


def registrations(chain: Chain, fleet: Fleet) -> list[VerifiedTx]:
    """The manufacturer's identity and authority, then each owner's identity and meter."""
    target = chain.params.identity_target_int
    out = [
        sign(chain, MAKER, RegisterIdentity(find_identity_proof(MAKER.address, target)), 0),
        sign(chain, MAKER, RegisterAuthority(int(Role.MANUFACTURER), f"{VENDOR} Ltd"), 1),
    ]
    for i, (meter, owner) in enumerate(zip(fleet.meters, fleet.owners, strict=True)):
        cert = issue_certificate(
            MAKER, meter.public_key, vendor=VENDOR, model=MODEL, firmware=FIRMWARE, serial=f"{i:08d}"
        )
        area = f"area-{i // METERS_PER_COLLECTOR}"
        out.append(sign(chain, owner, RegisterIdentity(find_identity_proof(owner.address, target)), 0))
        out.append(sign(chain, owner, registration(meter, cert, area, owner.address, chain.chain_id), 1))
    return out


def make_readings(fleet: Fleet, first: int, intervals: int, seed: int) -> list[list[SignedReading]]:
    """Every meter's signed reading of each interval (index: interval, then meter). Counters
    start where a meter some years old stands; a third of the homes export (PV)."""
    rng = random.Random(seed)
    n = len(fleet.meters)
    exported = [rng.randint(1_000_000, 30_000_000) if i % 3 == 0 else 0 for i in range(n)]
    imported = [rng.randint(5_000_000, 60_000_000) for _ in range(n)]
    out = []
    for t in range(intervals):
        batch = []
        for i, key in enumerate(fleet.meters):
            exp = rng.randint(0, 1_500) if i % 3 == 0 else 0
            imp = rng.randint(20, 1_200)
            exported[i] += exp
            imported[i] += imp
            reading = Reading(key.address, first + t, exp, imp, exported[i], imported[i], FIRMWARE)
            batch.append(sign_reading(key, reading))
        out.append(batch)
    return out


def batches(fleet: Fleet, readings: list[list[SignedReading]]) -> list[tuple[int, SubmitReadings]]:
    """(collector, batch): per interval, each area's readings in one transaction, in the
    collector's canonical order (by meter)."""
    out = []
    for per_meter in readings:
        for a in range(len(fleet.collectors)):
            area = per_meter[a * METERS_PER_COLLECTOR : (a + 1) * METERS_PER_COLLECTOR]
            ordered = tuple(sorted(area, key=lambda r: (r.reading.meter, r.reading.interval)))
            out.append((a, SubmitReadings(ordered)))
    return out


def mine_all(chain: Chain, vtxs: list[VerifiedTx], what: str, say: Progress) -> list[Block]:
    """Mine blocks on ``chain``, each as full as the block size lets it be, until every one
    of ``vtxs`` (in nonce order per sender) is included; returns the blocks."""
    out = []
    remaining = vtxs
    while remaining:
        ts = chain.head.header.timestamp + chain.params.block_interval_ms
        block, template = produce_block(chain, MINER.address, remaining, now=ts, timestamp=ts)
        if not template.included:
            vtx, exc = template.rejected[0] if template.rejected else (remaining[0], None)
            raise RuntimeError(f"the benchmark's {type(vtx.tx.payload).__name__} was not included: {exc!r}")
        taken = {v.txid for v in template.included}
        remaining = [v for v in remaining if v.txid not in taken]
        result = chain.add_block(block, now=ts)
        if result.status is not AddStatus.EXTENDED:
            raise RuntimeError(f"the benchmark's block did not extend the chain: {result.status}")
        out.append(block)
        say(f"mined {what} block {len(out)} ({len(vtxs) - len(remaining)}/{len(vtxs)} transactions)")
    return out


def produce(workdir: Path, meters: int, intervals: int, seed: int, say: Progress) -> Produced:
    """Register the fleet and mine its readings on a producing chain (not timed)."""
    fleet = make_fleet(meters)
    params = chain_params(fleet)
    chain = Chain.create(workdir / "producer", params)
    try:
        say(f"registering {meters} meters, each by its own owner")
        setup = mine_all(chain, registrations(chain, fleet), "registration", say)
        first = interval_of(params.genesis_time) - intervals
        say(f"{meters} meters signing {intervals} readings each (the meters' work: not timed)")
        readings = make_readings(fleet, first, intervals, seed)
        nonces = [0] * len(fleet.collectors)
        vtxs = []
        for a, payload in batches(fleet, readings):
            vtxs.append(sign(chain, fleet.collectors[a], payload, nonces[a]))
            nonces[a] += 1
        blocks = mine_all(chain, vtxs, "readings", say)
    finally:
        chain.close()
    return Produced(
        params=encode(params),
        setup=[encode(b) for b in setup],
        blocks=[encode(b) for b in blocks],
        txs=[[encode(tx) for tx in b.txs[1:]] for b in blocks],
        readings=[sum(len(_submitted(tx).readings) for tx in b.txs[1:]) for b in blocks],
        reading_bytes=sum(len(encode(r)) for per_meter in readings for r in per_meter),
    )


def _submitted(tx: Transaction) -> SubmitReadings:
    payload = tx.payload
    assert isinstance(payload, SubmitReadings)
    return payload


def store_bytes(data_dir: Path) -> int:
    """Size of a closed chain's SQLite files (the database, and its WAL if one is left)."""
    return sum(p.stat().st_size for p in data_dir.glob(f"{DB_NAME}*"))


def retained_bytes(*roots: object) -> int:
    """Size of the objects reachable from ``roots`` (classes, modules and functions left
    out: they are shared) [bytes]."""
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | ModuleType | FunctionType):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def _add(chain: Chain, raw: bytes) -> Block:
    block = decode(raw, Block, max_bytes=chain.params.max_block_bytes)
    result = chain.add_block(block, encoded=raw)
    if result.status is not AddStatus.EXTENDED:
        raise RuntimeError(f"block {block.header.height} did not extend the node's chain: {result.status}")
    return block


def measure_node(data: Path, node_dir: Path, relaying: bool, verify_seconds: float) -> NodeRun:
    """Import the produced blocks into a fresh node chain; time the readings (child process)."""
    produced = msgspec.msgpack.decode(data.read_bytes(), type=Produced)
    params = decode(produced.params, ChainParams)
    Chain.create(node_dir, params).close()
    store_before = store_bytes(node_dir)
    chain = Chain.open(node_dir)
    for raw in produced.setup:
        _add(chain, raw)
    chain.close()
    store_registered = store_bytes(node_dir)
    chain = Chain.open(node_dir)
    known = set(chain.values)
    memory_before = retained_bytes(chain.values, chain.commitment)
    pool = Mempool(params, chain.chain_id)
    trial = TrialState(chain)
    settle_gc()  # (the collector's thresholds of a node process; this is a child of its own)
    verify_before = measure_raw_verify(verify_seconds)
    check_s = import_s = 0.0
    hashes = []
    for raw_block, raw_txs in zip(produced.blocks, produced.txs, strict=True):
        start = time.perf_counter()
        for raw in raw_txs:
            tx = decode(raw, Transaction, max_bytes=params.max_block_bytes)
            if relaying:
                pool.admit(tx, chain.account, decoded=True, check=partial(trial.check, pool))
            else:
                validate_transaction(tx, params, chain.chain_id)
        checked = time.perf_counter()
        block = _add(chain, raw_block)
        if relaying:
            pool.update_after_block([tx_id(tx) for tx in block.txs], chain.account)
        import_s += time.perf_counter() - checked
        check_s += checked - start
        hashes.append(chain.head.hash)
    verify_after = measure_raw_verify(verify_seconds)
    memory_after = retained_bytes(chain.values, chain.commitment)
    added = [(k, chain.values[k]) for k in chain.values.keys() - known]
    undo = sum(len(chain.store.get_undo(h) or b"") for h in hashes)
    chain.close()
    return NodeRun(
        ed25519_verify_per_s=(verify_before + verify_after) / 2,
        check_s=check_s,
        import_s=import_s,
        store_bytes_before=store_before,
        store_bytes_registered=store_registered,
        store_bytes_after=store_bytes(node_dir),
        state_entries=len(added),
        state_bytes=sum(len(k) + len(v) for k, v in added),
        memory_bytes=memory_after - memory_before,
        undo_bytes=undo,
    )


def in_child(data: Path, node_dir: Path, relaying: bool, verify_seconds: float) -> NodeRun:
    """``measure_node`` in a fresh (spawned) process: nothing this process verified counts."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure_node, data, node_dir, relaying, verify_seconds).result()


def rates(run: NodeRun, readings: int) -> dict[str, float]:
    per_s = readings / (run.check_s + run.import_s)
    return {
        "readings_per_s": round(per_s, 1),
        "ed25519_verify_per_s": round(run.ed25519_verify_per_s, 1),
        "ratio": round(per_s / run.ed25519_verify_per_s, 3),
        "meters_at_15min": round(per_s * INTERVAL_MS / 1000),
        "check_s": round(run.check_s, 6),  # (a small run's checks take a few milliseconds)
        "import_s": round(run.import_s, 6),
    }


def run(
    *,
    meters: int = 4_096,
    intervals: int = 16,
    seed: int = 1,
    verify_seconds: float = 1.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Readings per second one node validates and stores, and their bytes (module docstring)."""
    say = progress or (lambda _msg: None)
    check_sizes(meters=meters, intervals=intervals)
    with tempfile.TemporaryDirectory(prefix="gridnet-bench-meters-") as tmp:
        work = Path(tmp)
        produced = produce(work, meters, intervals, seed, say)
        data = work / "produced.msgpack"
        data.write_bytes(msgspec.msgpack.encode(produced))
        say("node: stateless checks, then Chain.add_block of every block (fresh process)")
        node = in_child(data, work / "node", False, verify_seconds)
        say("relaying node: mempool admission with the trial, then the blocks (fresh process)")
        relay = in_child(data, work / "relay", True, verify_seconds)
    params = decode(produced.params, ChainParams)
    readings = sum(produced.readings)
    if readings != meters * intervals:
        raise RuntimeError(f"{readings} readings on chain; {meters * intervals} were signed")
    txs = [len(raw) for block in produced.txs for raw in block]
    block_bytes = sum(len(b) for b in produced.blocks)
    per_reading = block_bytes / readings
    registration = (sum(len(b) for b in produced.setup)) / meters
    tx_per_reading = (sum(txs) + 4 * len(txs)) / readings  # (block building counts 4 bytes a tx)
    sqlite_per_reading = (node.store_bytes_after - node.store_bytes_registered) / readings
    sqlite_registration = (node.store_bytes_registered - node.store_bytes_before) / meters
    chain_year = READINGS_PER_YEAR * per_reading + registration
    sqlite_year = READINGS_PER_YEAR * sqlite_per_reading + sqlite_registration
    memory_year = READINGS_PER_YEAR * node.memory_bytes / readings
    capacity = params.max_block_bytes / tx_per_reading / (params.block_interval_ms / 1000)
    node_rates = rates(node, readings)
    return {
        "meters": meters,
        "intervals": intervals,
        "readings": readings,
        **{k: v for k, v in node_rates.items() if k != "meters_at_15min"},
        "meters_per_node_at_15min": node_rates["meters_at_15min"],
        "relaying_node": rates(relay, readings),
        "collectors": len(txs) // intervals,
        "submit_readings_txs": len(txs),
        "readings_per_tx": round(readings / len(txs), 1),
        "blocks": len(produced.blocks),
        "readings_per_block": round(readings / len(produced.blocks), 1),
        "max_readings_per_block": max(produced.readings),
        "signed_reading_bytes": round(produced.reading_bytes / readings, 1),
        "tx_bytes_per_reading": round(tx_per_reading, 2),
        "bytes_per_reading": round(per_reading, 2),
        "registration_chain_bytes_per_meter": round(registration, 1),
        "chain_bytes_per_meter_per_year": round(chain_year),
        "sqlite_bytes_per_reading": round(sqlite_per_reading, 1),
        "sqlite_registration_bytes_per_meter": round(sqlite_registration, 1),
        "sqlite_bytes_per_meter_per_year": round(sqlite_year),
        "state_entries_per_reading": round(node.state_entries / readings, 3),
        "state_bytes_per_reading": round(node.state_bytes / readings, 1),
        "state_memory_bytes_per_reading": round(node.memory_bytes / readings, 1),
        "state_memory_bytes_per_meter_per_year": round(memory_year),
        "undo_bytes_per_reading": round(node.undo_bytes / readings, 1),
        "block_interval_s": params.block_interval_ms / 1000,
        "max_block_bytes": params.max_block_bytes,
        "chain_capacity_readings_per_s": round(capacity, 1),
        "meters_per_chain_at_15min": round(capacity * INTERVAL_MS / 1000),
        "national": {
            "meters": NATIONAL_METERS,
            "readings_per_s": round(NATIONAL_METERS / (INTERVAL_MS / 1000), 1),
            "chain_bytes_per_year": round(NATIONAL_METERS * chain_year),
            "sqlite_bytes_per_year": round(NATIONAL_METERS * sqlite_year),
            "state_bytes_per_year": round(NATIONAL_METERS * READINGS_PER_YEAR * node.state_bytes / readings),
            "state_memory_bytes_per_year": round(NATIONAL_METERS * memory_year),
        },
    }
