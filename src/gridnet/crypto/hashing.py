"""All hashing in GRIDNET goes through this module (BLAKE2b).

Every use has its own personalisation string, so a digest made for one purpose
can never be confused with a digest made for another. Outside the protocol, a sweep's run ids
are SHA-256 (``sha256_hex``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
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

_Blake2b = hashlib.blake2b


def _empty(person: bytes, size: int = HASH_BYTES, key: bytes = b"") -> _Blake2b:
    """A BLAKE2b state with nothing hashed yet, for ``_digest`` to copy: copying one is a
    memcpy, where setting up a new one's parameter block costs about as much as hashing
    the few dozen bytes most digests here cover."""
    return hashlib.blake2b(digest_size=size, person=person, key=key)


def _digest(empty: _Blake2b, data: bytes) -> bytes:
    h = empty.copy()
    h.update(data)
    return h.digest()


_ADDRESS = _empty(P_ADDRESS, ADDRESS_BYTES)
_CHECKSUM = _empty(P_CHECKSUM, 4)
_TXID = _empty(P_TXID)
_HEADER = _empty(P_HEADER)
_MERKLE_LEAF = _empty(P_MERKLE_LEAF)
_MERKLE_NODE = _empty(P_MERKLE_NODE)
_STATE_LEAF = _empty(P_STATE_LEAF)
_STATE_BUCKET = _empty(P_STATE_BUCKET)
_STATE_NODE = _empty(P_STATE_NODE)
_STATE_PATH = _empty(P_STATE_PATH)
_IDENTITY = _empty(P_IDENTITY)
_PARAMS = _empty(P_PARAMS)
_ORDER = _empty(P_ORDER)
_TOKEN_CHAIN = _empty(P_TOKEN_CHAIN)
_DATAGRAM = _empty(P_DATAGRAM)
_HOP = _empty(P_HOP)
_POOL = _empty(P_POOL)
_BY_PERSON: dict[bytes, _Blake2b] = {}
"""Empty states for ``hash32``'s personalisations, made on first use."""


def hash32(data: bytes, person: bytes = P_GENERIC) -> Hash32:
    """32-byte BLAKE2b digest of ``data`` under the personalisation ``person``."""
    empty = _BY_PERSON.get(person)
    if empty is None:
        empty = _BY_PERSON.setdefault(person, _empty(person))
    return _digest(empty, data)


def hash32_chunks(chunks: Iterable[bytes], person: bytes = P_GENERIC) -> Hash32:
    """``hash32`` of the chunks' concatenation, hashed as they come: a file read piece by
    piece is never held whole."""
    empty = _BY_PERSON.get(person)
    if empty is None:
        empty = _BY_PERSON.setdefault(person, _empty(person))
    h = empty.copy()
    for chunk in chunks:
        h.update(chunk)
    return h.digest()


def address_digest(public_key: bytes) -> bytes:
    """20-byte address digest of an Ed25519 public key."""
    return _digest(_ADDRESS, public_key)


def checksum4(data: bytes) -> bytes:
    """4-byte checksum for text forms (addresses)."""
    return _digest(_CHECKSUM, data)


def txid(body: bytes, signature: bytes) -> Hash32:
    """Transaction id: the digest of its canonical body and its signature."""
    h = _TXID.copy()
    h.update(body)
    h.update(signature)
    return h.digest()


def vote_id(encoded_vote: bytes) -> Hash32:
    """Id of a signed finality vote (a leaf of its block's transaction root)."""
    return hash32(encoded_vote, P_VOTE)


def signature_check_key(salt: bytes) -> _Blake2b:
    """What ``signature_check_id`` takes for a signature cache with the secret ``salt``."""
    return _empty(P_SIG_CACHE, key=salt)


def signature_check_id(
    keyed: _Blake2b, domain_tag: bytes, public_key: bytes, signature: bytes, message: bytes
) -> Hash32:
    """What a signature cache remembers of one successful check: keyed by the cache's secret
    salt (``signature_check_key``; so no one can aim a collision at it). The tag ends in NUL
    and the key and signature have fixed lengths, so the parts cannot be shifted into one
    another."""
    h = keyed.copy()
    h.update(domain_tag)
    h.update(public_key)
    h.update(signature)
    h.update(message)
    return h.digest()


def header_hash(encoded_header: bytes) -> Hash32:
    """Block hash: the digest of the canonical header (the proof-of-work digest too)."""
    return _digest(_HEADER, encoded_header)


def merkle_leaf(item: bytes) -> Hash32:
    return _digest(_MERKLE_LEAF, item)


def merkle_node(left: bytes, right: bytes) -> Hash32:
    return _digest(_MERKLE_NODE, left + right)


def state_leaf(key: bytes, value: bytes) -> Hash32:
    """Digest of one state entry; the key's length (< 256) makes the split unambiguous."""
    return _digest(_STATE_LEAF, len(key).to_bytes(1, "big") + key + value)


def state_bucket(concatenated_leaves: bytes) -> Hash32:
    return _digest(_STATE_BUCKET, concatenated_leaves)


def state_node(concatenated_children: bytes) -> Hash32:
    return _digest(_STATE_NODE, concatenated_children)


def state_path(key: bytes) -> bytes:
    """Where a state key sits in the commitment trie (its nibbles are the path)."""
    return _digest(_STATE_PATH, key)


def identity_digest(data: bytes) -> Hash32:
    return _digest(_IDENTITY, data)


def params_hash(encoded_params: bytes) -> Hash32:
    return _digest(_PARAMS, encoded_params)


def order_digest(encoded_order: bytes) -> Hash32:
    """Market order id: the digest of the canonical order (its signature left out)."""
    return _digest(_ORDER, encoded_order)


def token_chain_step(h: bytes) -> Hash32:
    """One step of a token pool's hash chain: h(i+1) = H(h(i))."""
    return _digest(_TOKEN_CHAIN, h)


def datagram_digest(encoded: bytes) -> Hash32:
    return _digest(_DATAGRAM, encoded)


def hop_digest(encoded: bytes) -> Hash32:
    """A hop entry's leaf in the hop tree whose root the sender signs (relay/hops.py)."""
    return _digest(_HOP, encoded)


def registered_id(tag: bytes, registrant: bytes, name: str) -> Hash32:
    """The id of a group named ``name`` by the key ``registrant`` (the sender of its
    registration), under the group kind's ``tag`` (``b"credit-bank/"``...): each registrant
    names its own, so nobody takes a name from another."""
    return hash32(tag + registrant + name.encode())


def pool_id(owner: bytes, final_hash: bytes) -> Hash32:
    return _digest(_POOL, owner + final_hash)


def digest_int(digest: bytes) -> int:
    """A digest read as a big-endian unsigned integer (for target comparisons)."""
    return int.from_bytes(digest, "big")


def sha256_hex(data: bytes) -> str:
    """SHA-256 in hex: a sweep's run ids (of its scenario and the files it reads), no part of
    the protocol."""
    return hashlib.sha256(data).hexdigest()
