"""Ledger benchmark: signed transfers validated, applied and persisted in blocks.

Every rate is set against the raw Ed25519 verification rate of one core measured in the same
process, because the machines this runs on are noisy: the ratio is what counts. The blocks are
imported twice, with their signatures checked on one core and on all of them (``verify_many``).
What all the cores give together is measured too (raw verifications on every core at once,
``cores_speedup`` over one core): on a virtual machine two cores may give far less than twice
one, and ``ratio_to_all_cores`` says how much of that the ledger reaches.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from gridnet.crypto.hashing import address_digest, txid
from gridnet.crypto.keys import Domain, PrivateKey, raw_verify, verification_cores, verification_limit
from gridnet.encoding import decode, encode
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import Chain
from gridnet.ledger.miner import produce_block
from gridnet.ledger.params import Allocation, ChainParams, default_params
from gridnet.ledger.transactions import sign_transaction, tx_body
from gridnet.ledger.transition import VerifiedTx
from gridnet.ledger.txs.transfer import Transfer
from gridnet.system import fewer_gc_passes
from gridnet.units import UNITS_PER_GNC

Progress = Callable[[str], None]


def measure_raw_verify(seconds: float = 1.0) -> float:
    """Raw PyNaCl Ed25519 verifications per second on one core (same message size as a
    transfer)."""
    return measure_raw_verify_threads(1, seconds)


def measure_raw_verify_threads(threads: int, seconds: float = 1.0) -> float:
    """Raw Ed25519 verifications per second of ``threads`` threads verifying at once (libsodium
    releases the GIL): what this machine's cores give together, which on a virtual machine
    may be well short of ``threads`` times one core's rate."""
    counts, elapsed = raw_verify_counts(threads, seconds)
    return sum(counts) / elapsed


def raw_verify_counts(threads: int, seconds: float) -> tuple[list[int], float]:
    """Verifications done by each of ``threads`` threads verifying at once for about
    ``seconds`` (each does at least one round of 64, however late a busy machine starts it),
    and the seconds from the start until the last one stopped."""
    key = PrivateKey.from_label("bench-raw")
    bodies = [os.urandom(125) for _ in range(64)]
    sigs = [key.sign(Domain.TRANSACTION, b) for b in bodies]
    msgs = [Domain.TRANSACTION.value + b for b in bodies]  # exactly what was signed
    pk = key.public_key
    counts = [0] * threads
    start = time.perf_counter()

    def verify(slot: int) -> None:
        while True:
            for m, s in zip(msgs, sigs, strict=True):
                raw_verify(pk, m, s)
            counts[slot] += len(msgs)
            if time.perf_counter() - start >= seconds:
                return

    if threads == 1:
        verify(0)
    else:
        workers = [threading.Thread(target=verify, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return counts, time.perf_counter() - start


def bench_params(n_keys: int, blocks: int) -> tuple[ChainParams, list[PrivateKey]]:
    keys = [PrivateKey.from_label(f"bench-{i}") for i in range(n_keys)]
    base = default_params(tuple(Allocation(k.address, 1_000 * UNITS_PER_GNC) for k in keys))
    # Genesis far enough in the past that every block's timestamp is in the past too,
    # and an easy fixed difficulty: the benchmark measures validation, not mining.
    interval = base.block_interval_ms
    return (
        msgspec.structs.replace(
            base,
            genesis_time=int(time.time() * 1000) - (blocks + 10) * interval,
            initial_target=(1 << 252).to_bytes(32, "big"),
            pow_limit=(1 << 252).to_bytes(32, "big"),
        ),
        keys,
    )


def make_blocks(
    workdir: Path,
    params: ChainParams,
    keys: list[PrivateKey],
    blocks: int,
    per_block: int,
    progress: Progress,
) -> list[bytes]:
    """Produce ``blocks`` encoded blocks of ``per_block`` signed transfers each."""
    producer = Chain.create(workdir / "producer", params)
    out = []
    nonces = [0] * len(keys)
    fee = 200
    for b in range(blocks):
        vtxs = []
        for i in range(per_block):
            k = (b * per_block + i) % len(keys)
            key = keys[k]
            to = keys[(k + 1) % len(keys)].address
            tx = sign_transaction(key, producer.chain_id, Transfer(to, 1000 + i), nonces[k], fee)
            nonces[k] += 1
            body = tx_body(tx)
            # Setup only: skip the signature check here, the measured import does it.
            vtxs.append(
                VerifiedTx(tx, txid(body, tx.signature), address_digest(key.public_key), len(body) + 64)
            )
        ts = params.genesis_time + (b + 1) * params.block_interval_ms
        block, template = produce_block(producer, keys[0].address, vtxs, timestamp=ts)
        assert len(template.included) == per_block, template.rejected[:1]
        producer.add_block(block)
        out.append(encode(block))
        progress(f"built block {b + 1}/{blocks}")
    producer.close()
    return out


def import_blocks(chain: Chain, encoded: list[bytes]) -> tuple[int, float]:
    """Decode, fully validate, apply and persist each block; returns (txs, seconds). The
    cycle collector runs as often as in a node process (``GC_THRESHOLDS``)."""
    n = 0
    start = time.perf_counter()
    with fewer_gc_passes():
        for raw in encoded:
            block = decode(raw, Block, max_bytes=chain.params.max_block_bytes)
            chain.add_block(block, encoded=raw)
            n += len(block.txs) - 1
    return n, time.perf_counter() - start


def import_rate(blocks: int = 10, per_block: int = 1000) -> float:
    """Signed transfers validated, applied and persisted per second, on a fresh chain."""
    params, keys = bench_params(2000, blocks)
    with tempfile.TemporaryDirectory(prefix="gridnet-bench-") as tmp:
        encoded = make_blocks(Path(tmp), params, keys, blocks, per_block, lambda _m: None)
        chain = Chain.create(Path(tmp) / "node", params)
        n, seconds = import_blocks(chain, encoded)
        chain.close()
    return n / seconds


def run_verify_subprocess(data_dir: Path) -> dict[str, Any]:
    """Run ``gridnet chain verify --json`` in a child process; add its peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridnet",
            "chain",
            "verify",
            "--data-dir",
            str(data_dir),
            "--json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"chain verify failed: {proc.stdout.strip()} {proc.stderr.strip()}")
    result: dict[str, Any] = json.loads(proc.stdout)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["peak_rss_mb"] = round(max(peak_kb, before) / 1024, 1)
    return result


def run(
    *, blocks: int = 100, per_block: int = 1000, n_keys: int = 2000, progress: Progress | None = None
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    params, keys = bench_params(n_keys, blocks)
    with tempfile.TemporaryDirectory(prefix="gridnet-bench-") as tmp:
        work = Path(tmp)
        say("measuring raw Ed25519 verification")
        verify_before = measure_raw_verify()
        encoded = make_blocks(work, params, keys, blocks, per_block, say)
        say("importing blocks on one core (validate + apply + persist)")
        one = Chain.create(work / "one-core", params)
        with verification_limit(1):
            n, one_seconds = import_blocks(one, encoded)
        one.close()
        cores = verification_cores()
        say(f"importing blocks on {cores} cores")
        chain = Chain.create(work / "node", params)
        n, seconds = import_blocks(chain, encoded)
        chain.close()
        verify_after = measure_raw_verify()
        ed_rate = (verify_before + verify_after) / 2
        say(f"measuring raw Ed25519 verification on {cores} cores at once")
        ed_all = measure_raw_verify_threads(cores)
        tx_per_s = n / seconds
        say("running 'gridnet chain verify' on the imported chain")
        audit = run_verify_subprocess(work / "node")
        verify_rate = audit["tx_per_s"]
        mean_tx = sum(len(r) for r in encoded) / (blocks * (per_block + 1))
        beta = params.max_block_bytes
        rho = params.block_interval_ms / 1000
        return {
            "tx_per_s": round(tx_per_s, 1),
            "ed25519_verify_per_s": round(ed_rate, 1),
            "ratio": round(tx_per_s / ed_rate, 3),
            "cores": cores,
            "ed25519_verify_per_s_all_cores": round(ed_all, 1),
            "cores_speedup": round(ed_all / ed_rate, 3),
            "ratio_to_all_cores": round(tx_per_s / ed_all, 3),
            "tx_per_s_one_core": round(n / one_seconds, 1),
            "ratio_one_core": round(n / one_seconds / ed_rate, 3),
            "transactions": n,
            "blocks": blocks,
            "txs_per_block": per_block,
            "verify_tx_per_s": round(verify_rate, 1),
            "verify_ratio": round(verify_rate / ed_rate, 3),
            "verify_transactions": audit["transactions"],
            "verify_peak_rss_mb": audit["peak_rss_mb"],
            "paper": {
                "beta_block_bytes": beta,
                "mu_mean_tx_bytes": round(mean_tx, 1),
                "rho_block_interval_s": rho,
                "tau_tx_per_s": round(beta / mean_tx / rho, 1),
                "measured_tx_per_s": round(tx_per_s, 1),
            },
        }
