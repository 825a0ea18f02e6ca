"""The neighbourhood's data network: homes relay each other's datagrams to and from the hub.

The DSO's substation is the communication hub (seed 001: "nothing stops the substation
from acting as a communication hub"): every home sends its signed orders and, as a buyer,
its signed contract states there as onion-routed datagrams paid with transmission tokens
from its own token pool; the hub sends its signed commands to the homes' devices the same
way, from its own pool. Homes on a feeder form a line to the hub; a feeder longer than an
onion can cross (:data:`RUN_HOMES` homes) is cut into runs of at most that many, and the
first home of each run is wired to the hub as well, through its street cabinet's data
concentrator, so that no route passes more than :data:`~gridnet.relay.onion.MAX_ONION_HOPS`
relays however many homes a feeder has (:class:`Topology`). A few homes "on the hill" have
no wired neighbour and are served by a carrier (the paper's bicycle driver) that rides past
them and then to the first home of feeder A, carrying bundles one way. Each home keeps its
connection's accounts (a hop book: what it owes every relay of its route), committed in its
tokens; each relay sees only its own entry. At the end of the day the hub signs one transit
claim per home's pool, proving what was delivered without learning any route, and every
relay then claims what the homes whose datagrams it carried owe it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

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
from gridnet.relay.onion import MAX_ONION_HOPS
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


RUN_HOMES: Final = MAX_ONION_HOPS + 1
"""Most homes on one run of a feeder (a line whose first home is wired to the hub): the
``k``-th home of a run sends through the ``k - 1`` before it, so 17 homes when an onion
passes at most 16 relays."""


def cabinet_homes(count: int) -> list[int]:
    """Which of a feeder's ``count`` homes (positions along its line, from the substation)
    are wired to the hub: the first home of each run. A feeder of at most :data:`RUN_HOMES`
    homes is one run (its first home only); a longer one is cut into the fewest runs of at
    most that many, ``ceil(count / runs)`` homes each and the last the rest (100 homes: 6
    runs of 17, 17, 17, 17, 17 and 15, cabinets at 0, 17, 34, 51, 68 and 85). A home sends
    to the nearer of the cabinets around it; the far end of the last run is the furthest
    from one."""
    if count <= 0:
        return []
    runs = -(-count // RUN_HOMES)
    length = -(-count // runs)
    return list(range(0, count, length))


class Topology:
    """Who is linked to whom, and the routes (names only: no keys, no network).

    Wired links, always up: each feeder's homes form one line in home order, hub — first
    home — second home — ..., and the first home of every further run (:func:`cabinet_homes`)
    is wired to the hub too (its street cabinet's data concentrator has a backhaul to the
    substation). The carrier's links (to the hill homes, then to the first home of the first
    feeder, or the hub when that feeder is empty) are up one at a time as it rides.

    Routes are shortest paths (BFS, first found): a home's datagrams climb the hub's
    shortest-path tree, the hub's go down the same branch; between two other participants
    the route climbs the receiver's tree. On a line (a feeder of at most 17 homes, the hill
    and the carrier) the route is the only one there is; with cabinets a home sends to the
    nearer run's cabinet along the line, either way. :meth:`build` refuses a network in which a
    home does not reach the hub or its route passes more than ``MAX_ONION_HOPS`` relays.
    """

    def __init__(self, hub: str) -> None:
        self.hub = hub
        self.graph: dict[str, list[str]] = {hub: []}
        """Participant -> its neighbours, wired or on the carrier's round, in link order."""
        self.wired: list[tuple[str, str]] = []
        """The wired links, in the order they were laid."""
        self.stops: list[str] = []
        """The carrier's stops, in riding order."""
        self._trees: dict[str, dict[str, str]] = {}

    @classmethod
    def build(cls, hub: str, feeders: Sequence[Sequence[str]], hill: Sequence[str]) -> Topology:
        """The network of ``feeders`` (each its homes in line order), the ``hill`` homes and
        the carrier; raises ``ValueError`` when a home cannot reach the hub within
        ``MAX_ONION_HOPS`` relays (which the layout above never gives)."""
        net = cls(hub)
        for name in [*(h for f in feeders for h in f), *hill, CARRIER]:
            if name in net.graph:
                raise ValueError(f"{name!r} is on the data network twice")
            net.graph[name] = []
        for feeder in feeders:
            for a, b in zip([hub, *feeder], feeder, strict=False):
                net._edge(a, b, wired=True)
            for k in cabinet_homes(len(feeder))[1:]:
                net._edge(hub, feeder[k], wired=True)
        head = feeders[0][0] if feeders and feeders[0] else hub
        net.stops = [*hill, head]
        for stop in net.stops:
            net._edge(CARRIER, stop, wired=False)
        for home in [*(h for f in feeders for h in f), *hill]:
            relays = net.path(home, hub)
            if len(relays) > MAX_ONION_HOPS:
                raise ValueError(
                    f"{home}'s route to the hub passes {len(relays)} relays, over {MAX_ONION_HOPS}"
                )
        return net

    def _edge(self, a: str, b: str, *, wired: bool) -> None:
        self.graph[a].append(b)
        self.graph[b].append(a)
        if wired:
            self.wired.append((a, b))
        self._trees.clear()

    def _tree(self, root: str) -> dict[str, str]:
        """Each participant reachable from ``root`` -> its next step towards ``root`` (BFS,
        first found; computed once per root)."""
        tree = self._trees.get(root)
        if tree is None:
            tree = {root: root}
            queue = deque([root])
            while queue:
                here = queue.popleft()
                for nxt in self.graph[here]:
                    if nxt not in tree:
                        tree[nxt] = here
                        queue.append(nxt)
            self._trees[root] = tree
        return tree

    def path(self, source: str, target: str) -> list[str]:
        """Relays between ``source`` and ``target``, in the order a datagram passes them;
        raises ``LookupError`` when no route joins them."""
        if source == self.hub and target != self.hub:
            return self.path(target, source)[::-1]  # down the branch the target climbs
        tree = self._tree(target)
        if source not in tree:
            raise LookupError(f"no route from {source} to {target}")
        route = []
        step = tree[source]
        while step != target:
            route.append(step)
            step = tree[step]
        return route

    def depth(self) -> int:
        """The most relays any participant's route to the hub passes."""
        return max((len(self.path(name, self.hub)) for name in self.graph if name != self.hub), default=0)


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
        self.chain_id = view().chain_id
        """The chain the pools are on: every token is signed for it."""
        directory = {k.address: name for name, k in everyone}
        self.peers = {name: net.add_relay(RelayPeer(name, k, view, directory.get)) for name, k in everyone}
        self.topology = Topology.build(
            self.hub_name, [[name for name, _ in feeder] for feeder in feeders], [name for name, _ in hill]
        )
        for a, b in self.topology.wired:
            net.link(a, b)
        self.stops = self.topology.stops
        self.stop = -1
        self.carrier_stop_ms = carrier_stop_ms
        self._next_move = 0
        self.pool_length = pool_length
        self.payrate_ppm = payrate_ppm
        self.senders: dict[tuple[str, str], Sender] = {}
        """(sender, receiver) -> the sender's side of that connection (a pool each)."""
        self.tally = RelayTally()

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
        """Relays between ``source`` and ``target`` on the (static) network (:class:`Topology`)."""
        return self.topology.path(source, target)

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
            chain_id=self.chain_id,
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

    def in_flight(self) -> int:
        """Datagrams sent that were neither delivered nor dropped yet: on their way, or held
        for the carrier."""
        arrived = sum(p.stats.delivered + p.stats.dropped.total() for p in self.peers.values())
        return self.tally.sent - arrived

    def carrier_round_ms(self, step_ms: int) -> int:
        """How long the carrier takes to ride past all its stops, moving at most once a
        ``step_ms`` [ms]: a datagram waits at most one round to be picked up and one more
        to reach the first home of feeder A."""
        return len(self.stops) * max(self.carrier_stop_ms, step_ms)

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
