"""The mempool: pending transactions ordered by fee, per-sender nonce order, caps on their
count and their bytes.

Every outcome is reported as a :class:`PoolEvent` naming the rule: accepted,
rejected (with the rule broken), evicted (with why), included in a block, or
dropped as stale after a block. Nothing leaves the pool silently.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import address_digest, txid
from gridnet.encoding import decode, encode
from gridnet.errors import (
    AlreadyKnown,
    GridnetError,
    InsufficientBalance,
    InvalidTransaction,
    MempoolFull,
    NonceGap,
    NonceTooLow,
    ReplacementUnderpriced,
    TooManyPending,
    TooManyReplacements,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.registry import RULES
from gridnet.ledger.state import Account
from gridnet.ledger.transactions import Transaction, tx_body, tx_id
from gridnet.ledger.transition import VerifiedTx, validate_transaction
from gridnet.units import PUBLIC_KEY_BYTES, Address, Hash32, format_gnc


class EventKind(enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EVICTED = "evicted"
    INCLUDED = "included"
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class PoolEvent:
    kind: EventKind
    txid: Hash32
    sender: Address | None
    rule: str = ""
    """Name of the rule for rejected, evicted and dropped transactions."""
    message: str = ""
    tx: Transaction | None = None
    """An evicted or dropped transaction itself (its sender may sign its payload again)."""


@dataclass(frozen=True, slots=True)
class Taken:
    """A transaction the pool took and what taking it changed besides: what :meth:`Mempool.withdraw`
    puts back."""

    vtx: VerifiedTx
    replaced: VerifiedTx | None
    evicted: tuple[VerifiedTx, ...]
    deferred: tuple[tuple[Hash32, int], ...]
    """Those of the replaced and evicted transactions that block building had refused, with
    the height it first did (``Mempool.remove_rejected``)."""
    versions: tuple[tuple[Address, int | None], ...]
    """The ``Mempool.version`` of its sender and of theirs before it came (None: 0)."""


LOST_BYTES: Final = 16 << 20
"""Encoded size of the transactions a ``LostLog`` keeps, at most [bytes] (the oldest go first)."""


class LostLog:
    """The last ``kept`` transactions a node's pool let go without a block (evicted or
    dropped; at most ``max_bytes`` of them), numbered from 1 in the order they left: what their
    senders read (``since``) to learn the rule or to submit again what was dropped only
    because an earlier one was."""

    def __init__(self, kept: int, max_bytes: int = LOST_BYTES) -> None:
        self.kept = kept
        self.max_bytes = max_bytes
        self._kept: deque[tuple[PoolEvent, int]] = deque()
        self.bytes = 0
        self.total = 0
        """Events logged since the node started (the last one's number)."""

    def add(self, event: PoolEvent) -> None:
        size = 0 if event.tx is None else len(encode(event.tx))
        self._kept.append((event, size))
        self.bytes += size
        self.total += 1
        while len(self._kept) > self.kept or (self.bytes > self.max_bytes and len(self._kept) > 1):
            self.bytes -= self._kept.popleft()[1]

    @property
    def first_kept(self) -> int:
        """The oldest kept event's number (``total + 1`` while none is kept)."""
        return self.total - len(self._kept) + 1

    def since(
        self, after: int, limit: int | None = None, max_bytes: int | None = None
    ) -> list[tuple[int, PoolEvent]]:
        """The kept events numbered above ``after``, oldest first, with their numbers: at most
        ``limit`` of them, and no more than ``max_bytes`` of encoded transactions but for the
        first (which comes whatever its size, so that a reader that pages on from the last
        number it got reads every one). The oldest ones are gone once more than ``kept`` came
        after them (or ``max_bytes`` of the log's own)."""
        first = self.first_kept
        start = max(after + 1, first)
        if start > self.total:  # (none after it; islice refuses a start past sys.maxsize)
            return []
        stop = self.total + 1 if limit is None else min(self.total + 1, start + limit)
        page: list[tuple[int, PoolEvent]] = []
        size = 0
        held = itertools.islice(self._kept, start - first, stop - first)
        for n, (event, tx_bytes) in enumerate(held, start):
            size += tx_bytes
            if page and max_bytes is not None and size > max_bytes:
                break
            page.append((n, event))
        return page


DEFAULT_MAX_BYTES: Final = 64 << 20
"""Default bound on the encoded size of a pool's transactions [bytes] (in memory a pending
transaction takes about 4 times its encoded size when large, 8 times when small)."""


def _after_gap(vtx: VerifiedTx, missing: int, why: str) -> PoolEvent:
    """``vtx`` dropped because its sender's nonce ``missing`` will not be mined before it."""
    message = (
        f"nonce {vtx.tx.nonce} follows nonce {missing}, {why}: submit it again after a new nonce {missing}"
    )
    return PoolEvent(EventKind.DROPPED, vtx.txid, vtx.sender, NonceGap.__name__, message, vtx.tx)


def fee_rate(vtx: VerifiedTx) -> float:
    return vtx.tx.fee / vtx.size


def _cost(vtx: VerifiedTx) -> int:
    """What including ``vtx`` takes from its sender's balance: the fee plus what it spends."""
    return vtx.tx.fee + RULES[type(vtx.tx.payload)].spends(vtx.tx.payload)


REPLACEMENT_BUMP_PERCENT: Final = 10
"""A replacement pays at least this much more than the transaction it replaces [%] (and at
least the minimum fee of its own size more: ``Mempool.replacement_fee``)."""
MAX_REPLACEMENTS: Final = 64
"""Replacements a sender may make between two blocks of the node, at most (``TooManyReplacements``)."""


DEFER_BLOCKS = 6
"""Blocks a transaction that block building refuses stays pending before it is dropped
(``Mempool.remove_rejected``): it may depend on a block this node has not received yet."""


class Mempool:
    """Pending transactions of one node (in memory; the node persists them)."""

    def __init__(
        self,
        params: ChainParams,
        chain_id: Hash32,
        *,
        max_txs: int = 50_000,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_per_sender: int = 4096,
        defer_blocks: int = DEFER_BLOCKS,
    ) -> None:
        self.params = params
        self.chain_id = chain_id
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        """Encoded size of everything pending, at most [bytes]."""
        self.max_per_sender = max_per_sender
        self.by_id: dict[Hash32, VerifiedTx] = {}
        self.by_sender: dict[Address, dict[int, VerifiedTx]] = {}
        self._by_signature: dict[bytes, Hash32] = {}
        self._heap: list[tuple[float, int, Hash32]] = []  # lowest fee rate first (lazy)
        self._seq = itertools.count()
        self.defer_blocks = defer_blocks
        self._deferred: dict[Hash32, int] = {}  # txid -> height block building first refused it
        self._owed: dict[Address, int] = {}  # sender -> amounts plus fees of its pending ones
        self._versions: dict[Address, int] = {}  # sender -> see version()
        self._replacing: dict[Address, tuple[int, int]] = {}
        """sender -> (replacements it made since the node's last block, their set-back: the sum
        of its pending transactions after each one replaced) (``TooManyReplacements``)."""
        self.bytes = 0
        self.generation = 0
        """Changes whenever a transaction enters or leaves: the candidates are the same while
        it is."""
        """Encoded size of every pending transaction [bytes]."""

    def __len__(self) -> int:
        return len(self.by_id)

    def __contains__(self, tx_id: Hash32) -> bool:
        return tx_id in self.by_id

    def copy_of(self, tx: Transaction) -> Hash32 | None:
        """The id of the pending transaction ``tx`` is a copy of, if any, found by its
        signature alone (no encoding, no hashing): a transaction with the signature of a
        pending one is that one, or a forgery that no check would pass (a signature is valid
        for one key and one message), so a node may treat it as held without reading it."""
        return self._by_signature.get(tx.signature)

    def version(self, sender: Address) -> int:
        """A number that changes whenever ``sender``'s pending transactions change other than
        by admissions that passed the admission's ``check`` (0 while it has none): what the
        check computed from them holds while it is the same. The check follows what it
        passes itself, replacements included (``ledger/trial.py``); and a transaction that
        leaves together with all its sender's later ones (evicted, dropped) leaves it as it
        was too: the next transaction of the sender has that nonce or a lower one, and the
        check goes back to it as for a replacement (what it computed from the earlier ones
        holds). A transaction withdrawn (``withdraw``) leaves it as it was before that one came:
        the caller takes its check back too (``TrialState.take_back``). Any other leaving changes
        it, and so does a transaction taken without a check."""
        return self._versions.get(sender, 0)

    def replacement_fee(self, replaced: VerifiedTx, size: int) -> int:
        """The least fee a transaction of ``size`` bytes replacing ``replaced`` pays: 10% more
        (``REPLACEMENT_BUMP_PERCENT``, rounded up) and the minimum fee of its size more (it is
        relayed again, and the fee it replaces is never paid), whichever is more, at least 1."""
        bump = max(
            -(-replaced.tx.fee * REPLACEMENT_BUMP_PERCENT // 100), size * self.params.min_fee_per_byte, 1
        )
        return replaced.tx.fee + bump

    # --- admission -------------------------------------------------------------------------

    def admit(
        self,
        tx: Transaction,
        account_of: Callable[[Address], Account],
        verified: VerifiedTx | None = None,
        *,
        decoded: bool = False,
        check: Callable[[VerifiedTx], None] | None = None,
        taken: list[Taken] | None = None,
    ) -> list[PoolEvent]:
        """Admit ``tx`` or raise the named rule it breaks; returns its ACCEPTED event
        followed by any evictions it caused. ``verified``: ``tx`` passed its stateless checks
        already; ``decoded``: ``tx`` came from a canonical decode (a peer's message), so the
        wire's ranges already hold; ``check``: a further check that raises the rule the
        transaction breaks, run last, after the pool's own checks and bounds, so that a
        transaction that passes it is taken (a node tries every transaction on the head:
        ``ledger/trial.py``); ``taken``: gets what :meth:`withdraw` needs to take it back, if
        it is taken."""
        if verified is None:
            body = tx_body(tx)
            tid = txid(body, tx.signature)
            if tid in self.by_id:  # before the costly checks: gossip repeats a lot
                raise AlreadyKnown("transaction is already pending")
            if not decoded:  # a local object never went through decoding: hold it to the wire's ranges
                decode(encode(tx), Transaction, what="transaction")
            verified = validate_transaction(tx, self.params, self.chain_id, body, tid=tid)
        vtx = verified
        return self._admit(vtx, account_of, check, taken)

    def add(
        self,
        tx: Transaction,
        account_of: Callable[[Address], Account],
        verified: VerifiedTx | None = None,
        *,
        decoded: bool = False,
        check: Callable[[VerifiedTx], None] | None = None,
        taken: list[Taken] | None = None,
    ) -> list[PoolEvent]:
        """Like :meth:`admit`, but a refusal is reported as a REJECTED event."""
        try:
            return self.admit(tx, account_of, verified, decoded=decoded, check=check, taken=taken)
        except GridnetError as exc:
            sender = address_digest(tx.sender) if len(tx.sender) == PUBLIC_KEY_BYTES else None
            return [PoolEvent(EventKind.REJECTED, tx_id(tx), sender, exc.rule, str(exc))]

    def _admit(
        self,
        vtx: VerifiedTx,
        account_of: Callable[[Address], Account],
        check: Callable[[VerifiedTx], None] | None = None,
        taken: list[Taken] | None = None,
    ) -> list[PoolEvent]:
        if vtx.txid in self.by_id:
            raise AlreadyKnown("transaction is already pending")
        acct = account_of(vtx.sender)
        queue = self.by_sender.get(vtx.sender, {})
        nonce = vtx.tx.nonce
        if nonce < acct.nonce:
            raise NonceTooLow(f"nonce {nonce} was already used (next is {acct.nonce}): replayed transaction")
        next_free = acct.nonce + len(queue)
        if nonce > next_free:
            raise NonceGap(f"nonce {nonce} skips ahead of the next pending nonce {next_free}")
        events: list[PoolEvent] = []
        replaced = queue.get(nonce)
        replacing = (0, 0)
        if replaced is not None:
            need = self.replacement_fee(replaced, vtx.size)
            if vtx.tx.fee < need:
                raise ReplacementUnderpriced(
                    f"a pending transaction with nonce {nonce} pays fee {replaced.tx.fee}; pay more to "
                    f"replace it: at least {need} (10% more, and at least the minimum fee of this "
                    f"one's {vtx.size} bytes more)"
                )
            replacing = self._replacement_counted(vtx, len(queue) - 1 - (nonce - acct.nonce), len(queue))
        if replaced is None and len(queue) >= self.max_per_sender:
            raise TooManyPending(f"sender already has {len(queue)} pending transactions")
        # The sender must be able to pay for everything it has pending.
        cost = self._owed.get(vtx.sender, 0) - (0 if replaced is None else _cost(replaced)) + _cost(vtx)
        if cost > acct.balance:
            raise InsufficientBalance(
                f"{address_to_text(vtx.sender)} has {format_gnc(acct.balance)} but needs {format_gnc(cost)} "
                "for this transaction and its other pending ones (amounts plus fees)"
            )
        victims = self._make_room(vtx, replaced)
        record = None if taken is None else self._undo_record(vtx, replaced, victims)
        if replaced is not None:  # (counted once tried: a replacement the check refuses set back as much)
            self._replacing[vtx.sender] = replacing
        if check is not None:
            check(vtx)
        else:  # (taken without a check: no check followed it)
            self._versions[vtx.sender] = next(self._seq)
        if replaced is not None:
            self._remove(replaced, replacing=True)
            events.append(
                PoolEvent(
                    EventKind.EVICTED,
                    replaced.txid,
                    replaced.sender,
                    "Replaced",
                    "replaced by a higher fee",
                    replaced.tx,
                )
            )
        for v in victims:
            self._remove(v, with_later=True)
            events.append(
                PoolEvent(
                    EventKind.EVICTED,
                    v.txid,
                    v.sender,
                    MempoolFull.__name__,
                    "evicted from a full mempool by a transaction paying a higher fee",
                    v.tx,
                )
            )
        self._insert(vtx)
        if taken is not None and record is not None:
            taken.append(record)
        return [PoolEvent(EventKind.ACCEPTED, vtx.txid, vtx.sender), *events]

    def _undo_record(self, vtx: VerifiedTx, replaced: VerifiedTx | None, victims: list[VerifiedTx]) -> Taken:
        """What :meth:`withdraw` needs to take ``vtx`` back once it is taken, replacing
        ``replaced`` and evicting ``victims``: read before any of it happens."""
        left = victims if replaced is None else [replaced, *victims]
        senders = dict.fromkeys([vtx.sender, *(v.sender for v in victims)])
        return Taken(
            vtx,
            replaced,
            tuple(victims),
            tuple((v.txid, self._deferred[v.txid]) for v in left if v.txid in self._deferred),
            tuple((s, self._versions.get(s)) for s in senders),
        )

    def _replacement_counted(self, vtx: VerifiedTx, after: int, pending: int) -> tuple[int, int]:
        """``vtx``'s sender's replacements since the last block, counting ``vtx``, which
        replaces one of its ``pending`` transactions followed by ``after`` others (what a
        node that tried them applies again after it); raises ``TooManyReplacements`` past
        ``MAX_REPLACEMENTS`` of them or past a set-back of ``pending``: the node's work
        on a sender's replacements between blocks is bounded by its pending transactions."""
        count, set_back = self._replacing.get(vtx.sender, (0, 0))
        who = address_to_text(vtx.sender)
        if count >= MAX_REPLACEMENTS:
            raise TooManyReplacements(
                f"{who} replaced {count} pending transactions since the last block, at most "
                f"{MAX_REPLACEMENTS}: replace it after the next block"
            )
        if set_back + after > pending:
            raise TooManyReplacements(
                f"{who}'s replacements since the last block set back {set_back} of its pending transactions "
                f"(the ones after each replaced); this one would set back {after} more, past its {pending} "
                "pending: replace it after the next block (or its last pending transaction now)"
            )
        return count + 1, set_back + after

    def _make_room(self, incoming: VerifiedTx, replaced: VerifiedTx | None) -> list[VerifiedTx]:
        """What to evict so that ``incoming`` fits both caps (after ``replaced`` leaves):
        the lowest payers per byte, each with its sender's later nonces (to leave no gap),
        all paying less per byte than ``incoming`` and none of its sender. Nothing changes
        here: the caller evicts them once the transaction is taken."""
        if incoming.size > self.max_bytes:
            raise MempoolFull(
                f"the transaction is {incoming.size:,} bytes; the mempool holds at most {self.max_bytes:,}"
            )
        count = len(self.by_id) + 1
        size = self.bytes + incoming.size
        if replaced is not None:
            count -= 1
            size -= replaced.size
        victims: dict[Hash32, VerifiedTx] = {}
        lowest = self._ascending()
        while count > self.max_txs or size > self.max_bytes:
            low = next(v for v in lowest if v.txid not in victims and v is not replaced)
            if fee_rate(low) >= fee_rate(incoming) or low.sender == incoming.sender:
                raise MempoolFull(
                    f"mempool holds {len(self.by_id):,} transactions ({self.bytes:,} bytes) paying at "
                    f"least {fee_rate(low):.2f} per byte; this one pays {fee_rate(incoming):.2f}"
                )
            for n, v in sorted(self.by_sender[low.sender].items()):
                if n >= low.tx.nonce and v.txid not in victims:
                    victims[v.txid] = v
                    count -= 1
                    size -= v.size
        return list(victims.values())

    def _ascending(self) -> Iterator[VerifiedTx]:
        """Pending transactions, lowest fee rate first: walks the heap in order without
        changing it, once it has dropped the stale entries on top (a transaction may come twice)."""
        heap = self._heap
        while heap and heap[0][2] not in self.by_id:
            heapq.heappop(heap)
        frontier = [(heap[0], 0)] if heap else []
        while frontier:
            (_, _, tid), i = heapq.heappop(frontier)
            for child in (2 * i + 1, 2 * i + 2):
                if child < len(heap):
                    heapq.heappush(frontier, (heap[child], child))
            vtx = self.by_id.get(tid)
            if vtx is not None:
                yield vtx

    def _insert(self, vtx: VerifiedTx) -> None:
        self.generation += 1
        self.by_id[vtx.txid] = vtx
        self._by_signature[vtx.tx.signature] = vtx.txid
        self.by_sender.setdefault(vtx.sender, {})[vtx.tx.nonce] = vtx
        self._owed[vtx.sender] = self._owed.get(vtx.sender, 0) + _cost(vtx)
        self.bytes += vtx.size
        heapq.heappush(self._heap, (fee_rate(vtx), next(self._seq), vtx.txid))
        if len(self._heap) > 4 * max(len(self.by_id), 1024):
            self._heap = [(fee_rate(v), next(self._seq), t) for t, v in self.by_id.items()]
            heapq.heapify(self._heap)

    def withdraw(self, taken: Taken) -> None:
        """Take back a transaction just taken that its node could not keep (its store cannot
        be written), and put back what it replaced and evicted, with their deferrals and their
        senders' versions: the pool holds what it held before it came, provided those taken
        after it were withdrawn first (a replacement withdrawn alone would leave its sender's
        later transactions after a missing nonce, which no block could include). Its sender's
        count of replacements stays: the node's check did the work (``TooManyReplacements``)."""
        self._remove(taken.vtx, replacing=taken.replaced is not None)
        for v in taken.evicted if taken.replaced is None else (taken.replaced, *taken.evicted):
            self._insert(v)
        self._deferred.update(taken.deferred)
        for sender, version in taken.versions:
            if version is None:
                self._versions.pop(sender, None)
            else:
                self._versions[sender] = version

    def _remove(self, vtx: VerifiedTx, *, replacing: bool = False, with_later: bool = False) -> None:
        """``replacing``: ``vtx`` leaves for a transaction of the same sender and nonce, taken
        next; ``with_later``: its sender's later pending transactions leave with it. Either
        leaves the sender's ``version`` as it was."""
        self.generation += 1
        del self.by_id[vtx.txid]
        del self._by_signature[vtx.tx.signature]
        self._deferred.pop(vtx.txid, None)
        queue = self.by_sender[vtx.sender]
        del queue[vtx.tx.nonce]
        self._owed[vtx.sender] -= _cost(vtx)
        self.bytes -= vtx.size
        if not queue:
            del self.by_sender[vtx.sender]
            del self._owed[vtx.sender]
        if not queue and not replacing:
            self._versions.pop(vtx.sender, None)
            self._replacing.pop(vtx.sender, None)
        elif not (replacing or with_later):
            self._versions[vtx.sender] = next(self._seq)

    # --- block building and updates ------------------------------------------------------

    def candidates(self) -> Iterator[VerifiedTx]:
        """Pending transactions, highest fee rate first, each sender's in nonce order."""
        queues = {s: sorted(q.items()) for s, q in self.by_sender.items()}
        heap = [(-fee_rate(q[0][1]), i, s) for i, (s, q) in enumerate(queues.items())]
        heapq.heapify(heap)
        positions = dict.fromkeys(queues, 0)
        while heap:
            _, i, sender = heapq.heappop(heap)
            queue = queues[sender]
            pos = positions[sender]
            yield queue[pos][1]
            pos += 1
            positions[sender] = pos
            if pos < len(queue):
                heapq.heappush(heap, (-fee_rate(queue[pos][1]), i, sender))

    def remove_rejected(self, vtx: VerifiedTx, error: InvalidTransaction, height: int) -> list[PoolEvent]:
        """Block building at ``height`` could not apply ``vtx``. It may depend on a block
        this node has not received yet (say, the opening of the contract it settles), so it
        stays pending for ``defer_blocks`` blocks; then it is dropped with the rule, and its
        sender's later transactions with it (no block could include them after the gap),
        each reported as a ``NonceGap`` naming the one it followed."""
        if vtx.txid not in self.by_id:
            return []
        first = self._deferred.setdefault(vtx.txid, height)
        if height - first < self.defer_blocks:
            return []
        queue = self.by_sender[vtx.sender]
        root = vtx.tx.nonce
        events = []
        for n, v in sorted(queue.items()):
            if n < root:
                continue
            self._remove(v, with_later=True)
            if n == root:
                events.append(PoolEvent(EventKind.DROPPED, v.txid, v.sender, error.rule, str(error), v.tx))
            else:
                why = f"transaction {vtx.txid.hex()[:16]}, which block building dropped ({error.rule})"
                events.append(_after_gap(v, root, why))
        return events

    def drop_orphans(
        self, senders: Iterable[Address], account_of: Callable[[Address], Account]
    ) -> list[PoolEvent]:
        """Drop each of ``senders``' pending transactions that follow a nonce neither on chain
        nor pending (a reorg returned an earlier transaction of theirs that no longer applies):
        no block could include them."""
        events = []
        for sender in senders:
            expected = account_of(sender).nonce
            for n, v in sorted(self.by_sender.get(sender, {}).items()):
                if n == expected:
                    expected += 1
                elif n > expected:
                    self._remove(v, with_later=True)
                    events.append(_after_gap(v, expected, "which is not pending any more"))
        return events

    def update_after_block(
        self, included: Iterable[Hash32], account_of: Callable[[Address], Account]
    ) -> list[PoolEvent]:
        """Remove what a new head included and what its nonces made stale. Senders may replace
        their pending transactions again (``TooManyReplacements``)."""
        self._replacing.clear()
        events = []
        for tid in included:
            vtx = self.by_id.get(tid)
            if vtx is not None:
                self._remove(vtx)
                events.append(PoolEvent(EventKind.INCLUDED, tid, vtx.sender))
        for sender in list(self.by_sender):
            acct = account_of(sender)
            for n, v in sorted(self.by_sender[sender].items()):
                if n < acct.nonce:
                    self._remove(v)
                    events.append(
                        PoolEvent(
                            EventKind.DROPPED,
                            v.txid,
                            sender,
                            NonceTooLow.__name__,
                            f"nonce {n} was used by another transaction in the chain",
                            v.tx,
                        )
                    )
        return events
