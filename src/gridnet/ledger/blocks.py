"""Blocks: header and body, their canonical bytes and hashes."""

from __future__ import annotations

from gridnet.crypto.hashing import header_hash
from gridnet.encoding import U32, U63, AddressBytes, HashBytes, Wire, encode
from gridnet.ledger.transactions import Transaction
from gridnet.units import Hash32

BLOCK_VERSION = 1


class Header(Wire, frozen=True):
    version: U32
    height: U63
    prev_hash: HashBytes
    """Hash of the parent header (genesis: digest of the chain parameters)."""
    tx_root: HashBytes
    """Merkle root of the transaction ids."""
    state_root: HashBytes
    """Root of the state commitment after this block."""
    timestamp: U63
    """[ms since the Unix epoch]"""
    target: HashBytes
    """Proof-of-work target: the header hash read as an integer must be below it."""
    nonce: U63
    miner: AddressBytes
    """Receives the coinbase."""


class Block(Wire, frozen=True):
    header: Header
    txs: tuple[Transaction, ...]


def block_hash(header: Header) -> Hash32:
    return header_hash(encode(header))
