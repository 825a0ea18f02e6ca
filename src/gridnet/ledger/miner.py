"""Producing blocks: build a template on the head and search its proof-of-work, or (on a
permissioned chain) seal it as the slot's validator."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import WorkNotFound
from gridnet.ledger.blocks import Block, SignedVote
from gridnet.ledger.chain import BlockTemplate, Chain
from gridnet.ledger.poa import seal_header, slot_start
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

    Raises ``WorkNotFound`` if no nonce below the target is found within
    ``max_attempts`` (the difficulty is far above what this machine can do).
    """
    template = chain.build_block(miner, candidates, now=now, timestamp=timestamp)
    solved = mine(template.block.header, max_attempts)
    if solved is None:
        raise WorkNotFound(f"no proof-of-work found in {max_attempts} attempts")
    return msgspec.structs.replace(template.block, header=solved), template


def propose_block(
    chain: Chain,
    key: PrivateKey,
    slot: int,
    candidates: Iterable[VerifiedTx] = (),
    votes: Iterable[SignedVote] = (),
    *,
    now: int | None = None,
) -> tuple[Block, BlockTemplate]:
    """Build the block of ``slot`` on the head as ``key``'s validator proposes it (with the
    ``votes`` that count on its branch), sealed; not yet added. Raises ``WrongProposer``
    when the slot is another validator's."""
    timestamp = slot_start(chain.params, slot)
    template = chain.build_block(
        key.address, candidates, now=now, timestamp=timestamp, proposer=key.public_key, votes=votes
    )
    sealed = seal_header(key, chain.chain_id, template.block.header)
    return msgspec.structs.replace(template.block, header=sealed), template
