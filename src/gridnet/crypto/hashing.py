"""All hashing in GRIDNET goes through this module (BLAKE2b).

Every use has its own personalisation string, so a digest made for one purpose
can never be confused with a digest made for another.
"""

from __future__ import annotations

import hashlib
from typing import Final

from gridnet.units import ADDRESS_BYTES, HASH_BYTES, Hash32

# Personalisations (at most 16 bytes each).
P_ADDRESS: Final = b"gn-address"
P_CHECKSUM: Final = b"gn-addr-check"
P_TXID: Final = b"gn-txid"
P_HEADER: Final = b"gn-header"
P_MERKLE_LEAF: Final = b"gn-merkle-leaf"
P_MERKLE_NODE: Final = b"gn-merkle-node"
P_STATE_LEAF: Final = b"gn-state-leaf"
P_STATE_BUCKET: Final = b"gn-state-bucket"
P_STATE_NODE: Final = b"gn-state-node"
P_STATE_PATH: Final = b"gn-state-path"
P_IDENTITY: Final = b"gn-identity"
P_PARAMS: Final = b"gn-params"
P_ORDER: Final = b"gn-order"
P_TOKEN_CHAIN: Final = b"gn-token-chain"
P_DATAGRAM: Final = b"gn-datagram"
P_HOP: Final = b"gn-hop"
P_POOL: Final = b"gn-pool"
P_FIRMWARE: Final = b"gn-firmware"
P_VOTE: Final = b"gn-vote"
P_GENERIC: Final = b"gn-generic"
P_SIG_CACHE: Final = b"gn-sig-cache"

_blake2b = hashlib.blake2b


def hash32(data: bytes, person: bytes = P_GENERIC) -> Hash32:
    """32-byte BLAKE2b digest of ``data`` under the personalisation ``person``."""
    return _blake2b(data, digest_size=HASH_BYTES, person=person).digest()


def address_digest(public_key: bytes) -> bytes:
    """20-byte address digest of an Ed25519 public key."""
    return _blake2b(public_key, digest_size=ADDRESS_BYTES, person=P_ADDRESS).digest()


def checksum4(data: bytes) -> bytes:
    """4-byte checksum for text forms (addresses)."""
    return _blake2b(data, digest_size=4, person=P_CHECKSUM).digest()


def txid(body: bytes, signature: bytes) -> Hash32:
    """Transaction id: the digest of its canonical body and its signature."""
    h = _blake2b(body, digest_size=HASH_BYTES, person=P_TXID)
    h.update(signature)
    return h.digest()


def vote_id(encoded_vote: bytes) -> Hash32:
    """Id of a signed finality vote (a leaf of its block's transaction root)."""
    return hash32(encoded_vote, P_VOTE)


def signature_check_id(
    salt: bytes, domain_tag: bytes, public_key: bytes, signature: bytes, message: bytes
) -> Hash32:
    """What a signature cache remembers of one successful check: keyed by the cache's secret
    ``salt`` (so no one can aim a collision at it). The tag ends in NUL and the key and
    signature have fixed lengths, so the parts cannot be shifted into one another."""
    h = _blake2b(domain_tag, digest_size=HASH_BYTES, key=salt, person=P_SIG_CACHE)
    h.update(public_key)
    h.update(signature)
    h.update(message)
    return h.digest()


def header_hash(encoded_header: bytes) -> Hash32:
    """Block hash: the digest of the canonical header (the proof-of-work digest too)."""
    return _blake2b(encoded_header, digest_size=HASH_BYTES, person=P_HEADER).digest()


def merkle_leaf(item: bytes) -> Hash32:
    return _blake2b(item, digest_size=HASH_BYTES, person=P_MERKLE_LEAF).digest()


def merkle_node(left: bytes, right: bytes) -> Hash32:
    return _blake2b(left + right, digest_size=HASH_BYTES, person=P_MERKLE_NODE).digest()


def state_leaf(key: bytes, value: bytes) -> Hash32:
    """Digest of one state entry; the key's length (< 256) makes the split unambiguous."""
    return _blake2b(
        len(key).to_bytes(1, "big") + key + value, digest_size=HASH_BYTES, person=P_STATE_LEAF
    ).digest()


def state_bucket(concatenated_leaves: bytes) -> Hash32:
    return _blake2b(concatenated_leaves, digest_size=HASH_BYTES, person=P_STATE_BUCKET).digest()


def state_node(concatenated_children: bytes) -> Hash32:
    return _blake2b(concatenated_children, digest_size=HASH_BYTES, person=P_STATE_NODE).digest()


def state_path(key: bytes) -> bytes:
    """Where a state key sits in the commitment trie (its nibbles are the path)."""
    return _blake2b(key, digest_size=HASH_BYTES, person=P_STATE_PATH).digest()


def identity_digest(data: bytes) -> Hash32:
    return _blake2b(data, digest_size=HASH_BYTES, person=P_IDENTITY).digest()


def params_hash(encoded_params: bytes) -> Hash32:
    return _blake2b(encoded_params, digest_size=HASH_BYTES, person=P_PARAMS).digest()


def order_digest(encoded_order: bytes) -> Hash32:
    """Market order id: the digest of the canonical order (its signature left out)."""
    return _blake2b(encoded_order, digest_size=HASH_BYTES, person=P_ORDER).digest()


def token_chain_step(h: bytes) -> Hash32:
    """One step of a token pool's hash chain: h(i+1) = H(h(i))."""
    return _blake2b(h, digest_size=HASH_BYTES, person=P_TOKEN_CHAIN).digest()


def datagram_digest(encoded: bytes) -> Hash32:
    return _blake2b(encoded, digest_size=HASH_BYTES, person=P_DATAGRAM).digest()


def hop_digest(encoded: bytes) -> Hash32:
    """A hop entry's leaf in the hop tree whose root the sender signs (relay/hops.py)."""
    return _blake2b(encoded, digest_size=HASH_BYTES, person=P_HOP).digest()


def pool_id(owner: bytes, final_hash: bytes) -> Hash32:
    return _blake2b(owner + final_hash, digest_size=HASH_BYTES, person=P_POOL).digest()


def digest_int(digest: bytes) -> int:
    """A digest read as a big-endian unsigned integer (for target comparisons)."""
    return int.from_bytes(digest, "big")
