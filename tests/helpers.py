"""Shared builders for tests: fast chain parameters, funded keys, mined blocks."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from gridnet.crypto.keys import PrivateKey, SignatureCache, verify_many
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import Chain
from gridnet.ledger.miner import produce_block
from gridnet.ledger.params import Allocation, ChainParams, default_params
from gridnet.ledger.pow import mine
from gridnet.ledger.registry import Payload
from gridnet.ledger.state import ACCOUNTS
from gridnet.ledger.transactions import Transaction, min_fee, sign_transaction
from gridnet.ledger.transition import ahead_checks, validate_transaction
from gridnet.units import UNITS_PER_GNC
from gridnet.work import target_from_bits, target_to_bytes

GENESIS_TIME = 1_767_225_600_000  # 2026-01-01T00:00:00Z [ms]
INTERVAL = 1_000  # block interval of the test chain [ms]


def test_keys(n: int = 4) -> list[PrivateKey]:
    return [PrivateKey.from_label(f"test-key-{i}") for i in range(n)]


def participant_key(report: dict[str, Any], label: str) -> PrivateKey:
    """The key of a simulated run's participant ``label`` (``World.key``), from its report."""
    run = report["scenario"]["resolved"]["simulation"]
    return PrivateKey.from_label(f"{run['name']}/{run['seed']}/{label}")


def test_params(keys: Sequence[PrivateKey] = (), gnc: int = 1_000, **overrides: object) -> ChainParams:
    """Easy targets (4-bit blocks, 6-bit identities), genesis in the past, funded keys."""
    base = default_params(tuple(Allocation(k.address, gnc * UNITS_PER_GNC) for k in keys))
    fields: dict[str, object] = {
        "genesis_time": GENESIS_TIME,
        "block_interval_ms": INTERVAL,
        "initial_target": target_to_bytes(target_from_bits(4)),
        "pow_limit": target_to_bytes(target_from_bits(4)),
        "identity_target": target_to_bytes(target_from_bits(6)),
        "unbonding_delay": 3,
        "max_dispute_window": 2,
    }
    fields.update(overrides)
    return msgspec.structs.replace(base, **fields)  # type: ignore[arg-type]


def new_chain(path: Path, params: ChainParams) -> Chain:
    return Chain.create(path, params)


def sign(chain: Chain, key: PrivateKey, payload: Payload, nonce: int, fee: int | None = None) -> Transaction:
    fee = min_fee(chain.params.min_fee_per_byte, payload, nonce) if fee is None else fee
    return sign_transaction(key, chain.chain_id, payload, nonce, fee)


def next_block(
    chain: Chain,
    txs: Iterable[Transaction] = (),
    miner: PrivateKey | None = None,
    timestamp: int | None = None,
) -> Block:
    """A valid mined block on ``chain``'s head (not added). Fails if a tx is rejected."""
    vtxs = [validate_transaction(t, chain.params, chain.chain_id) for t in txs]
    ts = timestamp if timestamp is not None else chain.head.header.timestamp + INTERVAL
    addr = (miner or PrivateKey.from_label("test-miner")).address
    block, template = produce_block(chain, addr, vtxs, now=ts, timestamp=ts)
    assert not template.rejected, template.rejected
    return block


def extend(chain: Chain, txs: Iterable[Transaction] = (), **kw: object) -> Block:
    """Mine and add the next block; returns it."""
    block = next_block(chain, txs, **kw)  # type: ignore[arg-type]
    chain.add_block(block, now=block.header.timestamp)
    return block


def served_chain(path: Path, blocks: int, transfers: int = 4) -> Chain:
    """A chain of ``blocks`` blocks after genesis, each with ``transfers`` transfers (about
    1 KB a block), for a node to serve."""
    from gridnet.ledger.txs.transfer import Transfer

    keys = test_keys(2)
    chain = new_chain(path, test_params(keys))
    for k in range(blocks):
        extend(
            chain,
            [
                sign(chain, keys[0], Transfer(keys[1].address, 1_000), k * transfers + i)
                for i in range(transfers)
            ],
        )
    return chain


def remine(block: Block, **header_changes: object) -> Block:
    """The block with header fields changed and a fresh valid proof-of-work."""
    header = msgspec.structs.replace(block.header, **header_changes)  # type: ignore[arg-type]
    solved = mine(header, 10_000_000)
    assert solved is not None
    return msgspec.structs.replace(block, header=solved)


def wait_for(condition: Callable[[], object], seconds: float) -> bool:
    """Poll ``condition`` (every 50 ms) until it holds or ``seconds`` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


async def wait_until(condition: Callable[[], object], seconds: float) -> bool:
    """``wait_for`` inside an event loop: poll every 20 ms, yielding to the loop between."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# Builders, not tests (their names start with "test_" for readability at call sites).
test_keys.__test__ = False  # type: ignore[attr-defined]
test_params.__test__ = False  # type: ignore[attr-defined]


def rejection(chain: Chain, tx: Transaction, at: int | None = None) -> Exception:
    """The named error the block builder gets when it applies ``tx`` on the head (in a block
    timestamped ``at``, by default the clock's now)."""
    vtx = validate_transaction(tx, chain.params, chain.chain_id)
    template = chain.build_block(PrivateKey.from_label("test-miner").address, [vtx], now=at, timestamp=at)
    assert template.rejected, "the transaction was accepted"
    return template.rejected[0][1]


def register_identity(chain: Chain, key: PrivateKey, nonce: int = 0) -> Transaction:
    from gridnet.identity import find_identity_proof
    from gridnet.ledger.txs.identity import RegisterIdentity

    proof = find_identity_proof(key.address, chain.params.identity_target_int)
    return sign(chain, key, RegisterIdentity(proof), nonce)


class Actors:
    """Signs for a set of keys, each with its next nonce, on one chain."""

    def __init__(self, chain: Chain, keys: Iterable[PrivateKey]) -> None:
        self.chain = chain
        self.nonce = {k.address: 0 for k in keys}

    def tx(self, key: PrivateKey, payload: Payload) -> Transaction:
        """A signed transaction that uses up ``key``'s next nonce."""
        tx = self.pending(key, payload)
        self.nonce[key.address] += 1
        return tx

    def pending(self, key: PrivateKey, payload: Payload) -> Transaction:
        """A signed transaction with ``key``'s next nonce, without using it up."""
        return sign(self.chain, key, payload, self.nonce[key.address])

    def mine(self, *txs: Transaction) -> None:
        extend(self.chain, list(txs))

    def refused(self, key: PrivateKey, payload: Payload, at: int | None = None) -> Exception:
        """The named error block building gets for ``payload`` signed by ``key`` (in a block
        timestamped ``at``, by default the clock's now)."""
        return rejection(self.chain, self.pending(key, payload), at)


def supply(chain: Chain) -> int:
    """Every coin there is: balances, bonds and unbonding coin of all accounts (the unbonding
    queues hold the same coin as the accounts' ``unbonding``)."""
    view = chain.view()
    total = 0
    for key in chain.values:
        if key.startswith(ACCOUNTS.prefix):
            acct = view.account(key[len(ACCOUNTS.prefix) :])
            total += acct.balance + acct.bonded + acct.unbonding
    return total


def processes_using(path: Path) -> list[str]:
    """Command lines of the running processes that name ``path`` (their data directories)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if str(path) in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


class _WatchedCache(SignatureCache):
    """A signature cache that remembers which of its entries answered a check."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: set[bytes] = set()

    def __contains__(self, key: bytes) -> bool:
        found = super().__contains__(key)
        if found:
            self.answered.add(key)
        return found


@contextlib.contextmanager
def store_locked(chain: Chain) -> Iterator[None]:
    """Another writer holds the write lock of ``chain``'s store file (a real lock): its writes
    fail within 0.1 s ("database is locked")."""
    other = sqlite3.connect(chain.store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    chain.store.db.execute("PRAGMA busy_timeout=100")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@contextlib.contextmanager
def ahead_checks_answered(tx: Transaction, chain: Chain) -> Iterator[None]:
    """The checks a node makes ahead for ``tx``'s payload (``ahead_checks``: ``TxRules.carried``,
    and ``TxRules.keyed`` with ``chain``'s head state) are verified into a fresh signature cache
    made current for the block; at its end each must have answered a check of the rules run
    meanwhile: they are the very checks the rules make (one that differs in its message, key
    or domain would be verified for nothing)."""
    checks = ahead_checks(tx, chain.chain_id, chain.view())
    assert checks, "the payload carries no signature checks"
    cache = _WatchedCache()
    with cache.active():
        assert all(verify_many(checks))
        yield
    missed = [c for c in checks if cache.key(*c) not in cache.answered]
    assert not missed, f"{len(missed)} of {len(checks)} checks made ahead were not the rules' own"


# --- traders: identities with meters, as a node's order book requires -------------------

METER_MAKER = PrivateKey.from_label("test-meter-maker")
"""The manufacturer that certifies ``register_traders``' meters (fund it in the genesis)."""


def meter_key_of(trader: PrivateKey) -> PrivateKey:
    """The key of ``trader``'s meter (``register_traders``)."""
    return PrivateKey.from_label(f"test-meter-of-{trader.address.hex()}")


def meter_of(trader: PrivateKey) -> bytes:
    """The id of ``trader``'s meter (``register_traders``)."""
    return meter_key_of(trader).address


def register_traders(chain: Chain, traders: Sequence[PrivateKey], area: str = "north") -> list[Block]:
    """Mine onto ``chain`` (its genesis funds ``METER_MAKER`` and ``traders``, whose nonces
    start at 0) the identities of the maker and the traders, the maker a manufacturer, and a
    meter of each trader's (``meter_of``) registered to it in ``area``; the blocks, to add to
    other nodes' chains of the same genesis (any chain of it gets the same blocks)."""
    from gridnet.ledger.txs.authority import RegisterAuthority
    from gridnet.ledger.txs.meter import registration
    from gridnet.meter.certificate import issue_certificate
    from gridnet.security.roles import Role

    blocks = [extend(chain, [register_identity(chain, k) for k in (METER_MAKER, *traders)])]
    blocks.append(
        extend(chain, [sign(chain, METER_MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Test"), 1)])
    )
    txs = []
    for k in traders:
        meter = meter_key_of(k)
        cert = issue_certificate(
            METER_MAKER, meter.public_key, vendor="Acme", model="M", firmware="1", serial=meter.address.hex()
        )
        txs.append(sign(chain, k, registration(meter, cert, area, k.address, chain.chain_id), 1))
    blocks.append(extend(chain, txs))
    return blocks


def add_blocks(chain: Chain, blocks: Iterable[Block]) -> None:
    for b in blocks:
        chain.add_block(b, now=b.header.timestamp)
