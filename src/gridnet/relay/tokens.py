"""Token pools and transmission tokens (PROTOCOL.md 6, seed 001 section X).

A pool owner picks a secret seed and a length n, computes the hash chain
``h(0) = seed, h(i+1) = H(h(i))`` and registers ``h(n)`` with n while locking coin on
chain. Each hash is worth ``amount // n`` base units. Revealing ``h(n - d)`` proves
``d`` units committed: anyone checks it by hashing forward ``d`` times to ``h(n)`` (or
fewer times to any later preimage already seen).

A transmission token binds the pool's next preimage(s) to one datagram's digest and to the
root of the connection's hop entries (what the sender credits each relay so far, see
``relay.hops``), and is signed by the pool owner: ``depth`` is cumulative over the
connection, so each token commits ``depth - previous depth`` more units (deeper = higher
priority), and a token cannot be moved to another datagram, nor its hop entries changed,
without breaking the owner's signature.

The owner signs ``chain_id || encode(token)`` (TOKEN domain, :func:`token_message`), like a
transaction: a pool's id is ``H(owner || final hash)``, the same on every chain where the
owner registers the same final hash (the same seed), so a token that did not name its chain
would be valid on each of them. Bound to one chain, its token pays nothing and proves
nothing (``relay.fraud``) on another: tokens signed honestly on a test chain, or on two
chains at one depth each, are no equivocation here.
"""

from __future__ import annotations

from typing import Final

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.hashing import token_chain_step
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import U63, HashBytes, PublicKeyBytes, SignatureBytes, Wire, encode
from gridnet.errors import TokenPreimageInvalid, TokenSignatureInvalid
from gridnet.units import Address, Hash32

PPM: Final = 1_000_000
"""Payrate fractions are in parts per million; hop credits in millionths of a pool unit."""
MAX_POOL_LENGTH: Final = 1_000_000


def hash_forward(h: bytes, steps: int) -> bytes:
    for _ in range(steps):
        h = token_chain_step(h)
    return h


CHECKPOINT_EVERY: Final = 64
"""A ``HashChain`` keeps every 64th hash of its chain (and one segment expanded)."""


class HashChain:
    """The owner's side of a pool: its chain, kept so that preimages are revealed quickly.

    Not the whole chain: every :data:`CHECKPOINT_EVERY`-th hash and the last segment between
    two of them that was asked for, expanded (preimages are revealed at growing depth, so
    walking back through a segment costs one hash per preimage, once). A day's pool of 3,136
    hashes is 50 checkpoints and a 64-hash segment instead of 3,137 hashes: an area of a
    thousand homes, each with its pool and the DSO's pool for it, would otherwise hold its
    chains' six million hashes in memory."""

    def __init__(self, seed: bytes, length: int) -> None:
        if not 1 <= length <= MAX_POOL_LENGTH:
            raise ValueError(f"a pool has 1 to {MAX_POOL_LENGTH} hashes")
        checkpoints = [seed]
        h = seed
        for i in range(1, length + 1):
            h = token_chain_step(h)
            if i % CHECKPOINT_EVERY == 0:
                checkpoints.append(h)
        self._checkpoints = checkpoints
        self._final = h
        self._segment = -1
        """Which segment (index // CHECKPOINT_EVERY) ``_expanded`` holds."""
        self._expanded: list[Hash32] = []
        self.length = length

    @property
    def final(self) -> Hash32:
        """h(n): what the pool registers on chain."""
        return self._final

    def preimage(self, depth: int) -> Hash32:
        """h(n - depth): proves ``depth`` units (depth 0 is the final hash itself)."""
        if not 0 <= depth <= self.length:
            raise ValueError(f"depth {depth} is outside the pool (0..{self.length})")
        index = self.length - depth
        segment, offset = divmod(index, CHECKPOINT_EVERY)
        if segment != self._segment:
            h = self._checkpoints[segment]
            expanded = [h]
            for _ in range(min(CHECKPOINT_EVERY, self.length - segment * CHECKPOINT_EVERY) - 1):
                h = token_chain_step(h)
                expanded.append(h)
            self._segment, self._expanded = segment, expanded
        return self._expanded[offset] if offset < len(self._expanded) else self._final


class TransmissionToken(Wire, frozen=True):
    pool: HashBytes
    """Pool id (see ``crypto.hashing.pool_id``)."""
    depth: U63
    """Units revealed so far on this connection, this datagram's included."""
    preimage: HashBytes
    """h(n - depth) of the pool's chain."""
    datagram: HashBytes
    """Digest of the datagram this token pays for: ``datagram_digest(receipt)``, where only
    the receiver can compute the receipt (``relay.datagram.envelope_receipt``)."""
    hop_root: HashBytes
    """Root of the connection's hop entries after this datagram (``relay.hops.hops_root``;
    all zeros while no relay is credited)."""
    owner_key: PublicKeyBytes
    """The pool owner's key (it signs)."""


class SignedToken(Wire, frozen=True):
    token: TransmissionToken
    signature: SignatureBytes


def token_message(chain_id: Hash32, token: TransmissionToken) -> bytes:
    """What the owner signs (TOKEN domain): the chain's id, then the encoded token."""
    return chain_id + encode(token)


def issue_token(
    owner: PrivateKey,
    chain_id: Hash32,
    chain: HashChain,
    pool: Hash32,
    depth: int,
    datagram: Hash32,
    hop_root: Hash32,
) -> SignedToken:
    """The owner's token of ``pool`` at ``depth`` on the chain ``chain_id`` (its genesis
    hash), for ``datagram`` and the hop entries under ``hop_root``."""
    token = TransmissionToken(pool, depth, chain.preimage(depth), datagram, hop_root, owner.public_key)
    return SignedToken(token, owner.sign(Domain.TOKEN, token_message(chain_id, token)))


def token_signed(signed: SignedToken, chain_id: Hash32) -> bool:
    """Is the token signed, for the chain ``chain_id``, by the key it names?"""
    t = signed.token
    return verify_signature(Domain.TOKEN, t.owner_key, token_message(chain_id, t), signed.signature)


def check_token_signature(signed: SignedToken, owner: Address, chain_id: Hash32) -> None:
    """The token is the pool owner's, for this chain, exactly this datagram and these hop
    entries."""
    if address_from_public_key(signed.token.owner_key) != owner or not token_signed(signed, chain_id):
        raise TokenSignatureInvalid(
            "the token is not signed by the pool's owner for this datagram on this chain"
        )


def check_preimage(signed: SignedToken, anchor: bytes, anchor_depth: int) -> None:
    """The preimage hashes forward ``depth - anchor_depth`` times to ``anchor`` (the
    pool's final hash at depth 0, or any preimage already verified)."""
    t = signed.token
    if t.depth < anchor_depth or hash_forward(t.preimage, t.depth - anchor_depth) != anchor:
        raise TokenPreimageInvalid(
            f"preimage at depth {t.depth} does not hash to the pool's chain at depth {anchor_depth}"
        )
