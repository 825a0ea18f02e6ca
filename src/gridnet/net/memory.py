"""An in-memory network of sans-IO nodes on a simulated clock.

Messages travel as canonical bytes (encoded on send, decoded on delivery) with a
latency plus seeded jitter. Partitions drop every message between groups until
healed. ``run_until`` advances the clock in ticks, delivering what is due and
ticking every node; it is bounded by the target time.

A node sends each user transaction to its peers at once. The transactions a node takes from
its users at one instant of the clock (a simulation's agents submit many in one step) travel
to each peer as one message, sent before anything else the node sends and before the clock
moves: each peer receives them at the same simulated time as one by one, and checks their
signatures as one batch, on all cores.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gridnet.encoding import encode
from gridnet.errors import DecodeError
from gridnet.ledger.mempool import PoolEvent
from gridnet.ledger.transactions import Transaction
from gridnet.node.messages import Message, TxsMsg, decode_message, encode_message
from gridnet.node.node import Node, Outgoing
from gridnet.node.relay_peer import RelayPeer

Participant = Node | RelayPeer
"""Anything on the network: full nodes and relaying participants (homes, carriers)."""


@dataclass
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    dropped_partition: int = 0
    bytes_sent: int = 0
    undecodable: int = 0


@dataclass
class _Held:
    """User transactions a node has for one peer, not sent yet, and their encoded size."""

    txs: list[Transaction] = field(default_factory=list)
    size: int = 0


class MemoryNetwork:
    def __init__(self, *, start_ms: int, latency_ms: int = 50, jitter_ms: int = 20, seed: int = 0) -> None:
        self.now = start_ms
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.rng = random.Random(seed)
        self.nodes: dict[str, Node] = {}
        self.relays: dict[str, RelayPeer] = {}
        self._all: dict[str, Participant] = {}
        self.links: set[frozenset[str]] = set()
        self._group: dict[str, int] = {}
        self._queue: list[tuple[int, int, str, str, bytes]] = []
        self._seq = itertools.count()
        self.stats = NetworkStats()
        self._user_txs: dict[str, dict[str, _Held]] = {}
        """node -> peer -> the user transactions it has for the peer, not sent yet."""

    # --- topology --------------------------------------------------------------------------

    def add(self, node: Node) -> Node:
        self._join(node)
        self.nodes[node.name] = node
        return node

    def add_relay(self, peer: RelayPeer) -> RelayPeer:
        self._join(peer)
        self.relays[peer.name] = peer
        return peer

    def _join(self, participant: Participant) -> None:
        if participant.name in self._all:
            raise ValueError(f"{participant.name!r} is already on the network")
        self._all[participant.name] = participant

    def link(self, a: str, b: str) -> None:
        self.links.add(frozenset((a, b)))
        self._all[a].add_peer(b)
        self._all[b].add_peer(a)

    def unlink(self, a: str, b: str) -> None:
        """Take a link down (a carrier moving away); messages in flight on it are lost."""
        self._flush_all()
        self.links.discard(frozenset((a, b)))
        self._all[a].remove_peer(b)
        self._all[b].remove_peer(a)

    def link_all(self) -> None:
        """Link every full node with every other (relaying participants are linked one by one)."""
        names = list(self.nodes)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                self.link(a, b)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between different groups (nodes not named form one more group)."""
        self._flush_all()
        self._group = {name: i for i, g in enumerate(groups) for name in g}

    def heal(self) -> None:
        self._group = {}

    def _reachable(self, a: str, b: str) -> bool:
        if frozenset((a, b)) not in self.links:
            return False
        return self._group.get(a, -1) == self._group.get(b, -1)

    # --- traffic ---------------------------------------------------------------------------

    def send(self, src: str, out: Iterable[Outgoing]) -> None:
        if src in self._user_txs:
            self._flush(src)
        for dst, msg in out:
            self._send(src, dst, msg)

    def _send(self, src: str, dst: str, msg: Message) -> None:
        if not self._reachable(src, dst):
            self.stats.dropped_partition += 1
            return
        data = encode_message(msg)
        delay = self.latency_ms + (self.rng.randint(0, self.jitter_ms) if self.jitter_ms else 0)
        heapq.heappush(self._queue, (self.now + delay, next(self._seq), src, dst, data))
        self.stats.sent += 1
        self.stats.bytes_sent += len(data)

    def submit(self, node_name: str, tx: Transaction) -> list[PoolEvent]:
        """A local user hands ``tx`` to ``node_name``; it gossips from there (what the node
        sends its peers at once goes with the other user transactions of this instant)."""
        events, out = self.nodes[node_name].submit_tx(tx, self.now)
        self._from_users(node_name, out)
        return events

    def submit_many(self, node_name: str, txs: Sequence[Transaction]) -> list[list[PoolEvent]]:
        """``submit`` of each of ``txs``, in order, handed to ``node_name`` together
        (``Node.submit_txs``: their signatures checked as one batch, stored in one write)."""
        events, out = self.nodes[node_name].submit_txs(txs, self.now)
        self._from_users(node_name, out)
        return events

    def _from_users(self, node_name: str, out: list[Outgoing]) -> None:
        """What a node sends as it takes its users' transactions: those with the others of
        this instant, the rest now."""
        node = self.nodes[node_name]
        sizes: dict[int, int] = {}  # id(transaction) -> its encoded size (the same to every peer)
        for dst, msg in out:
            if isinstance(msg, TxsMsg):
                held = self._user_txs.setdefault(node_name, {}).setdefault(dst, _Held())
                for t in msg.txs:
                    size = sizes.get(id(t))
                    if size is None:
                        size = sizes[id(t)] = len(encode(t))
                    if held.txs and (
                        len(held.txs) >= node.config.tx_batch or held.size + size > node.config.tx_batch_bytes
                    ):
                        self._send_held(node_name, dst, held)
                    held.txs.append(t)
                    held.size += size
            else:
                self.send(node_name, [(dst, msg)])

    def _send_held(self, src: str, dst: str, held: _Held) -> None:
        txs, held.txs, held.size = held.txs, [], 0
        self._send(src, dst, TxsMsg(tuple(txs)))

    def _flush(self, src: str) -> None:
        """Send what ``src`` holds of its users' transactions for its peers."""
        for dst, held in self._user_txs.pop(src, {}).items():
            if held.txs:
                self._send_held(src, dst, held)

    def _flush_all(self) -> None:
        for src in list(self._user_txs):
            self._flush(src)

    def _deliver_due(self) -> None:
        queue = self._queue
        while queue and queue[0][0] <= self.now:
            _, _, src, dst, data = heapq.heappop(queue)
            if not self._reachable(src, dst):
                self.stats.dropped_partition += 1
                continue
            try:
                msg = decode_message(data)
            except DecodeError:
                self.stats.undecodable += 1
                continue
            self.stats.delivered += 1
            self.send(dst, self._all[dst].handle(src, msg, self.now))

    def step(self, tick_ms: int) -> None:
        self._flush_all()  # (sent at the instant they were taken)
        self.now += tick_ms
        self._deliver_due()
        for name, participant in self._all.items():
            self.send(name, participant.tick(self.now))

    def run_until(self, until_ms: int, tick_ms: int = 100) -> None:
        while self.now + tick_ms <= until_ms:
            self.step(tick_ms)
        if self.now < until_ms:  # a last, shorter step: the clock always reaches the target
            self.step(until_ms - self.now)

    def run_for(self, duration_ms: int, tick_ms: int = 100) -> None:
        self.run_until(self.now + duration_ms, tick_ms)

    def settle(self, max_ms: int = 60_000, tick_ms: int = 100) -> bool:
        """Run (without changing what nodes mine) until all heads agree or ``max_ms`` passes."""
        deadline = self.now + max_ms
        while self.now < deadline:
            self.step(tick_ms)
            if not self._queue and len({n.chain.head.hash for n in self.nodes.values()}) == 1:
                return True
        return False
