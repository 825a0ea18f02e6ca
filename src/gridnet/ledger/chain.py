"""The chain: block index, fork choice by most cumulative work, reorgs, state.

``Chain.add_block`` is the one way blocks enter: it checks the header against
its ancestors, stores the block, and when the block's branch has more work than
the current head it switches to it: disconnecting blocks through their stored
undo records and connecting the new ones through ``apply_block``, all in one
SQLite transaction (and, in memory, all-or-nothing as well).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from msgspec.structs import replace

from gridnet.crypto.hashing import header_hash, vote_id
from gridnet.encoding import Wire, decode, decode_lenient, encode
from gridnet.errors import (
    BadMerkleRoot,
    BlockTooLarge,
    ConflictsWithFinal,
    DecodeError,
    InvalidBlock,
    InvalidTransaction,
    InvalidVote,
    KnownInvalid,
    StoreError,
    UndoMismatch,
    UnknownParent,
)
from gridnet.ledger.blocks import BLOCK_VERSION, Block, BlockBody, Checkpoint, Header, SignedVote, encode_body
from gridnet.ledger.commitment import CommitUndo, StateCommitment
from gridnet.ledger.genesis import genesis_block, genesis_state
from gridnet.ledger.merkle import merkle_root
from gridnet.ledger.params import RULES_VERSION, ChainParams, block_reward, validate_params
from gridnet.ledger.poa import (
    MAX_VOTES_PER_BLOCK,
    VOTE_BYTES,
    apply_set_change,
    apply_vote,
    begin_sealed_block,
    chain_weight,
    checkpoint_hash,
    finality,
    proposer_of,
    slot_of,
    validator_set,
)
from gridnet.ledger.pow import median_time, next_target
from gridnet.ledger.state import ACCOUNTS, Account, StateSource, StateView
from gridnet.ledger.store import Store
from gridnet.ledger.transactions import Transaction, tx_id
from gridnet.ledger.transition import (
    BlockResult,
    HeaderContext,
    VerifiedTx,
    apply_block,
    apply_coinbase,
    apply_transaction,
    check_tx_root,
    split_coinbase,
    start_block,
    validate_header,
)
from gridnet.ledger.txs.base import BlockEnv
from gridnet.ledger.txs.coinbase import Coinbase
from gridnet.units import Address, Hash32
from gridnet.work import target_from_bytes, work_of_target

MAX_BLOCK_DECODE = 64 * 1024 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True, eq=False)
class BlockEntry:
    """One known block in the index (main chain or side branch)."""

    hash: Hash32
    header: Header
    parent: BlockEntry | None
    total_work: int
    invalid: bool = False

    @property
    def height(self) -> int:
        return self.header.height


class AddStatus(enum.Enum):
    DUPLICATE = "duplicate"
    SIDE = "side"
    """Stored on a branch with less work than the head."""
    EXTENDED = "extended"
    """Connected on top of the head."""
    REORG = "reorg"
    """The head moved to another branch."""


@dataclass(slots=True)
class AddResult:
    status: AddStatus
    block_hash: Hash32
    connected: list[Block] = field(default_factory=list)
    """Blocks connected, in chain order."""
    disconnected: list[Block] = field(default_factory=list)
    """Blocks disconnected, head first (the reverse of chain order)."""


@dataclass(slots=True)
class Draft:
    """A proof-of-work block being built: the head's state with its transactions applied
    (the coinbase not), so that more can be added (``Chain.extend``)."""

    parent: Hash32
    view: StateView
    env: BlockEnv
    used: int
    """Bytes of the block's budget taken."""
    included: list[VerifiedTx]
    target: bytes


@dataclass(slots=True)
class BlockTemplate:
    block: Block
    included: list[VerifiedTx]
    rejected: list[tuple[VerifiedTx, InvalidTransaction]]
    timestamp_read: bool = True
    """Whether building it read the block's time (if not, ``Chain.restamp`` may move it)."""
    draft: Draft | None = field(default=None, repr=False)
    """What ``Chain.extend`` adds to (None on a permissioned chain)."""


class UndoRecord(Wire, frozen=True):
    """Values the block's changes replaced (None = key did not exist)."""

    keys: tuple[bytes, ...]
    values: tuple[bytes | None, ...]


_ABSENT = object()


@dataclass(slots=True)
class _Sealed:
    """The last template sealed on the head: its state changes, left applied to the
    commitment, and what reverts them; once its block is built, the block, the result of
    applying it, and (proof of work) the draft it came from with its view's journal length
    then (``Chain._adopt``)."""

    changes: dict[bytes, bytes | None]
    undo: CommitUndo
    block: Block | None = None
    result: BlockResult | None = None
    draft: Draft | None = None
    mark: int = 0


class _Overlay:
    """Pending changes (None = deleted) over the committed state, for reorgs."""

    def __init__(self, base: dict[bytes, bytes], pending: dict[bytes, bytes | None]) -> None:
        self.base = base
        self.pending = pending

    def get(self, key: bytes, /) -> bytes | None:
        v = self.pending.get(key, _ABSENT)
        if v is _ABSENT:
            return self.base.get(key)
        return v  # type: ignore[return-value]


class Chain:
    """A chain backed by one data directory."""

    def __init__(self, store: Store, params: ChainParams) -> None:
        self.store = store
        self.params = params
        genesis = genesis_block(params)
        self.chain_id: Hash32 = header_hash(encode(genesis.header))
        self.entries: dict[Hash32, BlockEntry] = {}
        self.main: list[BlockEntry] = []
        self.values: dict[bytes, bytes] = {}
        self._commitment = StateCommitment()
        self._sealed: _Sealed | None = None
        """The last template sealed on the head (``_template_root``)."""
        self._best: BlockEntry | None = None
        self._pruned_for: tuple[int, int, frozenset[Hash32]] | None = None
        """(height, index size, blocks kept) when side branches were last pruned: nothing
        more to prune until one of them changes."""
        self.tx_count = 0
        """Signed transactions in the main chain (kept up to date as blocks connect)."""
        self._load(genesis)

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def create(cls, data_dir: Path, params: ChainParams) -> Chain:
        validate_params(params, f"the genesis of {data_dir}")
        store = Store(data_dir, create=True)
        try:
            if store.get_meta("params") is not None:
                raise StoreError(f"{data_dir} already holds a chain; choose an empty directory")
            genesis = genesis_block(params)
            gh = header_hash(encode(genesis.header))
            state = genesis_state(params)
            store.begin()
            store.set_meta("params", encode(params))
            store.set_meta("rules", str(RULES_VERSION).encode())
            store.set_meta("genesis", gh)
            store.put_block(gh, 0, encode(genesis.header), encode_body(genesis))
            store.connect(gh, 0, dict(state), encode(UndoRecord((), ())), [])
            store.set_meta("head", gh)
            store.commit()
            return cls(store, params)
        except BaseException:
            store.rollback()
            store.close()  # (and with it the data directory's lock)
            raise

    @classmethod
    def open(cls, data_dir: Path, *, readonly: bool = False) -> Chain:
        """Open the chain of ``data_dir``: as its writer (holding the data directory's
        lock), or ``readonly`` — a snapshot of what is committed now, also while another
        process (a running node) writes it."""
        store = Store(data_dir, readonly=readonly)
        try:
            with store.snapshot():
                raw = store.get_meta("params")
                if raw is None:
                    raise StoreError(f"{data_dir} has no chain parameters; run 'gridnet chain init' first")
                return cls(store, decode(raw, ChainParams))
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def _load(self, genesis: Block) -> None:
        stored_genesis = self.store.get_meta("genesis")
        if stored_genesis != self.chain_id:
            raise self.store.corrupt("the stored genesis does not match the stored chain parameters")
        for h, raw_header, invalid in self.store.block_rows():
            if header_hash(raw_header) != h:
                raise self.store.corrupt(f"the header stored as block {h.hex()[:16]} does not hash to it")
            header = decode_lenient(raw_header, Header)
            parent = self.entries.get(header.prev_hash)
            if parent is None and header.height != 0:
                continue
            entry = BlockEntry(h, header, parent, self.weight(parent.total_work if parent else 0, header))
            entry.invalid = bool(invalid) or (parent is not None and parent.invalid)
            self.entries[h] = entry
        tx_count = 0
        for height, h, txs in self.store.main_rows():
            if height != len(self.main) or h not in self.entries:
                raise self.store.corrupt(f"the main chain index is broken at height {height}")
            self.main.append(self.entries[h])
            tx_count += txs
        head = self.store.get_meta("head")
        if not self.main or head != self.main[-1].hash:
            raise self.store.corrupt("the stored head does not match the main chain index")
        self.values = dict(self.store.state_items())
        self.tx_count = tx_count
        self._commitment = StateCommitment.from_items(self.values.items())
        self._sealed = None
        if self._commitment.root != self.head.header.state_root:
            raise self.store.corrupt("the stored state does not match the head's state root")

    # --- queries ---------------------------------------------------------------------------

    @property
    def commitment(self) -> StateCommitment:
        """The commitment to the head's state (a template's changes left applied to it are
        reverted first)."""
        if self._sealed is not None:
            self._commitment.revert(self._sealed.undo)
            self._sealed = None
        return self._commitment

    @property
    def head(self) -> BlockEntry:
        return self.main[-1]

    @property
    def height(self) -> int:
        return self.main[-1].height

    def account(self, address: Address) -> Account:
        raw = self.values.get(ACCOUNTS.key(address))
        return Account(balance=0) if raw is None else decode_lenient(raw, Account)

    def view(self) -> StateView:
        return StateView(self.values)

    def get_block(self, block_hash: Hash32) -> Block | None:
        """The stored block ``block_hash`` (None: not stored), checked against its key and its
        header's transaction root before anyone is given it: a damaged store is StoreCorrupt,
        never served to a peer or a client."""
        data = self.store.block_data(block_hash)
        if data is None:
            return None
        named = block_hash.hex()[:16]
        if header_hash(data[0]) != block_hash:
            raise self.store.corrupt(f"the header stored as block {named} does not hash to it")
        try:
            header = decode_lenient(data[0], Header)
            body = decode_lenient(data[1], BlockBody, max_bytes=MAX_BLOCK_DECODE)
        except DecodeError as exc:
            raise self.store.corrupt(f"block {named} does not read back ({exc})") from None
        block = Block(header, body.txs, body.votes)
        try:
            check_tx_root(block)
        except BadMerkleRoot:
            raise self.store.corrupt(
                f"block {header.height} {named}: its transactions are not its header's"
            ) from None
        return block

    def block_at(self, height: int) -> Block | None:
        if not 0 <= height < len(self.main):
            return None
        return self.get_block(self.main[height].hash)

    def is_main(self, entry: BlockEntry) -> bool:
        return entry.height < len(self.main) and self.main[entry.height] is entry

    def ancestor(self, entry: BlockEntry, height: int) -> BlockEntry:
        if self.is_main(entry):
            return self.main[height]
        e: BlockEntry | None = entry
        while e is not None and e.height > height:
            if self.is_main(e):
                return self.main[height]
            e = e.parent
        assert e is not None and e.height == height
        return e

    def best_tip(self) -> BlockEntry:
        """The known valid block with the most cumulative work (the head, or a side
        block whose branch is still being downloaded)."""
        if self._best is None:
            self._best = max(
                (e for e in self.entries.values() if not e.invalid),
                key=lambda e: (e.total_work, e is self.head),
            )
        return self._best

    def locator(self, tip: BlockEntry | None = None) -> list[Hash32]:
        """Hashes back from ``tip`` (default: the best known tip): dense near it, then
        exponentially sparse, ending at genesis. A peer answers with the main-chain blocks
        that follow the first of them it has on its main chain."""
        hashes = []
        entry: BlockEntry | None = tip or self.best_tip()
        step = 1
        while entry is not None:
            hashes.append(entry.hash)
            if entry.height == 0:
                break
            if len(hashes) >= 10:
                step *= 2
            entry = self.ancestor(entry, max(0, entry.height - step))
        return hashes

    # --- fork choice and finality ------------------------------------------------------------

    def weight(self, parent_weight: int, header: Header) -> int:
        """What fork choice compares for the branch ending at ``header`` (``total_work``):
        cumulative work, or on a permissioned chain justification then height."""
        return chain_weight(
            self.params, parent_weight, header, work_of_target(target_from_bytes(header.target))
        )

    def finalized(self) -> Checkpoint | None:
        """The main chain's last final block (permissioned chain; None on proof-of-work)."""
        if not self.params.permissioned:
            return None
        record = finality(self.view())
        return replace(record.finalized, hash=checkpoint_hash(record.finalized, self.chain_id))

    def justified(self) -> Checkpoint | None:
        if not self.params.permissioned:
            return None
        record = finality(self.view())
        return replace(record.justified, hash=checkpoint_hash(record.justified, self.chain_id))

    def check_final(self, header: Header, parent: BlockEntry) -> None:
        """Refuse a block whose branch leaves the main chain below its last final block
        (``ConflictsWithFinal``): no reorg ever reverts a final block."""
        final = self.finalized()
        if final is None or final.height == 0:
            return
        if header.height <= final.height or self.ancestor(parent, final.height).hash != final.hash:
            raise ConflictsWithFinal(
                f"block {header.height} is on a branch without the final block {final.height} "
                f"{final.hash.hex()[:16]}"
            )

    # --- header context --------------------------------------------------------------------

    def expected_target(self, parent: BlockEntry) -> bytes:
        return next_target(self.params, parent.header, lambda h: self.ancestor(parent, h).header.timestamp)

    def median_time_past(self, parent: BlockEntry) -> int:
        stamps: list[int] = []
        e: BlockEntry | None = parent
        while e is not None and len(stamps) < self.params.median_time_span:
            stamps.append(e.header.timestamp)
            e = e.parent
        return median_time(stamps)

    def header_context(self, parent: BlockEntry, now: int) -> HeaderContext:
        return HeaderContext(
            params=self.params,
            chain_id=self.chain_id,
            parent_hash=parent.hash,
            parent_height=parent.height,
            expected_target=self.expected_target(parent),
            median_time_past=self.median_time_past(parent),
            now=now,
            parent_timestamp=parent.header.timestamp,
            parent_justified=parent.header.justified,
        )

    # --- adding blocks ---------------------------------------------------------------------

    def add_block(self, block: Block, *, now: int | None = None, encoded: bytes | None = None) -> AddResult:
        """Validate and store ``block``; move the head if its branch has the most work."""
        now = now_ms() if now is None else now
        header = block.header
        h = header_hash(encode(header))
        known = self.entries.get(h)
        if known is not None:
            if known.invalid:
                raise KnownInvalid(f"block {header.height} {h.hex()[:16]} was already found invalid")
            return AddResult(AddStatus.DUPLICATE, h)
        parent = self.entries.get(header.prev_hash)
        if parent is None:
            raise UnknownParent(
                f"block {header.height} builds on unknown parent {header.prev_hash.hex()[:16]}"
            )
        if parent.invalid:
            raise KnownInvalid(f"block {header.height} builds on an invalid block")
        size = len(encoded) if encoded is not None else len(encode(block))
        if size > self.params.max_block_bytes:
            raise BlockTooLarge(f"block {header.height} is {size} bytes; limit {self.params.max_block_bytes}")
        validate_header(header, self.header_context(parent, now))
        self.check_final(header, parent)
        entry = BlockEntry(h, header, parent, self.weight(parent.total_work, header))
        if entry.total_work <= self.head.total_work:
            check_tx_root(block)  # never store a body that is not the header's own
            self.store.put_block(h, header.height, encode(header), encode_body(block))
            self._index(entry)
            return AddResult(AddStatus.SIDE, h)
        best = self._best
        self._index(entry)
        try:
            return self._activate(entry, {h: (block, size)}, now)
        except BaseException:
            if not entry.invalid:
                # Not stored (a body that is not the header's, or a storage error):
                # forget it, so the real block can still come.
                del self.entries[h]
                self._best = None
            elif best is not None and not best.invalid:
                self._best = best  # (only it was found invalid: the best tip is what it was)
            raise

    def _index(self, entry: BlockEntry) -> None:
        self.entries[entry.hash] = entry
        best = self._best
        if best is not None and entry.total_work > best.total_work:
            self._best = entry

    def _activate(self, tip: BlockEntry, cache: dict[Hash32, tuple[Block, int]], now: int) -> AddResult:
        """Make ``tip`` the head; ``cache`` holds blocks (and encoded sizes) not yet stored."""
        old_head = self.head
        # Find the fork point and the two paths.
        to_connect: list[BlockEntry] = []
        e: BlockEntry | None = tip
        while e is not None and not self.is_main(e):
            to_connect.append(e)
            e = e.parent
        assert e is not None, "every branch descends from genesis"
        fork = e
        to_connect.reverse()
        to_disconnect = self.main[fork.height + 1 :][::-1]

        pending: dict[bytes, bytes | None] = {}
        # Extending the head by one block reads the committed state directly; anything
        # longer reads pending changes over it.
        single = not to_disconnect and len(to_connect) == 1
        overlay: StateSource = self.values if single else _Overlay(self.values, pending)
        commit_undos: list[CommitUndo] = []
        disconnected: list[Block] = []
        connected: list[Block] = []
        failing: BlockEntry | None = None
        store = self.store
        store.begin()
        try:
            for d in to_disconnect:
                named = f"block {d.height} {d.hash.hex()[:16]}"
                block = self.get_block(d.hash)
                if block is None:
                    raise store.corrupt(f"{named} of the main chain is missing")
                raw_undo = store.get_undo(d.hash)
                if raw_undo is None:
                    raise store.corrupt(f"{named}: its undo record is missing")
                try:
                    record = decode_lenient(raw_undo, UndoRecord)
                    restore = dict(zip(record.keys, record.values, strict=True))
                except (DecodeError, ValueError) as exc:
                    raise store.corrupt(f"{named}: its undo record does not decode ({exc})") from None
                commit_undos.append(self.commitment.update(restore))
                assert d.parent is not None  # (genesis is never disconnected)
                if self.commitment.root != d.parent.header.state_root:
                    raise store.corrupt(
                        f"{named}: its undo record does not restore the state of block {d.parent.height}",
                        UndoMismatch,
                    )
                pending.update(restore)
                store.disconnect(d.hash, d.height, restore)
                disconnected.append(block)
            for b in reversed(disconnected):  # pending again, in chain order (those the branch holds
                for t in b.txs[1:]:  # leave the table again as it connects)
                    store.add_pending(tx_id(t), encode(t), now)
            for c in to_connect:
                cached = cache.get(c.hash)
                if cached is None:
                    stored = self.get_block(c.hash)
                    if stored is None:
                        raise store.corrupt(f"block {c.height} {c.hash.hex()[:16]} of the branch is missing")
                    cached = (stored, len(encode(stored)))
                block, size = cached
                assert c.parent is not None
                ctx = self.header_context(c.parent, now)
                failing = c

                def write(result: BlockResult, c: BlockEntry = c, block: Block = block) -> None:
                    # In the store's open transaction, while the block's last signatures are
                    # checked: if one fails, the transaction is rolled back.
                    old = [overlay.get(k) for k in result.changes]
                    undo = encode(UndoRecord(tuple(result.changes), tuple(old)))
                    pending.update(result.changes)
                    store.put_block(c.hash, c.height, encode(block.header), encode_body(block))
                    store.connect(c.hash, c.height, result.changes, undo, result.txids)

                held = self._adopt(block, ctx, size) if single else None
                if held is not None:
                    result = held
                    commit_undos.append(result.commit_undo)  # (before writing: its changes are
                    write(result)  # on the commitment already, and a failed write reverts them)
                else:
                    result = apply_block(
                        StateView(overlay), self.commitment, block, ctx, encoded_size=size, meanwhile=write
                    )
                    commit_undos.append(result.commit_undo)
                connected.append(block)
            store.set_meta("head", tip.hash)
            store.commit()
        except BaseException as exc:
            store.rollback()
            for u in reversed(commit_undos):
                self.commitment.revert(u)
            if isinstance(exc, InvalidBlock) and not isinstance(exc, BadMerkleRoot) and failing is not None:
                self._mark_invalid(failing, stored=failing.hash not in cache)
                # A valid part of the branch may still carry more work than the old head.
                prefix = failing.parent
                if (
                    prefix is not None
                    and not self.is_main(prefix)
                    and prefix.total_work > old_head.total_work
                ):
                    self._activate(prefix, cache, now)
            raise
        values = self.values
        for k, v in pending.items():
            if v is None:
                values.pop(k, None)
            else:
                values[k] = v
        del self.main[fork.height + 1 :]
        self.main.extend(to_connect)
        self.tx_count += sum(len(b.txs) - 1 for b in connected) - sum(len(b.txs) - 1 for b in disconnected)
        status = AddStatus.EXTENDED if fork is old_head else AddStatus.REORG
        return AddResult(status, tip.hash, connected, disconnected)

    def prune_side_branches(self, depth: int, keep: Iterable[Hash32] = ()) -> int:
        """Forget every side block whose branch leaves the main chain ``depth`` or more blocks
        below the head (its row in the store and its index entry), in one SQLite transaction;
        returns how many. Side blocks ``keep`` names, and their ancestors, stay (a branch being
        downloaded). A reorg that deep fetches the branch again, headers first. The index is
        read only when the head, the index or ``keep`` changed since the last call."""
        limit = self.height - depth
        roots = frozenset(keep)
        if (
            limit < 0
            or len(self.entries) == len(self.main)
            or self._pruned_for == (self.height, len(self.entries), roots)
        ):
            return 0
        kept: set[Hash32] = set()
        for h in roots:
            e: BlockEntry | None = self.entries.get(h)
            while e is not None and not self.is_main(e) and e.hash not in kept:
                kept.add(e.hash)
                e = e.parent
        fork_height: dict[Hash32, int] = {}
        doomed: list[Hash32] = []
        for entry in self.entries.values():
            if self.is_main(entry) or entry.hash in kept:
                continue
            path: list[BlockEntry] = []
            e = entry
            while e is not None and not self.is_main(e) and e.hash not in fork_height:
                path.append(e)
                e = e.parent
            assert e is not None, "every branch descends from genesis"
            fork = fork_height.get(e.hash, e.height)
            for p in path:
                fork_height[p.hash] = fork
            if fork <= limit:
                doomed.append(entry.hash)
        if doomed:
            self.store.begin()
            try:
                self.store.delete_blocks(doomed)
                self.store.commit()
            except BaseException:
                self.store.rollback()
                raise
            for h in doomed:
                del self.entries[h]
            self._best = None
        self._pruned_for = (self.height, len(self.entries), roots)
        return len(doomed)

    def _mark_invalid(self, entry: BlockEntry, *, stored: bool) -> None:
        """Mark ``entry`` and every descendant invalid (in memory and in the store). Only a
        block ``stored`` before (a side block, now connected) may have descendants: the index
        is walked for them then, not for a block that has just arrived (a peer sending
        invalid blocks with valid proof of work must not cost a walk of the index each)."""
        entry.invalid = True
        self._best = None
        if not stored:
            return
        self.store.mark_invalid(entry.hash)
        for e in self.entries.values():
            p = e.parent
            while p is not None and not p.invalid and not self.is_main(p):
                p = p.parent
            if p is not None and p.invalid:
                e.invalid = True

    # --- building blocks -------------------------------------------------------------------

    def build_block(
        self,
        miner: Address,
        candidates: Iterable[VerifiedTx],
        *,
        now: int | None = None,
        timestamp: int | None = None,
        proposer: bytes = b"",
        votes: Iterable[SignedVote] = (),
    ) -> BlockTemplate:
        """An unmined block on the head with as many ``candidates`` as fit and apply.

        ``candidates`` must come in an order that respects each sender's nonces. On a
        permissioned chain the block is for the slot starting at ``timestamp``, proposed by
        the validator whose key is ``proposer`` (by default the slot's; it seals the header:
        ``poa.seal_header``),
        and carries those of ``votes`` that count on its branch.
        """
        now = now_ms() if now is None else now
        parent = self.head
        ctx = self.header_context(parent, now)
        ts = max(now if timestamp is None else timestamp, ctx.median_time_past + 1)
        height = parent.height + 1
        view = StateView(self.values)
        budget = self.params.max_block_bytes - 512
        used = 0
        counted: list[SignedVote] = []
        if self.params.permissioned:
            ts = now if timestamp is None else timestamp
            if not proposer:  # (a trial of what the slot's validator would build)
                proposer = proposer_of(validator_set(view).members, slot_of(self.params, ts)).key
            begin_sealed_block(view, self.params, height, parent.hash, parent.header.timestamp, ts, proposer)
            slot = slot_of(self.params, ts)
            for vote in votes:
                if len(counted) >= MAX_VOTES_PER_BLOCK or used + VOTE_BYTES > budget:
                    break
                mark = view.checkpoint()
                try:
                    apply_vote(view, self.chain_id, height, slot, vote)
                except InvalidVote:
                    view.rollback(mark)
                    continue
                counted.append(vote)
                used += VOTE_BYTES
            apply_set_change(view, slot)
        env = BlockEnv(self.params, self.chain_id, height, miner, ts)
        start_block(view, env)
        draft = Draft(parent.hash, view, env, used, [], ctx.expected_target)
        rejected = self._apply(draft, candidates, budget)
        return self._seal(draft, rejected, counted, proposer, permissioned=self.params.permissioned)

    def extend(
        self, template: BlockTemplate, candidates: Iterable[VerifiedTx], now: int
    ) -> BlockTemplate | None:
        """``template`` with those of ``candidates`` it does not hold added after its own
        transactions (as many as fit and apply), stamped at ``now``: a miner's template
        brought up to date with what arrived since, without applying again what it holds.
        None when it must be built again (off the head, or a rule read the block's time)."""
        draft = template.draft
        if draft is None or template.timestamp_read or draft.parent != self.head.hash:
            return None
        ts = max(now, self.median_time_past(self.head) + 1)
        if ts < draft.env.time_floor:
            return None
        held = {v.txid for v in draft.included}
        draft.env.restamp(ts)
        rejected = self._apply(
            draft, (v for v in candidates if v.txid not in held), self.params.max_block_bytes - 512
        )
        return self._seal(draft, rejected, [], b"", permissioned=False)

    def _apply(
        self, draft: Draft, candidates: Iterable[VerifiedTx], budget: int
    ) -> list[tuple[VerifiedTx, InvalidTransaction]]:
        """Apply as many of ``candidates`` as fit and apply to ``draft``; the rest refused."""
        view, env = draft.view, draft.env
        rejected: list[tuple[VerifiedTx, InvalidTransaction]] = []
        for vtx in candidates:
            if draft.used + vtx.size + 4 > budget:
                continue
            mark = view.checkpoint()
            try:
                apply_transaction(view, env, vtx)
            except InvalidTransaction as exc:
                view.rollback(mark)
                rejected.append((vtx, exc))
                continue
            draft.used += vtx.size + 4
            draft.included.append(vtx)
        return rejected

    def _seal(
        self,
        draft: Draft,
        rejected: list[tuple[VerifiedTx, InvalidTransaction]],
        counted: list[SignedVote],
        proposer: bytes,
        *,
        permissioned: bool,
    ) -> BlockTemplate:
        """The block of ``draft`` as it stands: its coinbase and header (the draft itself
        keeps no trace of the coinbase, so that more may be added to it)."""
        view, env = draft.view, draft.env
        height = env.height
        mark = view.checkpoint()
        coinbase = Transaction(
            payload=Coinbase(height=height, reward=block_reward(self.params, height), fees=env.fees),
            sender=b"",
            nonce=0,
            fee=0,
            signature=b"",
        )
        reward = apply_coinbase(view, env, coinbase)
        justified = finality(view).justified.slot if permissioned else 0
        changes = view.changes()
        root = self._template_root(changes)
        view.rollback(mark)
        included = list(draft.included)
        txids = [tx_id(coinbase)] + [v.txid for v in included] + [vote_id(encode(v)) for v in counted]
        header = Header(
            version=BLOCK_VERSION,
            height=height,
            prev_hash=draft.parent,
            tx_root=merkle_root(txids),
            state_root=root,
            timestamp=env.peek_timestamp(),
            target=draft.target,
            nonce=0,
            miner=env.miner,
            justified=justified,
            proposer=proposer,
        )
        block = Block(header, (coinbase, *(v.tx for v in included)), tuple(counted))
        sealed = self._sealed
        assert sealed is not None
        sealed.block = block
        sealed.result = BlockResult(changes, sealed.undo, txids[: len(included) + 1], env.fees, reward)
        if not permissioned:
            sealed.draft, sealed.mark = draft, mark
        return BlockTemplate(
            block, included, rejected, env.timestamp_read or permissioned, None if permissioned else draft
        )

    def _template_root(self, changes: dict[bytes, bytes | None]) -> Hash32:
        """The root of the head's state with ``changes``. They stay applied until the head's
        own commitment is wanted (``commitment``), so that the next template on this head
        (the same one extended, or built again) updates only the entries that differ."""
        self._leave_on_commitment(changes)
        return self._commitment.root

    def _leave_on_commitment(self, changes: dict[bytes, bytes | None]) -> CommitUndo:
        """Put the head's state with ``changes`` on the commitment, from whatever template's
        changes are on it: only the entries that differ are updated. They are the last
        sealed from now on; what reverts them all is returned."""
        sealed = self._sealed
        if sealed is None:
            undo = self._commitment.update(changes)
        else:
            last, undo = sealed.changes, sealed.undo
            delta = {k: v for k, v in changes.items() if last.get(k, _ABSENT) != v}
            for k in last.keys() - changes.keys():
                delta[k] = self.values.get(k)  # (back to the head's value)
            self._commitment.update(delta, undo)
        self._sealed = _Sealed(changes, undo)
        return undo

    def _adopt(self, block: Block, ctx: HeaderContext, size: int) -> BlockResult | None:
        """The result of applying ``block`` on the head when the last template sealed holds
        it already, without applying its transactions again; None for any other block (it
        is applied from scratch). Two cases:

        - the template, mined: the very transactions (the same tuple) under the same header
          but for its nonce. Sealing applied them and left their changes on the commitment,
          so they are the head's from now on;
        - another miner's block holding the template's transactions in its order
          (``_as_template``)."""
        sealed = self._sealed
        if sealed is None or sealed.block is None or sealed.result is None:
            return None
        if block.txs is sealed.block.txs and replace(block.header, nonce=0) == sealed.block.header:
            self._sealed = None
            return sealed.result
        return self._as_template(block, sealed, ctx, size)

    def _as_template(
        self, block: Block, sealed: _Sealed, ctx: HeaderContext, size: int
    ) -> BlockResult | None:
        """The result of ``block``, a block on the head from another miner, when its
        transactions are the last sealed template's, in the same order: the template's
        changes with the block's coinbase instead of the template's.

        Its transactions apply as they did in the template: on the same state, at the same
        height, and no rule reads the block's miner (only the coinbase does) nor, unless the
        template's ``timestamp_read``, its time (the block is no earlier than a time the
        template relied on having been reached). This node verified each of them when it
        took it in. What else ``apply_block`` checks is checked here, the state root last;
        on any mismatch, None: the block is applied from scratch and refused by name."""
        draft, header, held = sealed.draft, block.header, sealed.block
        assert held is not None and sealed.result is not None
        if (
            draft is None
            or block.votes
            or header.prev_hash != draft.parent
            or draft.env.timestamp_read
            or header.timestamp < draft.env.time_floor
            or size > self.params.max_block_bytes
            or draft.view.checkpoint() != sealed.mark  # (nothing applied to the draft since)
            or len(block.txs) != len(held.txs)
            or block.txs[1:] != held.txs[1:]
        ):
            return None
        txids = [tx_id(block.txs[0]), *sealed.result.txids[1:]]
        if merkle_root(txids) != header.tx_root:
            return None
        view, fees = draft.view, draft.env.fees
        env = BlockEnv(self.params, self.chain_id, draft.env.height, header.miner, header.timestamp)
        env.fees = fees
        try:
            validate_header(header, ctx)
            coinbase, _ = split_coinbase(block)
            reward = apply_coinbase(view, env, coinbase)
            changes = view.changes()
        except InvalidBlock:
            return None
        finally:
            view.rollback(sealed.mark)
        undo = self._leave_on_commitment(changes)
        self._sealed = None
        if self._commitment.root != header.state_root:
            self._commitment.revert(undo)
            return None
        return BlockResult(changes, undo, txids, fees, reward)

    def restamp(self, template: BlockTemplate, now: int) -> BlockTemplate | None:
        """``template`` stamped at ``now`` instead: the very block ``build_block`` would build
        now from the same candidates, when the template is still on the head and none of its
        rules read the block's time; None when it must be built again."""
        header = template.block.header
        if template.timestamp_read or header.prev_hash != self.head.hash:
            return None
        ts = max(now, self.median_time_past(self.head) + 1)
        if template.draft is not None and ts < template.draft.env.time_floor:
            return None
        block = Block(replace(header, timestamp=ts, nonce=0), template.block.txs, template.block.votes)
        sealed = self._sealed
        if sealed is not None and sealed.block is template.block:
            sealed.block = block  # (no rule read the time: the same changes)
        return BlockTemplate(block, template.included, template.rejected, False, template.draft)
