"""Hop entries: what a connection's sender credits each relay, committed in its tokens and
shown to each relay alone; and the payrate shares they follow.

Shares (seed 001 Figure 2): the first hop holds the whole reward; each time a holder
forwards, it hands ``p`` of its current share to the next. With hops 1..m, hop i keeps
``p^(i-1)(1-p)`` of the reward and the last ``p^(m-1)``. In integers: each hop passes
``floor(held * p)`` on and keeps the rest, so the shares always sum to the reward.
Consecutive entries by the same identity are one hop (they gain nothing by repeating
themselves), and any run of hops that reaches the receiver earns exactly what its first
hop would earn delivering alone.

Path privacy (seed 001: "no single intermediary nor data receiver shall be able to get to
know the path traversed"). The sender chose every path of its connection, so it is the one
party that may keep the connection's accounts without learning anything new. Its
:class:`HopBook` holds, per relay, the credit the connection owes it so far [millionths of
a pool unit]: each datagram's new units shared along that datagram's path by the rule
above. After each datagram the book's entries ``[relay, credit, salt]`` are hashed
(:func:`hop_id`) into a Merkle tree whose root the datagram's token carries under the
sender's signature, and each relay of the path finds in its own onion layer a
:class:`HopTicket`: its entry and the Merkle steps from it to that root. A relay sees no
other entry: only digests, made unguessable by salts fresh for every datagram and derived
from a secret only the sender holds. Nobody can add an entry, remove one or change a credit
without the sender's signature over a new root; a relay inserted by another relay (an
artificial intermediary) has no entry at all, and the entries of the hops after it are
unchanged. What is left to learn (docs/protocol.md 16): a relay's credit grows by its
geometric share, which tells its position to a relay that knows the payrate; the chain sees
per-relay totals, never a datagram's path. A sender that signs two tokens of a depth, or
entries worth more than it revealed, loses its stake (``relay.fraud``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final

import msgspec

from gridnet.crypto.hashing import hash32, hop_digest
from gridnet.encoding import U63, AddressBytes, Wire, encode
from gridnet.errors import HopEntryInvalid, TooManyHops
from gridnet.ledger.merkle import MerkleStep, merkle_proof, merkle_root, verify_merkle_proof
from gridnet.relay.tokens import PPM
from gridnet.units import Address, Hash32

MAX_CONNECTION_HOPS: Final = 64
"""Most different relays one connection (one pool) credits, and one pool pays."""
MAX_PROOF_STEPS: Final = 6
"""Merkle steps from an entry to the root of at most ``MAX_CONNECTION_HOPS`` entries."""
SALT_BYTES: Final = 16


class HopEntry(Wire, frozen=True):
    relay: AddressBytes
    credit: U63
    """What the connection owes this relay so far [millionths of a pool unit]: cumulative,
    it never decreases from one token to a deeper one."""
    salt: Annotated[bytes, msgspec.Meta(min_length=SALT_BYTES, max_length=SALT_BYTES)]
    """Fresh for every token and secret to the sender: hides the entry behind its digest."""


class HopTicket(Wire, frozen=True):
    """What a relay finds in its onion layer: its own entry and the way to the root."""

    entry: HopEntry
    proof: Annotated[tuple[MerkleStep, ...], msgspec.Meta(max_length=MAX_PROOF_STEPS)]


def hop_id(entry: HopEntry) -> Hash32:
    """An entry's leaf in the hop tree (BLAKE2b-256, ``gn-hop``)."""
    return hop_digest(encode(entry))


def hops_root(entries: Sequence[HopEntry]) -> Hash32:
    """The Merkle root of ``entries`` taken in the order of their digests (so the order
    tells nothing); all zeros for none."""
    return merkle_root(sorted(hop_id(e) for e in entries))


def verify_ticket(ticket: HopTicket, root: Hash32, relay: Address) -> None:
    """``ticket`` is ``relay``'s entry under ``root``; raises :class:`HopEntryInvalid`."""
    if ticket.entry.relay != relay:
        raise HopEntryInvalid("the hop entry names another relay than the one presenting it")
    if not verify_merkle_proof(root, hop_id(ticket.entry), ticket.proof):
        raise HopEntryInvalid("the hop entry is not under the hop root its token's owner signed")


def hop_shares(reward: int, hops: Sequence[Address], payrate_ppm: int) -> list[tuple[Address, int]]:
    """Each hop's share of ``reward``; consecutive repeats count as one hop."""
    merged: list[Address] = []
    for h in hops:
        if not merged or merged[-1] != h:
            merged.append(h)
    shares: list[tuple[Address, int]] = []
    held = reward
    for i, hop in enumerate(merged):
        if i == len(merged) - 1:
            shares.append((hop, held))
        else:
            passed = held * payrate_ppm // PPM
            shares.append((hop, held - passed))
            held = passed
    return shares


@dataclass(frozen=True)
class Credit:
    """One datagram's accounting, computed by :meth:`HopBook.plan` and kept by
    :meth:`HopBook.commit` once the datagram is built."""

    depth: int
    credits: dict[Address, int]
    """Every relay's credit after this datagram [millionths of a pool unit]."""
    root: Hash32
    """What the datagram's token carries."""
    tickets: tuple[HopTicket, ...]
    """One per relay of the datagram's path, in path order."""


class HopBook:
    """A sender's accounts for one connection (one pool): what it owes each relay."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        """Derives every salt: known to the sender alone."""
        self.depth = 0
        """Depth of the last datagram committed."""
        self.credits: dict[Address, int] = {}

    def _salt(self, depth: int, relay: Address) -> bytes:
        return hash32(self._secret + depth.to_bytes(8, "big") + relay)[:SALT_BYTES]

    def plan(self, depth: int, path: Sequence[Address], payrate_ppm: int) -> Credit:
        """Share the units from the last depth to ``depth`` along ``path`` (the relays, in
        order) with payrate ``payrate_ppm``; the book is unchanged until :meth:`commit`."""
        if depth <= self.depth:
            raise ValueError(f"a connection's depth only grows: {depth} after {self.depth}")
        if not 0 <= payrate_ppm <= PPM:
            raise ValueError(f"a payrate is 0 to {PPM} parts per million, not {payrate_ppm}")
        credits = dict(self.credits)
        for relay, share in hop_shares((depth - self.depth) * PPM, path, payrate_ppm):
            credits[relay] = credits.get(relay, 0) + share
        if len(credits) > MAX_CONNECTION_HOPS:
            raise TooManyHops(
                f"a connection credits at most {MAX_CONNECTION_HOPS} different relays: open another pool"
            )
        entries = {
            relay: HopEntry(relay, credit, self._salt(depth, relay)) for relay, credit in credits.items()
        }
        ids = sorted(hop_id(e) for e in entries.values())
        index = {leaf: i for i, leaf in enumerate(ids)}
        tickets = tuple(
            HopTicket(entries[relay], merkle_proof(ids, index[hop_id(entries[relay])])) for relay in path
        )
        return Credit(depth, credits, hops_root(list(entries.values())), tickets)

    def commit(self, credit: Credit) -> None:
        self.depth = credit.depth
        self.credits = credit.credits
