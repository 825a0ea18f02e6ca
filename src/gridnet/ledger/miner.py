"""Producing blocks: build a template on the head and search its proof-of-work."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import BlockTemplate, Chain
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
