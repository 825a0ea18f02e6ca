"""Audit: re-validate a stored chain from genesis (``gridnet chain verify``).

Reads the store read-only, replays every main-chain block through the same
``apply_block`` a node uses, into a fresh in-memory state, and finally compares
the replayed state with the stored one. Reports the first bad height and rule.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gridnet.crypto.hashing import header_hash
from gridnet.encoding import decode, encode
from gridnet.errors import (
    DecodeError,
    GridnetError,
    HashMismatch,
    IndexMismatch,
    MissingBlock,
    StateMismatch,
    StoreCorrupt,
    StoreError,
    SupplyMismatch,
    UndoMismatch,
)
from gridnet.ledger import supply
from gridnet.ledger.blocks import Block, BlockBody, Header
from gridnet.ledger.chain import UndoRecord
from gridnet.ledger.commitment import CommitUndo, StateCommitment
from gridnet.ledger.genesis import genesis_block, genesis_state
from gridnet.ledger.params import ChainParams
from gridnet.ledger.pow import median_time, next_target
from gridnet.ledger.state import StateView
from gridnet.ledger.store import Store
from gridnet.ledger.supply import SupplyAccount
from gridnet.ledger.transition import HeaderContext, apply_block
from gridnet.system import fewer_gc_passes
from gridnet.units import Hash32

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
    supply: SupplyAccount | None = None
    """Where the coin is at the head (``ledger/supply.py``; None when the replay failed)."""

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
    store = Store(data_dir, readonly=True)
    try:
        with store.snapshot(), fewer_gc_passes():  # a consistent chain, also beside a running node
            return Replay().finish(store, progress)
    finally:
        store.close()


@dataclass(slots=True)
class _Undo:
    """What takes the replay back to before one block."""

    restore: dict[bytes, bytes | None]
    """The values the block's changes replaced (None: the key was absent)."""
    commit_undo: CommitUndo
    txs: int


class Replay:
    """The audit of a stored chain, kept up with it as it grows (``advance``) and finished
    when it is complete (``finish``): the same replay from genesis as ``verify_chain``, done
    a part at a time, beside the node that writes the chain. When the stored main chain
    turns out to have changed below what was replayed (a reorganisation), the replay steps
    back to where they agree (up to ``UNDO_DEPTH`` blocks; from genesis again beyond) and
    goes on from there. ``seconds`` in its reports is the time spent replaying, not waiting."""

    UNDO_DEPTH = 64
    """Blocks the replay can step back without starting again from genesis."""

    def __init__(self) -> None:
        self._start: tuple[ChainParams, Block, Hash32] | None = None
        """The chain's parameters, genesis block and id (read from the store once)."""
        self.hashes: list[Hash32] = []
        """The main-chain block replayed at each height."""
        self.headers: list[Header] = []
        self.values: dict[bytes, bytes] = {}
        self.commitment = StateCommitment()
        self.transactions = 0
        self.seconds = 0.0
        self._undo: deque[_Undo] = deque(maxlen=self.UNDO_DEPTH)
        self._failed: tuple[VerifyReport, Hash32] | None = None
        """The first failure and the block it is at (final while that block stays there)."""

    def advance(
        self,
        store: Store,
        *,
        behind: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> VerifyReport | None:
        """Replay the stored main chain's blocks not replayed yet, but the last ``behind``
        (a reorganisation seldom reaches that deep); call inside ``store.snapshot()``. A
        failure, once found, is returned (and replaying stops there)."""
        started = time.perf_counter()
        try:
            return self._advance(store, behind, progress)
        except StoreCorrupt as exc:  # (met reading the index or the parameters: no block to name)
            return self._fail(len(self.hashes), exc)
        finally:
            self.seconds += time.perf_counter() - started

    def finish(self, store: Store, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Replay what is left, then compare the stored head and state with the replay, and
        account for the chain's coin (``ledger/supply.py``)."""
        failed = self.advance(store, progress=progress)
        if failed is not None:
            return failed
        started = time.perf_counter()
        try:
            head = store.get_meta("head")
            if not self.hashes or head != self.hashes[-1]:
                return self._fail(
                    len(self.hashes), HashMismatch("stored head is not the last block of the main chain")
                )
            stored = dict(store.state_items())
            if stored != self.values:
                differing = len(set(stored.items()) ^ set(self.values.items()))
                return self._fail(
                    len(self.hashes) - 1,
                    StateMismatch(f"stored state differs from the replay in {differing} entries"),
                )
            for _ in store.block_rows():  # (side blocks' rows too, each read as opening reads it)
                pass
            store.pending()  # (as a node reads them when it starts)
            height = len(self.hashes) - 1
            assert self._start is not None, "a replay that advanced read the chain's parameters"
            try:  # (the coin is all there: the rules neither made nor lost any)
                coin = supply.check(self._start[0], height, self.values)
            except SupplyMismatch as exc:
                return self._fail(height, exc)
        except StoreCorrupt as exc:
            return self._fail(len(self.hashes) - 1, exc)
        finally:
            self.seconds += time.perf_counter() - started
        return VerifyReport(True, height, len(self.hashes), self.transactions, self.seconds, supply=coin)

    def _fail(self, height: int, error: GridnetError) -> VerifyReport:
        message = error.finding if isinstance(error, StoreCorrupt) else str(error)
        return VerifyReport(
            False, height, len(self.headers), self.transactions, self.seconds, height, error.rule, message
        )

    def _begin(self, store: Store) -> tuple[ChainParams, Block, Hash32] | VerifyReport:
        if self._start is None:
            raw_params = store.get_meta("params")
            if raw_params is None:
                raise StoreError(f"{store.data_dir} has no chain parameters")
            try:
                params = decode(raw_params, ChainParams)
            except DecodeError as exc:
                return VerifyReport(False, 0, 0, 0, self.seconds, 0, exc.rule, f"chain parameters: {exc}")
            genesis = genesis_block(params)
            self._start = (params, genesis, header_hash(encode(genesis.header)))
        params, genesis, chain_id = self._start
        if store.get_meta("genesis") != chain_id:
            return self._fail(0, HashMismatch("stored genesis hash does not match the chain parameters"))
        return self._start

    def _advance(
        self, store: Store, behind: int, progress: Callable[[int, int], None] | None
    ) -> VerifyReport | None:
        start = self._begin(store)
        if isinstance(start, VerifyReport):
            return start
        params, genesis, chain_id = start
        main = list(store.main_rows())
        self._rewind([h for _, h, _ in main])
        if self._failed is not None:
            return self._failed[0]
        if not self.hashes:
            self.values = genesis_state(params)
            self.commitment = StateCommitment.from_items(self.values.items())
        total = len(main)
        for height, h, txs in main[len(self.hashes) : max(len(self.hashes), total - behind)]:
            expected_height = len(self.hashes)
            try:
                if height != expected_height:
                    raise MissingBlock(f"main chain skips height {expected_height}")
                self._replay(store, params, genesis, chain_id, height, h, txs)
            except GridnetError as exc:
                self._failed = (self._fail(expected_height, exc), h)
                return self._failed[0]
            if progress is not None:
                progress(height + 1, total)
        return None

    def _rewind(self, main: list[Hash32]) -> None:
        """Step back to the last height where the replay and the stored main chain agree
        (a block's hash fixes all below it); a failure stands while its block is there."""
        agree = min(len(self.hashes), len(main))
        while agree > 0 and self.hashes[agree - 1] != main[agree - 1]:
            agree -= 1
        if self._failed is not None:
            report, h = self._failed
            at = report.bad_height if report.bad_height is not None else len(self.hashes)
            if agree < len(self.hashes) or at >= len(main) or main[at] != h:
                self._failed = None
        if agree == len(self.hashes):
            return
        if len(self.hashes) - agree > len(self._undo):
            self.hashes, self.headers, self.transactions = [], [], 0
            self._undo.clear()
            return
        while len(self.hashes) > agree:
            undo = self._undo.pop()
            self.commitment.revert(undo.commit_undo)
            for k, v in undo.restore.items():
                if v is None:
                    self.values.pop(k, None)
                else:
                    self.values[k] = v
            self.transactions -= undo.txs
            self.hashes.pop()
            self.headers.pop()

    def _replay(
        self,
        store: Store,
        params: ChainParams,
        genesis: Block,
        chain_id: Hash32,
        height: int,
        h: Hash32,
        txs: int,
    ) -> None:
        """Replay the main-chain block ``h`` at ``height``, whose main row counts ``txs``."""
        row = store.block_row(h)
        if row is None:
            raise MissingBlock(f"block {height} is in the main index but not stored")
        stored_height, raw_header, raw_body, invalid = row
        if header_hash(raw_header) != h:
            raise HashMismatch(f"block {height}: stored header does not hash to {h.hex()[:16]}")
        try:
            header = decode(raw_header, Header)
            body = decode(raw_body, BlockBody, max_bytes=MAX_BLOCK_DECODE, what="block body")
        except DecodeError as exc:
            raise type(exc)(f"block {height} does not decode: {exc}") from None
        if stored_height != height:
            raise IndexMismatch(f"block {height} is stored as a block of height {stored_height}")
        if invalid:
            raise IndexMismatch(f"block {height} of the main chain is stored marked invalid")
        signed = max(len(body.txs) - 1, 0)  # (the coinbase aside; genesis has none)
        if txs != signed:
            raise IndexMismatch(
                f"block {height}: the main chain index counts {txs} signed transactions, the block holds "
                f"{signed}"
            )
        if height == 0:
            if header != genesis.header or body.txs or body.votes:
                raise HashMismatch("stored genesis block differs from the chain parameters")
            self.hashes.append(h)
            self.headers.append(header)
            return
        headers = self.headers
        parent = headers[-1]
        ctx = HeaderContext(
            params=params,
            chain_id=chain_id,
            parent_hash=self.hashes[height - 1],
            parent_height=parent.height,
            expected_target=next_target(params, parent, lambda i: headers[i].timestamp),
            median_time_past=median_time([x.timestamp for x in headers[-params.median_time_span :]]),
            now=AUDIT_CLOCK,
            parent_timestamp=parent.timestamp,
            parent_justified=parent.justified,
        )
        block = Block(header, body.txs, body.votes)
        values = self.values
        result = apply_block(StateView(values), self.commitment, block, ctx, encoded_size=len(encode(block)))
        restore = {k: values.get(k) for k in result.changes}
        check_undo(store, height, h, restore)
        for k, v in result.changes.items():
            if v is None:
                values.pop(k, None)
            else:
                values[k] = v
        self.transactions += txs  # signed transactions (the coinbase aside; checked above)
        self._undo.append(_Undo(restore, result.commit_undo, txs))
        self.hashes.append(h)
        headers.append(header)


def check_undo(store: Store, height: int, h: Hash32, restore: dict[bytes, bytes | None]) -> None:
    """The stored undo record of block ``h`` at ``height`` must restore what the block's changes
    replaced (``restore``): a reorganisation takes the state back through it."""
    raw = store.get_undo(h)
    if raw is None:
        raise UndoMismatch(f"block {height} has no undo record")
    try:
        record = decode(raw, UndoRecord)
    except DecodeError as exc:
        raise UndoMismatch(f"block {height}: its undo record does not decode: {exc}") from None
    restored = dict(zip(record.keys, record.values, strict=False))
    if len(record.keys) != len(record.values) or restored != restore:
        raise UndoMismatch(
            f"block {height}: its undo record does not restore the state of block {height - 1}"
        )
