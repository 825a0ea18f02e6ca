"""Audit: re-validate a stored chain from genesis (``gridnet chain verify``).

Reads the store read-only, replays every main-chain block through the same
``apply_block`` a node uses, into a fresh in-memory state, and finally compares
the replayed state with the stored one. Reports the first bad height and rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gridnet.crypto.hashing import header_hash
from gridnet.encoding import decode, encode
from gridnet.errors import DecodeError, GridnetError, HashMismatch, MissingBlock, StateMismatch, StoreError
from gridnet.ledger.blocks import Block, BlockBody, Header
from gridnet.ledger.commitment import StateCommitment
from gridnet.ledger.genesis import genesis_block, genesis_state
from gridnet.ledger.params import ChainParams
from gridnet.ledger.pow import median_time, next_target
from gridnet.ledger.state import StateView
from gridnet.ledger.store import Store
from gridnet.ledger.transition import HeaderContext, apply_block
from gridnet.system import fewer_gc_passes

MAX_BLOCK_DECODE = 64 * 1024 * 1024


@dataclass(slots=True)
class VerifyReport:
    ok: bool
    height: int
    """Height of the stored head (or the last height checked when invalid)."""
    blocks: int
    transactions: int
    """Signed transactions replayed (coinbases not counted)."""
    seconds: float
    bad_height: int | None = None
    rule: str | None = None
    message: str | None = None

    @property
    def tx_per_s(self) -> float:
        return self.transactions / self.seconds if self.seconds > 0 else 0.0


# The future-timestamp bound is a rule of *arrival*: a node refuses a block stamped too
# far ahead of its own clock when the block arrives. History has no arrival time, so the
# audit checks every other rule and leaves that one out (any clock would do otherwise).
AUDIT_CLOCK = 2**62


def verify_chain(
    data_dir: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Replay the chain in ``data_dir`` from genesis; never raises for an invalid chain."""
    started = time.perf_counter()
    now = AUDIT_CLOCK
    store = Store(data_dir, readonly=True)
    try:
        with store.snapshot(), fewer_gc_passes():  # a consistent chain, also beside a running node
            return _verify(store, now, started, progress)
    finally:
        store.close()


def _verify(
    store: Store, now: int, started: float, progress: Callable[[int, int], None] | None
) -> VerifyReport:
    raw_params = store.get_meta("params")
    if raw_params is None:
        raise StoreError(f"{store.data_dir} has no chain parameters")
    try:
        params = decode(raw_params, ChainParams)
    except DecodeError as exc:
        return VerifyReport(
            False, 0, 0, 0, time.perf_counter() - started, 0, exc.rule, f"chain parameters: {exc}"
        )
    genesis = genesis_block(params)
    chain_id = header_hash(encode(genesis.header))
    main = list(store.main_hashes())
    total = len(main)
    headers: list[Header] = []
    values = genesis_state(params)
    commitment = StateCommitment.from_items(values.items())
    n_txs = 0

    def fail(height: int, error: GridnetError) -> VerifyReport:
        elapsed = time.perf_counter() - started
        return VerifyReport(False, height, len(headers), n_txs, elapsed, height, error.rule, str(error))

    if store.get_meta("genesis") != chain_id:
        return fail(0, HashMismatch("stored genesis hash does not match the chain parameters"))
    for expected_height, (height, h) in enumerate(main):
        if height != expected_height:
            return fail(expected_height, MissingBlock(f"main chain skips height {expected_height}"))
        data = store.block_data(h)
        if data is None:
            return fail(height, MissingBlock(f"block {height} is in the main index but not stored"))
        raw_header, raw_body = data
        try:
            if header_hash(raw_header) != h:
                raise HashMismatch(f"block {height}: stored header does not hash to {h.hex()[:16]}")
            try:
                header = decode(raw_header, Header)
                body = decode(raw_body, BlockBody, max_bytes=MAX_BLOCK_DECODE, what="block body")
            except DecodeError as exc:
                raise type(exc)(f"block {height} does not decode: {exc}") from None
            if height == 0:
                if header != genesis.header or body.txs or body.votes:
                    raise HashMismatch("stored genesis block differs from the chain parameters")
            else:
                parent = headers[-1]
                ctx = HeaderContext(
                    params=params,
                    chain_id=chain_id,
                    parent_hash=main[height - 1][1],
                    parent_height=parent.height,
                    expected_target=next_target(params, parent, lambda i: headers[i].timestamp),
                    median_time_past=median_time([x.timestamp for x in headers[-params.median_time_span :]]),
                    now=now,
                    parent_timestamp=parent.timestamp,
                    parent_justified=parent.justified,
                )
                block = Block(header, body.txs, body.votes)
                result = apply_block(
                    StateView(values), commitment, block, ctx, encoded_size=len(encode(block))
                )
                for k, v in result.changes.items():
                    if v is None:
                        values.pop(k, None)
                    else:
                        values[k] = v
                n_txs += len(body.txs) - 1  # signed transactions (the coinbase aside)
        except GridnetError as exc:
            return fail(height, exc)
        headers.append(header)
        if progress is not None:
            progress(height + 1, total)
    head = store.get_meta("head")
    if not main or head != main[-1][1]:
        return fail(len(main), HashMismatch("stored head is not the last block of the main chain"))
    stored = dict(store.state_items())
    if stored != values:
        differing = len(set(stored.items()) ^ set(values.items()))
        return fail(
            len(main) - 1, StateMismatch(f"stored state differs from the replay in {differing} entries")
        )
    return VerifyReport(True, len(main) - 1, len(main), n_txs, time.perf_counter() - started)
