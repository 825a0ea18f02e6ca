"""The neighbourhood's data network: homes relay each other's datagrams to and from the hub.

The DSO's substation is the communication hub (seed 001: "nothing stops the substation
from acting as a communication hub"): every home sends its signed orders and, as a buyer,
its signed contract states there as onion-routed datagrams paid with transmission tokens
from its own token pool; the hub sends its signed commands to the homes' devices the same
way, from its own pool. Homes on a feeder form a line to the hub; a few homes "on the
hill" have no wired neighbour and are served by a carrier (the paper's bicycle driver)
that rides past them and then to the first home of feeder A, carrying bundles one way.
Each home keeps its connection's accounts (a hop book: what it owes every relay of its
route), committed in its tokens; each relay sees only its own entry. At the end of the day
the hub signs one transit claim per home's pool, proving what was delivered without
learning any route, and every relay then claims what the homes whose datagrams it carried
owe it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gridnet.contracts.channel import SignedState
from gridnet.crypto.hashing import hash32, pool_id
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import Wire, decode, encode
from gridnet.grid.commands import SignedCommand
from gridnet.identity import IdentityProof
from gridnet.ledger.txs.relay import ChainRelayView, CreateTokenPool
from gridnet.market.orders import SignedOrder
from gridnet.net.memory import MemoryNetwork
from gridnet.node.relay_peer import RelayPeer
from gridnet.relay.claims import HopClaim, SignedClaim
from gridnet.relay.datagram import originate
from gridnet.relay.hops import HopBook
from gridnet.relay.tokens import HashChain
from gridnet.units import Hash32

CARRIER = "carrier"


class OrderNote(Wire, frozen=True, tag=1):
    order: SignedOrder


class StateNote(Wire, frozen=True, tag=2):
    state: SignedState


class CommandNote(Wire, frozen=True, tag=3):
    command: SignedCommand


Note = OrderNote | StateNote | CommandNote


@dataclass
class Sender:
    """A home's side of its connection to the hub: its pool, how deep it has revealed and
    what it owes each relay."""

    key: PrivateKey
    identity: IdentityProof
    chain: HashChain
    pool: Hash32
    book: HopBook
    depth: int = 0


@dataclass
class RelayTally:
    sent: int = 0
    hops: list[int] = field(default_factory=list)
    """Relays each delivered datagram passed (what the simulator knows; the hub does not)."""
    routes: dict[tuple[Hash32, int], int] = field(default_factory=dict)
    """(pool, depth) of each datagram in flight -> the relays on its route."""


class RelayNet:
    def __init__(
        self,
        net: MemoryNetwork,
        hub: tuple[str, PrivateKey],
        feeders: Sequence[Sequence[tuple[str, PrivateKey]]],
        hill: Sequence[tuple[str, PrivateKey]],
        carrier: PrivateKey,
        view: Callable[[], ChainRelayView],
        *,
        pool_length: int,
        payrate_ppm: int,
        carrier_stop_ms: int,
    ) -> None:
        self.net = net
        self.hub_name = hub[0]
        everyone = [hub, *(h for f in feeders for h in f), *hill, (CARRIER, carrier)]
        self.keys = dict(everyone)
        directory = {k.address: name for name, k in everyone}
        self.peers = {name: net.add_relay(RelayPeer(name, k, view, directory.get)) for name, k in everyone}
        self.graph: dict[str, list[str]] = {name: [] for name, _ in everyone}
        for feeder in feeders:
            names = [name for name, _ in feeder]
            for a, b in zip([self.hub_name, *names], names, strict=False):
                self._edge(a, b, wired=True)
        head = feeders[0][0][0] if feeders and feeders[0] else self.hub_name
        self.stops = [name for name, _ in hill] + [head]
        for stop in self.stops:
            self._edge(CARRIER, stop, wired=False)
        self.stop = -1
        self.carrier_stop_ms = carrier_stop_ms
        self._next_move = 0
        self.pool_length = pool_length
        self.payrate_ppm = payrate_ppm
        self.senders: dict[tuple[str, str], Sender] = {}
        """(sender, receiver) -> the sender's side of that connection (a pool each)."""
        self.tally = RelayTally()

    def _edge(self, a: str, b: str, *, wired: bool) -> None:
        self.graph[a].append(b)
        self.graph[b].append(a)
        if wired:
            self.net.link(a, b)

    # --- pools -------------------------------------------------------------------------------

    def open_pool(
        self,
        name: str,
        identity: IdentityProof,
        seed_label: str,
        amount: int,
        expiry: int,
        target: str | None = None,
    ) -> CreateTokenPool:
        """``name``'s pool for its connection to ``target`` (the hub by default): the
        transaction creates it. A pool pays for one connection (its receiver claims it)."""
        target = self.hub_name if target is None else target
        key = self.keys[name]
        chain = HashChain(hash32(seed_label.encode()), self.pool_length)
        book = HopBook(hash32(f"{seed_label}/hop-book".encode()))
        self.senders[(name, target)] = Sender(key, identity, chain, pool_id(key.address, chain.final), book)
        return CreateTokenPool(chain.final, self.pool_length, amount, expiry)

    # --- traffic -----------------------------------------------------------------------------

    def path(self, source: str, target: str) -> list[str]:
        """Relays between ``source`` and ``target`` on the (static) network (BFS)."""
        previous: dict[str, str | None] = {source: None}
        queue = deque([source])
        while queue:
            here = queue.popleft()
            if here == target:
                break
            for nxt in self.graph[here]:
                if nxt not in previous:
                    previous[nxt] = here
                    queue.append(nxt)
        route = []
        step = previous.get(target)
        while step is not None and step != source:
            route.append(step)
            step = previous[step]
        return route[::-1]

    def send(self, name: str, note: Note, nonce: bytes, target: str | None = None) -> None:
        """``name`` sends ``note`` to ``target`` (the hub by default) as a paid datagram (one
        more unit of its pool)."""
        target = self.hub_name if target is None else target
        sender = self.senders[(name, target)]
        sender.depth += 1
        relays = self.path(name, target)
        hub = self.keys[target]
        path = [(self.keys[r].address, self.keys[r].public_key) for r in relays]
        dgram = originate(
            sender.key,
            sender.chain,
            sender.pool,
            sender.depth,
            self.payrate_ppm,
            sender.identity,
            path,
            (hub.address, hub.public_key),
            encode(note),
            nonce,
            book=sender.book,
        )
        self.tally.routes[(sender.pool, sender.depth)] = len(relays)
        first = self.keys[relays[0]].address if relays else hub.address
        self.net.send(name, self.peers[name].send(first, dgram))
        self.tally.sent += 1

    def move_carrier(self, now: int) -> None:
        """The carrier rides to its next stop (one stop every ``carrier_stop_ms``)."""
        if not self.stops or now < self._next_move:
            return
        if self.stop >= 0:
            self.net.unlink(CARRIER, self.stops[self.stop])
        self.stop = (self.stop + 1) % len(self.stops)
        self.net.link(CARRIER, self.stops[self.stop])
        self._next_move = now + self.carrier_stop_ms

    def drain(self) -> dict[str, list[Note]]:
        """Everything delivered since the last call, by receiver."""
        out: dict[str, list[Note]] = {}
        for name, peer in self.peers.items():
            if not peer.received:
                continue
            notes = out.setdefault(name, [])
            for delivered in peer.received:
                notes.append(decode(delivered.envelope.body, Note))  # type: ignore[arg-type]
                token = delivered.datagram.token.token
                self.tally.hops.append(self.tally.routes.pop((token.pool, token.depth)))
            peer.received.clear()
        return out

    def claims(self, name: str) -> list[SignedClaim]:
        """``name`` ends every connection it received on: one claim per sender's pool that
        relays carried."""
        return self.peers[name].inbox.close()

    def hop_claims(self, name: str) -> list[HopClaim]:
        """What relay ``name`` can claim now (once the receivers' claims are on chain)."""
        return self.peers[name].hop_claims()
