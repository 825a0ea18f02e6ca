"""A participant that relays and receives datagrams (sans-IO, like the node).

It has no chain of its own: it reads one (its home node's) through a ``RelayView``. It
knows its neighbours by name and everyone's address (a directory: on the in-memory network
a table; over TCP an address's text form, the name of the link its key authenticates), and
forwards each datagram to the hop its onion layer names. When that hop is not a neighbour
right now it holds the datagram until it is (a delay-tolerant carrier, the paper's bicycle
driver, is a relay whose neighbours change as it moves). Every datagram it drops is counted by
the rule it broke. As a receiver it signs transit claims that prove its connections'
deliveries; as a relay it keeps its hop tickets and tells which of them the chain pays now.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgspec

from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import CarrierFull, GridnetError, InvalidDatagram, PoolExpiring, UnknownNextHop
from gridnet.node.logs import short
from gridnet.node.messages import DatagramMsg, Message
from gridnet.relay.claims import HopClaim, SignedClaim
from gridnet.relay.datagram import Datagram, Delivered, Inbox, Relay, RelayView, check_pool_life
from gridnet.units import Address

_log = logging.getLogger("gridnet.relay")

Outgoing = tuple[str, Message]
MAX_HELD = 10_000
MAX_HELD_BYTES = 64 << 20
"""Datagrams held for absent hops: at most this many, and this many bytes."""
MAX_CLAIMS_KEPT = 1_000
PRUNE_EVERY_MS = 60_000
"""How often the relay forgets what the chain made useless (``Relay.prune``) [ms]."""
MAX_RECEIVED = 10_000
MAX_RECEIVED_BYTES = 64 << 20
"""Delivered datagrams kept until the owner takes them: at most this many, and this many
bytes (the oldest go first)."""


class Received:
    """Datagrams delivered here, oldest first, until the owner takes them: each without its
    onion (the receiver's layer, opened: its envelope is kept), at most ``MAX_RECEIVED`` of
    them and ``MAX_RECEIVED_BYTES`` of their envelopes and tokens (the oldest go first)."""

    def __init__(self) -> None:
        self._kept: deque[tuple[Delivered, int]] = deque()
        self.bytes = 0
        """What the kept datagrams hold: their envelopes' bodies and nonces, and their
        datagrams without the onion, encoded [bytes]."""

    def append(self, delivered: Delivered) -> None:
        spent = msgspec.structs.replace(delivered.datagram, onion=b"")
        kept = dataclasses.replace(delivered, datagram=spent)
        size = len(encode(delivered.envelope)) + len(encode(spent))
        self._kept.append((kept, size))
        self.bytes += size
        while len(self._kept) > MAX_RECEIVED or self.bytes > MAX_RECEIVED_BYTES:
            self.bytes -= self._kept.popleft()[1]

    def clear(self) -> None:
        self._kept.clear()
        self.bytes = 0

    def __iter__(self) -> Iterator[Delivered]:
        return (delivered for delivered, _ in self._kept)

    def __len__(self) -> int:
        return len(self._kept)


@dataclass
class RelayStats:
    forwarded: int = 0
    delivered: int = 0
    held: int = 0
    """Datagrams ever held for an absent next hop (``RelayPeer.held`` lists those held now)."""
    dropped: Counter[str] = field(default_factory=Counter)


class RelayPeer:
    def __init__(
        self,
        name: str,
        key: PrivateKey,
        view: Callable[[], RelayView],
        directory: Callable[[Address], str | None],
        *,
        trusted_flaggers: frozenset[Address] = frozenset(),
    ) -> None:
        self.name = name
        self.key = key
        self.address = key.address
        self._view = view
        self.directory = directory
        """A participant's address -> its name on the network (None: unknown)."""
        self.trusted_flaggers = trusted_flaggers
        self.peers: list[str] = []
        self.held: list[tuple[str, Datagram]] = []
        self.held_bytes = 0
        self.inbox = Inbox(key, view().chain_id)
        self.received = Received()
        """Datagrams delivered here (envelope, datagram without its onion, receipt), until
        the owner takes them."""
        self.claims: deque[SignedClaim] = deque(maxlen=MAX_CLAIMS_KEPT)
        """The latest transit claims signed by :meth:`close_connections` (kept so a lost
        answer does not lose a relay's pay)."""
        self.stats = RelayStats()
        self._relay = Relay(key, view(), trusted_flaggers)
        self._next_prune = 0

    def add_peer(self, peer: str) -> None:
        if peer not in self.peers:
            self.peers.append(peer)

    def remove_peer(self, peer: str) -> None:
        if peer in self.peers:
            self.peers.remove(peer)

    def close_connections(self) -> list[SignedClaim]:
        """End every connection delivered here: one signed transit claim each."""
        claims = self.inbox.close()
        self.claims.extend(claims)
        _log.info("signed %d transit claim(s) for the datagrams delivered here", len(claims))
        return claims

    def hop_claims(self) -> list[HopClaim]:
        """What this participant can claim as a relay now: per pool, its deepest hop ticket
        the pool's receivers have reached, worth more than the pool paid it (the chain as
        it is now)."""
        self._relay.view = self._view()
        return self._relay.collectable()

    def send(self, first_hop: Address, datagram: Datagram) -> list[Outgoing]:
        """Originate: hand a new datagram to the first hop of its path. One whose pool every
        relay would refuse, expired or expiring too soon for the claims that pay them
        (``PoolExpiring``, ``relay.datagram.POOL_EXPIRY_MARGIN``), is not sent: it is dropped
        here, counted and logged, so that its sender learns it must pay from a new pool."""
        try:
            view = self._view()
            pool = view.pool(datagram.token.token.pool)
            if pool is not None:  # (a pool not on chain yet: the relays tell, UnknownPool)
                check_pool_life(pool, view.height)
            return self._route(first_hop, datagram)
        except InvalidDatagram as exc:
            if isinstance(exc, PoolExpiring):
                _log.warning("not sending a datagram: %s", exc)
            self._dropped(exc)
            return []

    def handle(self, peer: str, msg: Message, now: int) -> list[Outgoing]:
        if not isinstance(msg, DatagramMsg):
            return []
        self._relay.view = self._view()  # the chain as it is now
        try:
            outcome = self._relay.check(msg.datagram)
            out = [] if isinstance(outcome, Delivered) else self._route(outcome.next_hop, outcome.datagram)
        except GridnetError as exc:
            self._dropped(exc)
            return []
        self._relay.accept(outcome)  # delivered, handed on or held: its depth is used up here
        if isinstance(outcome, Delivered):
            self.stats.delivered += 1
            _log.debug(
                "delivered a datagram of pool %s from %s",
                outcome.datagram.token.token.pool.hex()[:16],
                short(peer),
            )
            self.inbox.record(outcome)
            self.received.append(outcome)
            return []
        self.stats.forwarded += 1
        _log.debug("forwarding a datagram from %s", short(peer))
        return out

    def tick(self, now: int) -> list[Outgoing]:
        """Hand on what was held for a hop that is now a neighbour; once a minute, forget
        the relay state of pools the chain made useless."""
        if now >= self._next_prune:
            self._relay.view = self._view()
            self._relay.prune()
            self._next_prune = now + PRUNE_EVERY_MS
        if not self.held:
            return []
        out: list[Outgoing] = []
        keep = []
        for name, datagram in self.held:
            if name in self.peers:
                out.append((name, DatagramMsg(datagram)))
                self.held_bytes -= len(encode(datagram))
            else:
                keep.append((name, datagram))
        self.held = keep
        return out

    def _dropped(self, exc: GridnetError) -> None:
        self.stats.dropped[exc.rule] += 1
        log = _log.warning if isinstance(exc, CarrierFull) else _log.debug
        log("dropped a datagram: %s: %s", exc.rule, exc)

    def _route(self, hop: Address, datagram: Datagram) -> list[Outgoing]:
        """Send ``datagram`` to ``hop`` now or hold it for when ``hop`` is a neighbour;
        raises ``UnknownNextHop`` or ``CarrierFull`` (nothing sent or held)."""
        name = self.directory(hop)
        if name is None or name == self.name:  # (an onion naming this participant as its next hop)
            raise UnknownNextHop(f"the next hop {hop.hex()} is no participant this relay knows")
        if name in self.peers:
            return [(name, DatagramMsg(datagram))]
        size = len(encode(datagram))
        if len(self.held) >= MAX_HELD or self.held_bytes + size > MAX_HELD_BYTES:
            raise CarrierFull(
                f"{len(self.held)} datagrams ({self.held_bytes} bytes) held already, for {short(name)}"
            )
        self.stats.held += 1
        self.held.append((name, datagram))
        self.held_bytes += size
        return []
