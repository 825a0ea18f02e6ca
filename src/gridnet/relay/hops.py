"""Tamper-proof hop lists and the payrate shares they earn.

Each intermediary, when it forwards, appends an entry naming itself (its key) and the
next hop, chained to the previous entry by digest (the first entry to the token) and
signed. Removing an intermediary breaks the next entry's link; inserting one before a
later hop would need that hop's signature on a new link: both fail as ``HopListBroken``.

Shares (seed 001 Figure 2): the first hop holds the whole reward; each time a holder
forwards, it hands ``p`` of its current share to the next. With hops 1..m, hop i keeps
``p^(i-1)(1-p)`` of the reward and the last ``p^(m-1)``. In integers: each hop passes
``floor(held * p)`` on and keeps the rest, so the shares always sum to the reward.
Consecutive entries by the same identity are one hop (they gain nothing by repeating
themselves), and any run of hops that reaches the receiver earns exactly what its first
hop would earn delivering alone. A run in the middle of a path made of *different*
identities does shift coin from the hops after it: every hop is a registered identity
with its own proof-of-work stake, and that stake is what such artificial hops cost.
"""

from __future__ import annotations

from collections.abc import Sequence

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.hashing import hop_digest
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import AddressBytes, HashBytes, PublicKeyBytes, SignatureBytes, Wire, encode
from gridnet.errors import HopListBroken, HopSignatureInvalid
from gridnet.relay.tokens import PPM
from gridnet.units import Address, Hash32

MAX_HOPS = 32


class HopBody(Wire, frozen=True):
    hop_key: PublicKeyBytes
    """The forwarding intermediary's key."""
    next_hop: AddressBytes
    """Where it forwarded the datagram (the receiver, for the last entry)."""
    prev: HashBytes
    """Digest of the previous entry (the first entry: of the signed token)."""


class HopEntry(Wire, frozen=True):
    body: HopBody
    signature: SignatureBytes


def entry_digest(entry: HopEntry) -> Hash32:
    return hop_digest(encode(entry))


def append_hop(
    hops: tuple[HopEntry, ...], key: PrivateKey, next_hop: Address, token_digest: Hash32
) -> tuple[HopEntry, ...]:
    """The hop list after ``key`` forwards to ``next_hop``."""
    prev = entry_digest(hops[-1]) if hops else token_digest
    body = HopBody(key.public_key, next_hop, prev)
    return (*hops, HopEntry(body, key.sign(Domain.HOP, encode(body))))


def verify_hops(hops: Sequence[HopEntry], token_digest: Hash32) -> list[Address]:
    """Check the chain of entries; returns the hops' addresses, first to last."""
    if not 1 <= len(hops) <= MAX_HOPS:
        raise HopListBroken(f"a hop list has 1 to {MAX_HOPS} entries")
    prev = token_digest
    addresses: list[Address] = []
    for i, entry in enumerate(hops):
        body = entry.body
        if body.prev != prev:
            raise HopListBroken(f"entry {i} does not chain to the entry before it")
        if not verify_signature(Domain.HOP, body.hop_key, encode(body), entry.signature):
            raise HopSignatureInvalid(f"entry {i} is not signed by the hop it names")
        address = address_from_public_key(body.hop_key)
        if addresses and hops[i - 1].body.next_hop != address:
            raise HopListBroken(f"entry {i - 1} forwarded to another hop than entry {i}")
        addresses.append(address)
        prev = entry_digest(entry)
    return addresses


def hop_shares(reward: int, hops: Sequence[Address], payrate_ppm: int) -> list[tuple[Address, int]]:
    """Each hop's share of ``reward`` [base units]; consecutive repeats count as one hop."""
    merged: list[Address] = []
    for h in hops:
        if not merged or merged[-1] != h:
            merged.append(h)
    shares = []
    held = reward
    for h in merged[:-1]:
        passed = held * payrate_ppm // PPM
        shares.append((h, held - passed))
        held = passed
    if merged:
        shares.append((merged[-1], held))
    return shares
