"""Datagrams and what a relay does with one (sans-IO, pure apart from its small caches).

A datagram carries its originator's transmission token, the originator's identity proof
(its stake) and the onion layer for the hop that receives it: nothing else. The
end-to-end payload is an :class:`Envelope` (a random nonce and the body), sealed to the
receiver; the token binds ``datagram_digest(receipt)``, where the receipt is the digest of
the encoded envelope, which only the receiver can compute (and reveals in its claim to
prove delivery).

The path's accounts travel inside the onion: each relay's layer holds its own hop ticket
(``relay.hops``), checked against the hop root the token carries under the sender's
signature. No relay sees another relay's entry, and the receiver sees none.

A relay (:meth:`Relay.handle`): checks the originator is a registered identity carrying its
registered proof and not flagged by an authority the relay trusts; peels its onion layer;
checks the token (the pool owner's signature for the chain it reads, ``RelayView.chain_id``:
a token signed for another chain's pool of the same id is refused; a pool whose claims can still be mined for
``POOL_EXPIRY_MARGIN`` blocks; a depth within the pool and within
``MAX_RELAY_STEPS`` of what it last verified; the preimage on the pool's chain; never a
depth twice); then either, as the receiver, checks the token pays for this very envelope
and delivers it, or checks its hop ticket and that the next hop is a registered identity,
keeps the ticket (with the token, it is what the relay later claims) and forwards. The
receiver keeps the deepest token of each connection with its receipt, and as stepping stones
the fewest shallower ones that keep each claim within ``MAX_CLAIM_UNITS``: one transit claim
(one per stone of a connection deeper than that) proves the connection's delivery.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Final, Protocol

import msgspec

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.hashing import datagram_digest, hash32
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import Wire, decode, encode
from gridnet.errors import (
    FlaggedOriginator,
    HopEntryInvalid,
    IdentityStakeMismatch,
    PoolExpiring,
    TokenNotForDatagram,
    TokenPreimageInvalid,
    TokenReplayed,
    UnknownPool,
    UnregisteredNextHop,
    UnregisteredOriginator,
)
from gridnet.identity import IdentityProof
from gridnet.ledger.merkle import EMPTY_ROOT
from gridnet.relay.claims import MAX_CLAIM_UNITS, HopClaim, SignedClaim, TransitClaim, hop_payable, sign_claim
from gridnet.relay.hops import HopBook, verify_ticket
from gridnet.relay.onion import build_onion, peel
from gridnet.relay.tokens import (
    MAX_POOL_LENGTH,
    HashChain,
    SignedToken,
    check_preimage,
    check_token_signature,
    hash_forward,
    issue_token,
)
from gridnet.units import Address, Hash32, PublicKey

MAX_SEEN: Final = 4096
"""Depths per pool a relay remembers to refuse replays (older ones are refused outright)."""
MAX_RELAY_STEPS: Final = 4096
"""Most hashing one datagram may cost a relay (a token this far from what it saw is refused)."""
MAX_KEPT_HOP_CLAIMS: Final = 32
"""Hop claims a relay keeps per pool, spread over the depths not yet redeemed (it claims the
deepest one the pool's receivers have reached)."""
POOL_EXPIRY_MARGIN: Final = 144
"""Blocks after the chain's head in which a claim on a datagram's pool must still be minable
for a relay to carry it (``PoolExpiring``): the chain takes a claim only in a block below the
pool's ``expiry_height`` (``PoolExpired``), and the owner then reclaims all it did not pay.
Carrying is paid by two rounds of claims, each mined after the one before: the receiver's
transit claims (one transaction per stepping stone of the connection, in nonce order), then
the relays' hop claims, which the chain takes only up to the depth a receiver's claim
redeemed (``HopNotDelivered``), so each relay submits them once it reads that claim on chain
(``Relay.collectable``). A round takes one block at best; a transaction that block building
refuses for want of a block it follows (a hop claim at a node that has not yet received the
receiver's claim's block) stays pending ``ledger.mempool.DEFER_BLOCKS`` = 6 blocks; the
simulator waits at most 6 simulated hours for each round to be mined, 72 blocks at the
scenarios' default block interval of 300 s. Two rounds of 72: 144 blocks. What it does not
cover is the receiver's choice of when to claim (the simulator's receivers claim at the end
of the run, on pools that expire long after it) and how long a carrier holds a datagram: the
receiver checks the pool again when the datagram reaches it."""


class Envelope(Wire, frozen=True):
    nonce: Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
    """Random: hides the body's digest from relays (who see the token)."""
    body: bytes


class Datagram(Wire, frozen=True):
    token: SignedToken
    identity: IdentityProof
    """The originator's (the token owner's) identity proof-of-work: its stake."""
    onion: bytes
    """The layer for the hop that receives this datagram."""


def envelope_receipt(envelope: bytes) -> Hash32:
    """The receipt of an encoded envelope (BLAKE2b-256, ``gn-generic``): only who opened the
    receiver's layer can compute it; the token binds ``datagram_digest(receipt)``."""
    return hash32(envelope)


class PoolInfo(Protocol):
    @property
    def owner(self) -> bytes: ...
    @property
    def redeemed_depth(self) -> int: ...
    @property
    def anchor(self) -> bytes: ...
    @property
    def length(self) -> int: ...
    @property
    def unit_value(self) -> int: ...
    @property
    def expiry_height(self) -> int: ...


class RelayView(Protocol):
    """What a relay reads from the chain."""

    @property
    def height(self) -> int:
        """The height of the chain's head (the next block is one higher)."""
        ...

    @property
    def chain_id(self) -> Hash32:
        """The chain's id (its genesis hash): what tokens and claims are signed for."""
        ...

    def pool(self, pool: Hash32) -> PoolInfo | None: ...
    def identity_proof(self, address: Address) -> IdentityProof | None: ...
    def flagged_by(self, address: Address) -> frozenset[Address]: ...
    def hop_paid(self, pool: Hash32, relay: Address) -> int: ...


@dataclass(frozen=True)
class Forwarded:
    next_hop: Address
    datagram: Datagram
    claim: HopClaim
    """The relay's hop ticket with the token: what it keeps once it hands the datagram on."""


@dataclass(frozen=True)
class Delivered:
    envelope: Envelope
    datagram: Datagram
    receipt: Hash32
    """What the receiver's claim reveals to prove this delivery."""
    redeemed_depth: int
    """The pool's redeemed depth on chain when the datagram was checked."""


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
    *,
    chain_id: Hash32,
    book: HopBook | None = None,
) -> Datagram:
    """A new datagram whose token reveals the pool down to ``depth`` (cumulative), signed
    for the chain ``chain_id`` (the pool's: its genesis hash).

    ``book`` holds the connection's accounts: the units from its last depth to ``depth``
    are shared along ``path`` with payrate ``payrate_ppm`` and every relay of the path gets
    its hop ticket; the book advances once the datagram is built. Without a book the
    datagram is a connection of its own (its relays are credited every unit to ``depth``):
    its pool's only datagram, since a second would credit the same units again, a fraud its
    sender's stake answers for (``relay.fraud``). Keep the book across restarts for the same
    reason: one token per depth of a pool.
    """
    book = HopBook(os.urandom(32)) if book is None else book
    credit = book.plan(depth, [address for address, _ in path], payrate_ppm)
    envelope = encode(Envelope(nonce, body))
    onion = build_onion(path, receiver, envelope, credit.tickets)
    token = issue_token(
        sender, chain_id, chain, pool, depth, datagram_digest(envelope_receipt(envelope)), credit.root
    )
    book.commit(credit)
    return Datagram(token, identity, onion)


def check_pool_life(pool: PoolInfo, height: int) -> None:
    """Raise ``PoolExpiring`` unless a claim on ``pool`` can still be mined in each of the
    ``POOL_EXPIRY_MARGIN`` blocks after ``height`` (the chain's head): the chain takes one only
    in a block below the pool's ``expiry_height``, so ``expiry_height - height - 1`` blocks
    are left, and the margin asks for ``expiry_height > height + POOL_EXPIRY_MARGIN``."""
    left = pool.expiry_height - height - 1
    if left <= 0:
        raise PoolExpiring(
            f"the pool expired at height {pool.expiry_height} (the head is at {height}): no claim on it "
            "can be mined, its owner reclaims it all; its sender must pay from a new pool"
        )
    if left < POOL_EXPIRY_MARGIN:
        raise PoolExpiring(
            f"the pool expires at height {pool.expiry_height}: claims on it can be mined in {left} more "
            f"block(s) after the head at {height}, fewer than the {POOL_EXPIRY_MARGIN} the receiver's "
            "and the relays' claims need; its sender must pay from a new pool"
        )


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
    hop_claims: dict[Hash32, list[HopClaim]] = field(default_factory=dict)
    """Pool -> hop tickets this relay forwarded under, with their tokens, by depth (at most
    ``MAX_KEPT_HOP_CLAIMS``, :meth:`_keep`)."""

    def accept(self, outcome: Forwarded | Delivered) -> None:
        """Take on a checked datagram (:meth:`check`) that is delivered, or handed on or held
        for its next hop: its depth is used up at this relay and a forwarded one's hop claim
        kept. A datagram dropped after its check (no route to its next hop) is never accepted."""
        token = outcome.datagram.token.token
        if token.depth > self.anchors.get(token.pool, (0, b""))[0]:
            self.anchors[token.pool] = (token.depth, token.preimage)
        seen = self.seen.setdefault(token.pool, set())
        seen.add(token.depth)
        if len(seen) > MAX_SEEN:
            oldest = min(seen)
            seen.discard(oldest)
            self.floors[token.pool] = oldest
        if isinstance(outcome, Forwarded):
            self._keep(outcome.claim)

    def _keep(self, claim: HopClaim) -> None:
        """Keep ``claim`` among the pool's hop claims, which stay spread over the depths the
        receivers may yet claim. Credits are cumulative, so the chain pays the deepest claim at
        or below the pool's redeemed depth: the shallower ones are dropped, and so is that one
        once the pool paid all it credits. When more than ``MAX_KEPT_HOP_CLAIMS`` are left,
        the claim dropped is the one whose removal leaves the smallest gap between its
        neighbours (the redeemed depth before the shallowest), never the deepest nor the one
        the chain pays now: whatever depth a receiver claims, this relay's pay falls short by
        its credit over one such gap at most."""
        pool_id = claim.token.token.pool
        kept = self.hop_claims.setdefault(pool_id, [])
        bisect.insort(kept, claim, key=_depth)
        pool = self.view.pool(pool_id)
        if pool is not None:
            self._trim(pool_id, pool, kept)

    def _trim(self, pool_id: Hash32, pool: PoolInfo, kept: list[HopClaim]) -> None:
        redeemed = pool.redeemed_depth
        payable = bisect.bisect_right(kept, redeemed, key=_depth)  # claims at or below it
        del kept[: max(payable - 1, 0)]
        if payable and hop_payable(kept[0].ticket.entry.credit, pool.unit_value) <= self.view.hop_paid(
            pool_id, self.key.address
        ):
            del kept[0]
        while len(kept) > MAX_KEPT_HOP_CLAIMS:
            first = 1 if _depth(kept[0]) <= redeemed else 0
            depths = [redeemed, *map(_depth, kept)]  # depths[i] is the depth before kept[i]
            drop = min(range(first, len(kept) - 1), key=lambda i: depths[i + 2] - depths[i])
            del kept[drop]

    def handle(self, dgram: Datagram) -> Forwarded | Delivered:
        """Check a received datagram and accept it at once (a relay that always hands on
        what it forwards); raises the named rule."""
        outcome = self.check(dgram)
        self.accept(outcome)
        return outcome

    def check(self, dgram: Datagram) -> Forwarded | Delivered:
        """What to do with a received datagram, the relay unchanged: forward or deliver it;
        raises the named rule."""
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
        check_token_signature(dgram.token, pool.owner, self.view.chain_id)
        check_pool_life(pool, self.view.height)
        seen = self.seen.get(token.pool, set())
        floor = max(pool.redeemed_depth, self.floors.get(token.pool, 0))
        if token.depth <= floor or token.depth in seen:
            raise TokenReplayed(f"a token at depth {token.depth} of this pool was already carried or paid")
        depth, preimage = self.anchors.get(token.pool, (pool.redeemed_depth, pool.anchor))
        if pool.redeemed_depth > depth:  # the receivers claimed past what this relay verified
            depth, preimage = pool.redeemed_depth, pool.anchor
        if token.depth > pool.length or abs(token.depth - depth) > MAX_RELAY_STEPS:
            raise TokenPreimageInvalid(
                f"depth {token.depth} is outside the pool or more than {MAX_RELAY_STEPS} steps from {depth}"
            )
        if token.depth > depth:  # deeper than any seen: it must hash down to what was
            check_preimage(dgram.token, preimage, depth)
        elif hash_forward(preimage, depth - token.depth) != token.preimage:  # overtaken on the way
            raise TokenPreimageInvalid(f"preimage at depth {token.depth} does not hash to the pool's chain")
        if peeled.next_hop is None:  # the receiver: is this what the token pays for?
            receipt = envelope_receipt(peeled.inner)
            if datagram_digest(receipt) != token.datagram:
                raise TokenNotForDatagram("the token pays for another envelope than the one delivered")
            envelope = decode(peeled.inner, Envelope)
            return Delivered(envelope, dgram, receipt, pool.redeemed_depth)
        if peeled.hop is None:
            raise HopEntryInvalid("this relay's layer carries no hop entry: the sender credits it nothing")
        verify_ticket(peeled.hop, token.hop_root, self.key.address)
        if self.view.identity_proof(peeled.next_hop) is None:  # no stake behind the next hop
            raise UnregisteredNextHop(f"the next hop {peeled.next_hop.hex()} has no registered identity")
        inner = Datagram(dgram.token, dgram.identity, peeled.inner)
        return Forwarded(peeled.next_hop, inner, HopClaim(dgram.token, peeled.hop))

    def prune(self) -> None:
        """Forget what the chain made useless: everything of a pool gone from it (reclaimed),
        and of a pool on it the depths, floor and anchor at or below its redeemed depth (the
        chain's depth refuses and anchors those already) and the hop claims it will not pay."""
        for pool_id in {*self.anchors, *self.seen, *self.floors, *self.hop_claims}:
            pool = self.view.pool(pool_id)
            redeemed = pool.redeemed_depth if pool is not None else MAX_POOL_LENGTH  # (gone: all)
            if self.anchors.get(pool_id, (redeemed + 1, b""))[0] <= redeemed:
                del self.anchors[pool_id]
            if self.floors.get(pool_id, redeemed + 1) <= redeemed:
                del self.floors[pool_id]
            seen = {d for d in self.seen.get(pool_id, ()) if d > redeemed}
            if seen:
                self.seen[pool_id] = seen
            else:
                self.seen.pop(pool_id, None)
            kept = self.hop_claims.get(pool_id, [])
            if pool is not None:
                self._trim(pool_id, pool, kept)
            if not kept or pool is None:
                self.hop_claims.pop(pool_id, None)

    def collectable(self) -> list[HopClaim]:
        """For each pool, the deepest hop claim the chain pays now: its token no deeper than
        the pool's receivers claimed, its credit worth more than the pool paid this relay
        (forgetting first what the chain made useless, :meth:`prune`)."""
        self.prune()
        out: list[HopClaim] = []
        for pool_id, kept in self.hop_claims.items():
            pool = self.view.pool(pool_id)
            if pool is not None and _depth(kept[0]) <= pool.redeemed_depth:  # (trimmed: payable)
                out.append(kept[0])
        return out


def _depth(claim: HopClaim) -> int:
    return claim.token.token.depth


@dataclass
class Stone:
    """A delivered token kept for a claim, with its receipt."""

    token: SignedToken
    receipt: Hash32
    datagrams: int
    """Datagrams counted to this stone: delivered above the stone before it, as the
    stones stood when each arrived (a stone dropped passes its count to the next)."""


def _stone_depth(stone: Stone) -> int:
    return stone.token.token.depth


@dataclass
class Connection:
    """What a receiver keeps of one originator's stream through one pool: stepping stones,
    by depth, each at most ``MAX_CLAIM_UNITS`` above the one before (``base`` before the
    first), the deepest always among them, as few as that allows."""

    base: int
    """The pool's redeemed depth when the connection's first datagram was delivered (the
    chain's only grows: the first claim reveals at most ``MAX_CLAIM_UNITS`` above it)."""
    stones: list[Stone] = field(default_factory=list)


@dataclass
class Inbox:
    """A receiver's connections, for the transit claims it signs when they end."""

    key: PrivateKey
    chain_id: Hash32
    """The chain the claims are signed for (its genesis hash)."""
    connections: dict[Hash32, Connection] = field(default_factory=dict)

    def record(self, delivered: Delivered) -> None:
        """Count a delivery and keep its token as a stone, dropping every stone (but the
        deepest) whose neighbours are at most ``MAX_CLAIM_UNITS`` apart (``base`` before the
        first): a connection keeps at most ``2 * length / MAX_CLAIM_UNITS + 2`` stones, 22
        for the longest pool."""
        token = delivered.datagram.token
        conn = self.connections.setdefault(token.token.pool, Connection(delivered.redeemed_depth))
        stones = conn.stones
        i = bisect.bisect_left(stones, token.token.depth, key=_stone_depth)
        if i < len(stones) and _stone_depth(stones[i]) == token.token.depth:
            stones[i].datagrams += 1  # (a depth delivered again, once the receiver forgot it)
            return
        stones.insert(i, Stone(token, delivered.receipt, 1))
        i = 0
        while i < len(stones) - 1:  # dropping a stone only widens its neighbours' gaps
            before = _stone_depth(stones[i - 1]) if i else conn.base
            if _stone_depth(stones[i + 1]) - before <= MAX_CLAIM_UNITS:
                stones[i + 1].datagrams += stones.pop(i).datagrams
            else:
                i += 1

    def close(self) -> list[SignedClaim]:
        """End every connection: one signed claim per stone, in depth order (submit them in
        that order: each claims from the depth the one before it redeemed), only for
        connections whose sender credited relays (the deepest token's hop root not empty)."""
        claims = [
            sign_claim(
                self.key, self.chain_id, TransitClaim(s.token, s.receipt, self.key.public_key, s.datagrams)
            )
            for c in self.connections.values()
            if c.stones[-1].token.token.hop_root != EMPTY_ROOT
            for s in c.stones
        ]
        self.connections.clear()
        return claims
