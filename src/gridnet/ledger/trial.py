"""Trying a transaction on the head before it is accepted.

A node accepts a transaction — a user's (its HTTP API, the command-line wallet) or one a peer
relays — only if a block on the head could include it: it is applied, as block building would
apply it, after its sender's pending transactions. So a transaction no miner could include — a
bond without an identity, readings of an unregistered meter — is refused at once with its rule,
instead of being held (and relayed) for free until a miner drops it. A transaction may depend
on another sender's pending one (a settlement on the readings a collector submitted a moment
ago): one that fails after its sender's alone is tried again after a block's worth of
everything pending, in the order a miner takes it, and refused only if it fails there too.

Both states are kept, so that gossip costs one application per transaction and a flood of
refused ones two each. The state after a sender's pending transactions is kept per sender (for
the last ``TRIAL_SENDERS`` senders, at most ``TRIAL_BYTES`` of their transactions applied and
of their undo logs) until the head moves or one of them leaves the pool other than together
with all those after it (``Mempool.version``), and a transaction that passes stays applied to
it. It keeps its undo log, marked before each transaction, so a replacement goes back to the
mark of the one it replaces, undoing only what was applied after it, instead of applying the
sender's earlier ones again; those after it are applied again when a later one comes (how many,
between blocks, the mempool bounds: ``TooManyReplacements``). Transactions evicted or dropped
with all their sender's later ones are undone the same way when the sender's next transaction
(with the first one's nonce, or a lower one) comes; a transaction the pool takes back
(``Mempool.withdraw``: its node could not write it) is undone at once (``take_back``), and what
it replaced is pending again. A state that was let go (other senders
pushed it out of the bounds above) is built afresh when its sender's next transaction comes;
one that applies more than ``REBUILD_BYTES`` of the sender's pending transactions is built once
per sender and head, and a peer's transaction that would need another is refused
(``TooManyRebuilds``; a user's is not): so however a peer churns the kept states, what it makes the node apply
again per transaction it sends stays within ``REBUILD_BYTES``, and beyond that within one build
per sender and head, as a new head makes anyway. The state after a block's worth of everything
pending is built once per head (again once the pool has taken a block's worth since) and
follows every transaction the pool takes; it keeps the effects of transactions that left the
pool since (an eviction does not rebuild it), so one that relied on those is left to block
building (``Mempool.remove_rejected``). A transaction tried on it after its sender's pending
ones that are not in it leaves them applied to it (the next of the sender costs one
application, not its pending count).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from gridnet.crypto.address import address_to_text
from gridnet.errors import InvalidTransaction, TooManyRebuilds
from gridnet.ledger.chain import Chain, now_ms
from gridnet.ledger.mempool import Mempool
from gridnet.ledger.registry import RULES
from gridnet.ledger.state import StateView
from gridnet.ledger.transition import VerifiedTx, apply_transaction, start_block
from gridnet.ledger.txs.base import BlockEnv
from gridnet.units import Address, Hash32

TRIAL_SENDERS: Final = 4096
"""Senders whose state after their pending transactions is kept, at most."""
TRIAL_BYTES: Final = 16 << 20
"""Encoded size of the pending transactions applied to the kept states and of the states' undo
logs (``StateView.undo_bytes``), at most [bytes] (a state also holds what its transactions
read: a batch of readings reads as many meters)."""
REBUILD_BYTES: Final = 64 << 10
"""Encoded size of a sender's pending transactions the trial applies to build its state
afresh, at most [bytes], but once per sender and head (``TooManyRebuilds``)."""
NO_MINER: Final = bytes(20)
"""The coinbase address of a trial block (never mined)."""
BLOCK_OVERHEAD: Final = 512
"""Bytes of a block that are not its transactions (as block building counts them)."""


@dataclass
class _SenderState:
    head: Hash32
    version: int
    """The pool's version of the sender's pending transactions it follows (``Mempool.version``)."""
    first: int
    """The sender's nonce on the head (its first pending transaction's)."""
    view: StateView
    """The head's state after the sender's pending transactions with nonces below
    ``next_nonce`` (one that failed to apply left it as it was, as block building skips it),
    with its undo log (its checkpoints are never released)."""
    next_nonce: int
    bytes: int = 0
    """Encoded size of the transactions applied to ``view`` and of the undo log they wrote
    (``StateView.undo_bytes``) [bytes]."""
    marks: list[tuple[int, int]] = field(default_factory=list)
    """For each nonce from ``first`` below ``next_nonce``: (``view``'s checkpoint, ``bytes``)
    before that transaction was applied."""

    def apply(self, env: BlockEnv, vtx: VerifiedTx) -> InvalidTransaction | None:
        """Apply ``vtx``, the sender's transaction with nonce ``next_nonce``, and move on (one
        that fails leaves ``view`` as it was, and takes its nonce all the same, as block
        building skips it): the rule it breaks, if any."""
        mark = self.view.checkpoint()
        self.marks.append((mark, self.bytes))
        error = _apply(self.view, env, vtx)
        self.next_nonce += 1
        if error is None:
            self.bytes += vtx.size + self.view.undo_bytes(mark)
        return error

    def back_to(self, nonce: int) -> None:
        """Undo the transactions applied from ``nonce`` on."""
        at = nonce - self.first
        mark, self.bytes = self.marks[at]
        self.view.rollback(mark)
        del self.marks[at:]
        self.next_nonce = nonce


@dataclass
class _PoolState:
    head: Hash32
    view: StateView
    """The head's state after a block's worth of the pending transactions, taken by fee as a
    miner takes them, then after each transaction the pool took since."""
    tried: set[Hash32]
    """Ids of the transactions applied to ``view`` (or tried: one that failed left it as it was)."""
    since: int = 0
    """Encoded size of the transactions the pool took since ``view`` was built [bytes]."""


class TrialState:
    """Tries transactions on one chain's head (``check``)."""

    def __init__(self, chain: Chain, *, senders: int = TRIAL_SENDERS, max_bytes: int = TRIAL_BYTES) -> None:
        self.chain = chain
        self.senders = senders
        self.max_bytes = max_bytes
        self._states: OrderedDict[Address, _SenderState] = OrderedDict()
        self._bytes = 0
        """Sum of the kept states' ``bytes``."""
        self._pool: _PoolState | None = None
        self._rebuilt: tuple[Hash32, set[Address]] = (bytes(32), set())
        """(head, the senders whose state was built afresh on it from more than
        ``REBUILD_BYTES`` of their pending transactions)."""
        self._median: tuple[Hash32, int] = (bytes(32), 0)
        """(head, the median time of its last blocks) [ms]."""

    def check(self, pool: Mempool, vtx: VerifiedTx, *, now: int | None = None, peer: bool = True) -> None:
        """Raise the rule ``vtx`` breaks when a block on the head includes it after its
        sender's transactions pending in ``pool`` (then, if it fails, after a block's worth of
        everything pending). The mempool runs this last: a transaction that passes is taken
        (and stays applied to its sender's kept state). ``peer``: it came from a peer, whose
        rebuilds are bounded (``TooManyRebuilds``); a node's own users' are not (they hold its
        API token: a DSO settling a large area, whose state others pushed out, is not refused)."""
        env = self._env(now)
        admit = RULES[type(vtx.tx.payload)].admit
        if admit is not None:
            admit(self.chain.view(), env, vtx.tx.payload)  # (a rule of the mempool only: raises it)
        state = self._sender_state(pool, vtx, env, peer)
        error = state.apply(env, vtx)
        if error is not None:  # (it is not taken)
            state.back_to(vtx.tx.nonce)
        own = vtx.tx.nonce - state.first  # the sender's pending transactions before it
        if error is None or own:  # (not kept: a refused sender with nothing pending)
            self._keep(vtx.sender, state)
        if error is not None and len(pool) > own:
            error = self._after_others(pool, vtx, state.first, env)
        if error is not None:
            raise error
        self._taken(vtx, env)

    def take_back(self, vtx: VerifiedTx) -> None:
        """The pool took back ``vtx``, which passed ``check`` (``Mempool.withdraw``: it puts
        back what ``vtx`` replaced, and leaves the sender's ``version`` as it was): its
        sender's kept state goes back to before it, as for a replacement (the sender's
        pending transactions from its nonce on are applied again when a later one comes)."""
        state = self._states.get(vtx.sender)
        if state is not None and state.head == self.chain.head.hash and state.next_nonce > vtx.tx.nonce:
            self._bytes -= state.bytes
            state.back_to(vtx.tx.nonce)
            self._bytes += state.bytes

    def _env(self, now: int | None) -> BlockEnv:
        chain = self.chain
        head = chain.head
        if self._median[0] != head.hash:
            self._median = (head.hash, chain.median_time_past(head))
        now = now_ms() if now is None else now
        timestamp = max(now, self._median[1] + 1)
        return BlockEnv(chain.params, chain.chain_id, head.height + 1, NO_MINER, timestamp)

    def _fresh_view(self, env: BlockEnv) -> StateView:
        view = StateView(self.chain.values)
        start_block(view, env)
        return view

    def _block_budget(self) -> int:
        """Bytes of transactions one block holds."""
        return self.chain.params.max_block_bytes - BLOCK_OVERHEAD

    def _sender_state(self, pool: Mempool, vtx: VerifiedTx, env: BlockEnv, peer: bool) -> _SenderState:
        """The state after the pending transactions of ``vtx``'s sender below its nonce: the
        kept one, carried on (or taken back to the mark of the one ``vtx`` replaces, or of the
        first of those that left the pool since together with all after it), unless the head
        moved or the pool's ``version`` of the sender did."""
        sender, nonce = vtx.sender, vtx.tx.nonce
        head = self.chain.head.hash
        version = pool.version(sender)
        state = self._states.pop(sender, None)
        if state is not None:
            self._bytes -= state.bytes
        queue = pool.by_sender.get(sender, {})
        if state is None or state.head != head or state.version != version:
            first = self.chain.account(sender).nonce
            if peer:
                self._count_build(vtx, queue, first)
            state = _SenderState(head, version, first, self._fresh_view(env), first)
        elif state.next_nonce > nonce:  # a replacement: undo what followed the one it replaces
            state.back_to(nonce)
        for n in range(state.next_nonce, nonce):
            state.apply(env, queue[n])
        return state

    def _count_build(self, vtx: VerifiedTx, queue: dict[int, VerifiedTx], first: int) -> None:
        """Count building the state of ``vtx``'s sender afresh from its pending transactions
        (``queue``, from nonce ``first``) below ``vtx``'s nonce: from more than
        ``REBUILD_BYTES`` of them, once per sender and head; another such build raises
        ``TooManyRebuilds`` (a peer could otherwise make the node apply a sender's thousands of
        pending transactions again for each one it sends, once other senders pushed the
        sender's state out)."""
        head = self.chain.head.hash
        if self._rebuilt[0] != head:
            self._rebuilt = (head, set())
        size = 0
        for n in range(first, vtx.tx.nonce):  # (stops past REBUILD_BYTES)
            size += queue[n].size
            if size > REBUILD_BYTES:
                break
        else:
            return
        rebuilt = self._rebuilt[1]
        if vtx.sender in rebuilt:
            raise TooManyRebuilds(
                f"the node built the state after {address_to_text(vtx.sender)}'s "
                f"{vtx.tx.nonce - first} pending transactions on this head already and let it go since "
                f"(it keeps those of {self.senders:,} senders, {self.max_bytes:,} bytes at most); "
                f"building it again would apply more than {REBUILD_BYTES:,} bytes of them: send it "
                "again after the next block"
            )
        rebuilt.add(vtx.sender)

    def _keep(self, sender: Address, state: _SenderState) -> None:
        """Keep ``state`` as the latest; forget the least recently used beyond the bounds."""
        self._states[sender] = state
        self._bytes += state.bytes
        while len(self._states) > self.senders or (self._bytes > self.max_bytes and len(self._states) > 1):
            self._bytes -= self._states.popitem(last=False)[1].bytes

    def _after_others(
        self, pool: Mempool, vtx: VerifiedTx, first: int, env: BlockEnv
    ) -> InvalidTransaction | None:
        """Try ``vtx`` after what a miner would take first — a block's worth of the pending
        transactions by fee, then whatever of the sender's own did not fit (they come
        first) — on the kept pool state (built again once the head moved or the pool took
        a block's worth since: so a failure costs an application, not a block's worth)."""
        state = self._pool
        if state is None or state.head != self.chain.head.hash or state.since > self._block_budget():
            state = self._pool = self._build(pool, vtx, env)
        queue = pool.by_sender.get(vtx.sender, {})
        view = state.view
        for n in range(first, vtx.tx.nonce):  # (they stay: each is applied once per state)
            if queue[n].txid not in state.tried:
                _apply(view, env, queue[n])
                state.tried.add(queue[n].txid)
        error = _attempt(view, env, vtx)
        view.release()
        return error

    def _build(self, pool: Mempool, vtx: VerifiedTx, env: BlockEnv) -> _PoolState:
        """The head's state after a block's worth of the pending transactions by fee (but
        none of ``vtx``'s sender from its nonce on)."""
        view = self._fresh_view(env)
        budget = self._block_budget()
        used = 0
        tried: set[Hash32] = set()
        for v in pool.candidates():
            if v.sender == vtx.sender and v.tx.nonce >= vtx.tx.nonce:
                continue
            if used + v.size + 4 > budget:
                break
            if _apply(view, env, v) is None:
                used += v.size + 4
            tried.add(v.txid)
        view.release()
        return _PoolState(self.chain.head.hash, view, tried)

    def _taken(self, vtx: VerifiedTx, env: BlockEnv) -> None:
        """The pool takes ``vtx``: the kept pool state (while it serves) follows."""
        state = self._pool
        if state is None or state.head != self.chain.head.hash or state.since > self._block_budget():
            return
        _apply(state.view, env, vtx)
        state.view.release()
        state.tried.add(vtx.txid)
        state.since += vtx.size


def _apply(view: StateView, env: BlockEnv, vtx: VerifiedTx) -> InvalidTransaction | None:
    """Apply ``vtx`` to ``view`` and keep it; one that fails (its rule is returned) leaves
    ``view`` as it was (the caller releases the view's checkpoints when it is done)."""
    mark = view.checkpoint()
    try:
        apply_transaction(view, env, vtx)
    except InvalidTransaction as exc:
        view.rollback(mark)
        return exc
    return None


def _attempt(view: StateView, env: BlockEnv, vtx: VerifiedTx) -> InvalidTransaction | None:
    """The rule ``vtx`` breaks applied on ``view`` (None: it applies); ``view`` is unchanged
    (the caller releases its checkpoints)."""
    mark = view.checkpoint()
    try:
        apply_transaction(view, env, vtx)
    except InvalidTransaction as exc:
        return exc
    finally:
        view.rollback(mark)
    return None
