"""Datagrams and what a relay does with one (sans-IO, pure apart from its small cache).

A datagram carries its originator's transmission token, the originator's identity proof
(its stake), the hop list so far, and the onion layer for the hop that receives it. The
end-to-end payload is an :class:`Envelope` (a random nonce and the body), sealed to the
receiver; the token binds the digest of the encoded envelope, which only the receiver can
recompute.

A relay (:meth:`Relay.handle`): checks the originator is a registered identity carrying its
registered proof and not flagged by an authority the relay trusts; peels its onion layer;
checks the token (the pool owner's signature; a depth within the pool and within
``MAX_RELAY_STEPS`` of what it last verified; the preimage on the pool's chain; never a
depth twice); then either appends its signed hop entry and forwards to the next hop, or —
as the receiver — checks the token pays for this very envelope and the hop list is intact
(so one bad relay cannot spoil the connection's claim), and delivers it. The receiver keeps
the deepest token of each connection with its hop list: one transit claim pays every hop
for all of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Protocol

import msgspec

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.hashing import datagram_digest
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import Wire, decode, encode
from gridnet.errors import (
    FlaggedOriginator,
    IdentityStakeMismatch,
    TokenNotForDatagram,
    TokenPreimageInvalid,
    TokenReplayed,
    UnknownPool,
    UnregisteredOriginator,
)
from gridnet.identity import IdentityProof
from gridnet.relay.claims import SignedClaim, TransitClaim, sign_claim, token_digest
from gridnet.relay.hops import HopEntry, append_hop, verify_hops
from gridnet.relay.onion import build_onion, peel
from gridnet.relay.tokens import (
    HashChain,
    SignedToken,
    check_preimage,
    check_token_signature,
    hash_forward,
    issue_token,
)
from gridnet.units import Address, Hash32, PublicKey

MAX_SEEN = 4096
"""Depths per pool a relay remembers to refuse replays (older ones are refused outright)."""
MAX_RELAY_STEPS = 4096
"""Most hashing one datagram may cost a relay (a token this far from what it saw is refused)."""


class Envelope(Wire, frozen=True):
    nonce: Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
    """Random: hides the body's digest from relays (who see the token)."""
    body: bytes


class Datagram(Wire, frozen=True):
    token: SignedToken
    identity: IdentityProof
    """The originator's (the token owner's) identity proof-of-work: its stake."""
    hops: tuple[HopEntry, ...]
    onion: bytes
    """The layer for the hop that receives this datagram."""


class PoolInfo(Protocol):
    @property
    def owner(self) -> bytes: ...
    @property
    def redeemed_depth(self) -> int: ...
    @property
    def anchor(self) -> bytes: ...
    @property
    def length(self) -> int: ...


class RelayView(Protocol):
    """What a relay reads from the chain."""

    def pool(self, pool: Hash32) -> PoolInfo | None: ...
    def identity_proof(self, address: Address) -> IdentityProof | None: ...
    def flagged_by(self, address: Address) -> frozenset[Address]: ...


@dataclass(frozen=True)
class Forwarded:
    next_hop: Address
    datagram: Datagram


@dataclass(frozen=True)
class Delivered:
    envelope: Envelope
    datagram: Datagram


def originate(
    sender: PrivateKey,
    chain: HashChain,
    pool: Hash32,
    depth: int,
    payrate_ppm: int,
    identity: IdentityProof,
    path: Sequence[tuple[Address, PublicKey]],
    receiver: tuple[Address, PublicKey],
    body: bytes,
    nonce: bytes,
) -> Datagram:
    """A new datagram whose token reveals the pool down to ``depth`` (cumulative)."""
    envelope = encode(Envelope(nonce, body))
    token = issue_token(sender, chain, pool, depth, datagram_digest(envelope), payrate_ppm)
    return Datagram(token, identity, (), build_onion(list(path), receiver, envelope))


@dataclass
class Relay:
    """One participant's relaying (and receiving) role."""

    key: PrivateKey
    view: RelayView
    trusted_flaggers: frozenset[Address] = frozenset()
    anchors: dict[Hash32, tuple[int, bytes]] = field(default_factory=dict)
    """Pool -> (depth, preimage) of the deepest token this relay verified."""
    seen: dict[Hash32, set[int]] = field(default_factory=dict)
    """Pool -> depths carried recently (datagrams may overtake each other; none twice)."""
    floors: dict[Hash32, int] = field(default_factory=dict)
    """Pool -> depth at or below which every token is refused (forgotten from ``seen``)."""

    def _remember(self, pool: Hash32, depth: int, preimage: bytes, anchor_depth: int) -> None:
        if depth > anchor_depth:
            self.anchors[pool] = (depth, preimage)
        seen = self.seen[pool]
        seen.add(depth)
        if len(seen) > MAX_SEEN:
            oldest = min(seen)
            seen.discard(oldest)
            self.floors[pool] = oldest

    def handle(self, dgram: Datagram) -> Forwarded | Delivered:
        """Check a received datagram and forward or deliver it; raises the named rule."""
        token = dgram.token.token
        originator = address_from_public_key(token.owner_key)
        registered = self.view.identity_proof(originator)
        if registered is None:
            raise UnregisteredOriginator("the datagram's originator has no registered identity")
        if registered != dgram.identity:
            raise IdentityStakeMismatch("the datagram carries another identity proof than the registered one")
        if self.view.flagged_by(originator) & self.trusted_flaggers:
            raise FlaggedOriginator("an authority this relay trusts flagged the originator")
        peeled = peel(self.key, dgram.onion)
        pool = self.view.pool(token.pool)
        if pool is None:
            raise UnknownPool("the token names no pool on chain")
        check_token_signature(dgram.token, pool.owner)
        seen = self.seen.setdefault(token.pool, set())
        floor = max(pool.redeemed_depth, self.floors.get(token.pool, 0))
        if token.depth <= floor or token.depth in seen:
            raise TokenReplayed(f"a token at depth {token.depth} of this pool was already carried or paid")
        depth, preimage = self.anchors.get(token.pool, (pool.redeemed_depth, pool.anchor))
        if token.depth > pool.length or abs(token.depth - depth) > MAX_RELAY_STEPS:
            raise TokenPreimageInvalid(
                f"depth {token.depth} is outside the pool or more than {MAX_RELAY_STEPS} steps from {depth}"
            )
        if token.depth > depth:  # deeper than any seen: it must hash down to what was
            check_preimage(dgram.token, preimage, depth)
        elif hash_forward(preimage, depth - token.depth) != token.preimage:  # overtaken on the way
            raise TokenPreimageInvalid(f"preimage at depth {token.depth} does not hash to the pool's chain")
        if peeled.next_hop is None:  # the receiver: is this what the token pays for, carried intact?
            if datagram_digest(peeled.inner) != token.datagram:
                raise TokenNotForDatagram("the token pays for another envelope than the one delivered")
            if dgram.hops:
                verify_hops(dgram.hops, token_digest(dgram.token))
            envelope = decode(peeled.inner, Envelope)
        self._remember(token.pool, token.depth, token.preimage, depth)
        if peeled.next_hop is None:
            return Delivered(envelope, dgram)
        hops = append_hop(dgram.hops, self.key, peeled.next_hop, token_digest(dgram.token))
        return Forwarded(peeled.next_hop, Datagram(dgram.token, dgram.identity, hops, peeled.inner))


@dataclass
class Connection:
    """What a receiver keeps of one originator's stream through one pool."""

    token: SignedToken
    hops: tuple[HopEntry, ...]
    datagrams: int = 0


@dataclass
class Inbox:
    """A receiver's connections, for the transit claims it signs when they end."""

    key: PrivateKey
    connections: dict[Hash32, Connection] = field(default_factory=dict)

    def record(self, delivered: Delivered) -> None:
        d = delivered.datagram
        pool = d.token.token.pool
        current = self.connections.get(pool)
        if current is None or d.token.token.depth > current.token.token.depth:
            count = current.datagrams if current else 0
            self.connections[pool] = Connection(d.token, d.hops, count + 1)
        else:
            current.datagrams += 1

    def close(self) -> list[SignedClaim]:
        """End every connection: one signed claim each (only for hop-carried ones)."""
        claims = [
            sign_claim(self.key, TransitClaim(c.token, c.hops, self.key.public_key, c.datagrams))
            for c in self.connections.values()
            if c.hops
        ]
        self.connections.clear()
        return claims
