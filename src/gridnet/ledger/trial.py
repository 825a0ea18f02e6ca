"""Trying a user's transaction on the head before it is accepted.

A node (its HTTP API) and the command-line wallet accept a user's transaction only if a block
on the head could include it: it is applied, as block building would apply it, after its
sender's pending transactions. So a transaction no miner could include — a bond without an
identity, say — is refused at once with its rule, instead of being accepted and dropped by a
miner later. A transaction may depend on another sender's pending one (a settlement on the
readings a collector submitted a moment ago): one that fails after its sender's alone is tried
again after a block's worth of everything pending, in the order a miner takes it, and refused
only if it fails there too.

The state after a sender's pending transactions is kept per sender (for the last
``TRIAL_SENDERS`` senders, until the head moves), so a burst of one sender's transactions
costs one application each, not one per pending transaction.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from gridnet.errors import InvalidTransaction
from gridnet.ledger.chain import Chain, now_ms
from gridnet.ledger.mempool import Mempool
from gridnet.ledger.state import StateView
from gridnet.ledger.transition import VerifiedTx, apply_transaction
from gridnet.ledger.txs.base import BlockEnv
from gridnet.ledger.txs.bond import process_unbonding
from gridnet.units import Address, Hash32

TRIAL_SENDERS: Final = 64
"""Senders whose state after their pending transactions is kept."""
NO_MINER: Final = bytes(20)
"""The coinbase address of a trial block (never mined)."""
BLOCK_OVERHEAD: Final = 512
"""Bytes of a block that are not its transactions (as block building counts them)."""


@dataclass
class _SenderState:
    head: Hash32
    view: StateView
    """The head's state after the sender's pending transactions in ``applied``."""
    applied: list[Hash32] = field(default_factory=list)
    """Ids of the sender's pending transactions applied to ``view``, in nonce order (one
    that failed to apply left the view as it was, as block building skips it)."""


class TrialState:
    """Tries users' transactions on one chain's head (``check``)."""

    def __init__(self, chain: Chain, *, senders: int = TRIAL_SENDERS) -> None:
        self.chain = chain
        self.senders = senders
        self._states: OrderedDict[Address, _SenderState] = OrderedDict()

    def check(self, pool: Mempool, vtx: VerifiedTx, *, now: int | None = None) -> None:
        """Raise the rule ``vtx`` breaks when a block on the head includes it after its
        sender's transactions pending in ``pool`` (then, if it fails, after a block's worth
        of everything pending)."""
        env = self._env(now)
        own = [v for n, v in sorted(pool.by_sender.get(vtx.sender, {}).items()) if n < vtx.tx.nonce]
        error = _attempt(self._after(vtx.sender, own, env).view, env, vtx)
        if error is not None and len(pool) > len(own):
            error = self._after_others(pool, own, vtx, env)
        if error is not None:
            raise error

    def _env(self, now: int | None) -> BlockEnv:
        chain = self.chain
        head = chain.head
        now = now_ms() if now is None else now
        timestamp = max(now, chain.median_time_past(head) + 1)
        return BlockEnv(chain.params, chain.chain_id, head.height + 1, NO_MINER, timestamp)

    def _fresh_view(self, env: BlockEnv) -> StateView:
        view = StateView(self.chain.values)
        process_unbonding(view, env)
        return view

    def _after(self, sender: Address, own: list[VerifiedTx], env: BlockEnv) -> _SenderState:
        """The head's state after ``own`` (the sender's pending transactions): kept from the
        last check of this sender when those were a prefix of ``own`` and the head is the same."""
        head = self.chain.head.hash
        state = self._states.pop(sender, None)
        ids = [v.txid for v in own]
        if state is None or state.head != head or ids[: len(state.applied)] != state.applied:
            state = _SenderState(head, self._fresh_view(env))
        for v in own[len(state.applied) :]:
            _apply(state.view, env, v)
            state.applied.append(v.txid)
        self._states[sender] = state
        while len(self._states) > self.senders:
            self._states.popitem(last=False)
        return state

    def _after_others(
        self, pool: Mempool, own: list[VerifiedTx], vtx: VerifiedTx, env: BlockEnv
    ) -> InvalidTransaction | None:
        """Try ``vtx`` after what a miner would take first: a block's worth of the pending
        transactions by fee, then whatever of the sender's own did not fit (they come first)."""
        view = self._fresh_view(env)
        budget = self.chain.params.max_block_bytes - BLOCK_OVERHEAD
        used = 0
        taken: set[Hash32] = set()
        for v in pool.candidates():
            if v.sender == vtx.sender and v.tx.nonce >= vtx.tx.nonce:
                continue
            if used + v.size + 4 > budget:
                break
            if _apply(view, env, v):
                used += v.size + 4
            taken.add(v.txid)
        for v in own:
            if v.txid not in taken:
                _apply(view, env, v)
        return _attempt(view, env, vtx)


def _apply(view: StateView, env: BlockEnv, vtx: VerifiedTx) -> bool:
    """Apply ``vtx`` to ``view`` and keep it; one that fails leaves ``view`` as it was."""
    mark = view.checkpoint()
    try:
        apply_transaction(view, env, vtx)
    except InvalidTransaction:
        view.rollback(mark)
        return False
    finally:
        view.release()
    return True


def _attempt(view: StateView, env: BlockEnv, vtx: VerifiedTx) -> InvalidTransaction | None:
    """The rule ``vtx`` breaks applied on ``view`` (None: it applies); ``view`` is unchanged."""
    mark = view.checkpoint()
    try:
        apply_transaction(view, env, vtx)
    except InvalidTransaction as exc:
        return exc
    finally:
        view.rollback(mark)
        view.release()
    return None
