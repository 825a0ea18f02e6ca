"""Block headers and finality votes: what is signed and hashed of a block besides its
transactions (kept apart from ``blocks.py`` so transaction payloads may carry them)."""

from __future__ import annotations

from gridnet.encoding import (
    U32,
    U63,
    AddressBytes,
    HashBytes,
    OptionalKeyBytes,
    OptionalSignatureBytes,
    PublicKeyBytes,
    SignatureBytes,
    Wire,
)

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
    justified: U63 = 0
    """Permissioned chain: the slot of the justified checkpoint in the state after this block
    (fork choice prefers the branch justified in the latest slot); 0 on a proof-of-work chain."""
    proposer: OptionalKeyBytes = b""
    """Permissioned chain: the public key of the validator whose slot this is (empty on a
    proof-of-work chain)."""
    seal: OptionalSignatureBytes = b""
    """Permissioned chain: the proposer's signature of the header with an empty seal
    (``ledger/poa.py``); empty on a proof-of-work chain."""


class Checkpoint(Wire, frozen=True):
    """A block named by height, slot and hash (the genesis: height 0, slot 0 and the chain id).
    The slot is the checkpoint's epoch: what the finality rules compare."""

    height: U63
    slot: U63
    """The slot the block was sealed for (``poa.slot_of`` its timestamp)."""
    hash: HashBytes


class Vote(Wire, frozen=True):
    """A validator's finality vote: a link from the justified checkpoint it knows (source)
    to a later block on the same branch (target); the target's slot is the vote's epoch."""

    source: Checkpoint
    target: Checkpoint


class SignedVote(Wire, frozen=True):
    vote: Vote
    key: PublicKeyBytes
    """The validator's public key."""
    signature: SignatureBytes
    """Ed25519 over chain_id || encoded vote, under the VOTE domain."""
