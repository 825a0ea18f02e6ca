"""Blocks: header and body, their canonical bytes and hashes."""

from __future__ import annotations

from gridnet.crypto.hashing import header_hash
from gridnet.encoding import Wire, encode
from gridnet.ledger.header import BLOCK_VERSION, Checkpoint, Header, SignedVote, Vote
from gridnet.ledger.transactions import Transaction
from gridnet.units import Hash32

__all__ = [
    "BLOCK_VERSION",
    "Block",
    "BlockBody",
    "Checkpoint",
    "Header",
    "SignedVote",
    "Vote",
    "block_hash",
    "encode_body",
]


class Block(Wire, frozen=True):
    header: Header
    txs: tuple[Transaction, ...]
    votes: tuple[SignedVote, ...] = ()
    """Permissioned chain: finality votes the block carries (its transaction root commits to
    them after the transactions); none on a proof-of-work chain."""


class BlockBody(Wire, frozen=True):
    """What a store keeps of a block beside its header."""

    txs: tuple[Transaction, ...]
    votes: tuple[SignedVote, ...] = ()


def encode_body(block: Block) -> bytes:
    return encode(BlockBody(block.txs, block.votes))


def block_hash(header: Header) -> Hash32:
    return header_hash(encode(header))
