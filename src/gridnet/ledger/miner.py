"""Producing blocks: build a template on the head and search its proof-of-work."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from gridnet.errors import InvalidTransaction
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import BlockTemplate, Chain
from gridnet.ledger.mempool import Mempool
from gridnet.ledger.pow import mine
from gridnet.ledger.transition import VerifiedTx
from gridnet.units import Address


def produce_block(
    chain: Chain,
    miner: Address,
    candidates: Iterable[VerifiedTx] = (),
    *,
    now: int | None = None,
    timestamp: int | None = None,
    max_attempts: int = 50_000_000,
) -> tuple[Block, BlockTemplate]:
    """Build and mine the next block (not yet added to ``chain``).

    Raises ``RuntimeError`` if no nonce below the target is found within
    ``max_attempts`` (the difficulty is far above what this machine can do).
    """
    template = chain.build_block(miner, candidates, now=now, timestamp=timestamp)
    solved = mine(template.block.header, max_attempts)
    if solved is None:
        raise RuntimeError(f"no proof-of-work found in {max_attempts} attempts")
    return msgspec.structs.replace(template.block, header=solved), template


NO_MINER = bytes(20)
"""The coinbase address of trial templates (never mined)."""


def check_applies(chain: Chain, pool: Mempool, vtx: VerifiedTx, *, now: int | None = None) -> None:
    """Raise the rule ``vtx`` breaks when a block on the head includes it after its sender's
    pending transactions — the check a user's transaction gets before it is accepted, so a
    bond without an identity, say, is refused at once instead of dropped by a miner later.

    A transaction may depend on other senders' pending ones (a settlement on the readings a
    collector submitted a moment ago): one that fails alone is tried again after everything
    pending, in the order a miner would take it, and refused only if it fails there too."""
    own = [v for n, v in sorted(pool.by_sender.get(vtx.sender, {}).items()) if n < vtx.tx.nonce]
    error = _rejection(chain, [*own, vtx], vtx, now)
    if error is not None and len(pool) > len(own):
        others = [v for v in pool.candidates() if v.sender != vtx.sender or v.tx.nonce < vtx.tx.nonce]
        error = _rejection(chain, [*others, vtx], vtx, now)
    if error is not None:
        raise error


def _rejection(
    chain: Chain, candidates: list[VerifiedTx], vtx: VerifiedTx, now: int | None
) -> InvalidTransaction | None:
    template = chain.build_block(NO_MINER, candidates, now=now)
    return next((error for v, error in template.rejected if v.txid == vtx.txid), None)
