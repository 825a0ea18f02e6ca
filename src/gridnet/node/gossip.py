"""Bounded fan-out bookkeeping of a node (sans-IO, no chain): which peers get a gossiped item
and which are only told its id, what was announced to whom, what we asked of whom, and the
relayed transactions held until their sender's earlier nonce arrives.

An item goes to at most ``max_fanout`` peers drawn at random; the others get its id in a
``HaveMsg`` on the next tick and may ask for it with a ``WantMsg``. A node asks one announcer
at a time; when no acceptable copy arrives within the timeout (or that peer goes away) it
asks the next that announced the item, so a peer that announces and never answers (or
answers with a forgery) delays an item by one timeout but cannot keep it from a node.
Announcements beyond a peer's ask cap wait until its asks are answered (as many again at
most), and are forgotten when one of its asks goes unanswered: a peer announcing junk is
asked for one cap's worth per timeout, and costs the node that much. Every table is bounded.
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gridnet.ledger.transactions import Transaction
from gridnet.node.messages import MAX_INVENTORY, HaveMsg, WantMsg
from gridnet.units import Hash32

TX = 0
ORDER = 1
Kind = int
"""What an id names: ``TX`` or ``ORDER``."""
Wants = dict[str, tuple[list[Hash32], list[Hash32]]]
"""Peer -> (txids, order ids) to ask it for."""


@dataclass
class _Ask:
    kind: Kind
    peer: str
    """The peer asked (its answer is awaited; "" once it left: the next is asked)."""
    at: int
    others: list[str] = field(default_factory=list)
    """Peers that announced it too: asked next, in order, if ``peer`` does not answer."""


class Inventory:
    def __init__(
        self,
        peers: list[str],
        rng: random.Random,
        *,
        max_fanout: int,
        timeout_ms: int,
        max_asks_per_peer: int,
        max_told_per_peer: int,
    ) -> None:
        self.peers = peers
        """The node's peer list (shared, not copied)."""
        self.rng = rng
        self._salt = rng.randbytes(16)
        """Keys the per-stream draws (unpredictable when ``rng`` is)."""
        self.max_fanout = max_fanout
        self.timeout_ms = timeout_ms
        self.max_asks_per_peer = max_asks_per_peer
        self.max_told_per_peer = max_told_per_peer
        self._tell: dict[str, tuple[dict[Hash32, None], dict[Hash32, None]]] = {}
        """Peer -> (txids, order ids) to announce to it on the next tick."""
        self._told: dict[str, OrderedDict[Hash32, None]] = {}
        """Peer -> ids announced to it and not asked for yet: all it may ask for."""
        self._asks: dict[Hash32, _Ask] = {}
        """Item -> its ask, oldest first (so the ones timed out are found without a walk)."""
        self._asked: dict[str, dict[Hash32, None]] = {}
        """Peer -> the items asked of it (so a peer that leaves is found without a walk)."""
        self._gone: list[Hash32] = []
        """Items asked of peers that left since the last retry."""
        self._later: dict[str, OrderedDict[Hash32, Kind]] = {}
        """Peer -> ids it announced beyond its ask cap (at most as many), asked for as its
        asks are answered."""

    def spread(self, source: str | None, stream: bytes | None = None) -> tuple[list[str], list[str]]:
        """Split the peers but ``source`` into those an item goes to (all, or a random
        ``max_fanout`` of them) and those only told about it. Items of one ``stream`` (a
        sender's transactions) go to the same peers, drawn once per stream, so each link
        carries a sender's transactions in nonce order."""
        peers = [p for p in self.peers if p != source]
        if len(peers) <= self.max_fanout:
            return peers, []
        rng = self.rng if stream is None else random.Random(self._salt + stream)
        chosen = set(rng.sample(peers, self.max_fanout))
        return [p for p in peers if p in chosen], [p for p in peers if p not in chosen]

    def tell(self, kind: Kind, peers: Iterable[str], item: Hash32) -> None:
        for p in peers:
            self._tell.setdefault(p, ({}, {}))[kind][item] = None

    def has(self, peer: str, kind: Kind, item: Hash32) -> None:
        """``peer`` holds ``item`` (it sent or announced it): no need to announce it there."""
        queued = self._tell.get(peer)
        if queued is not None:
            queued[kind].pop(item, None)

    def received(self, item: Hash32) -> None:
        """An item arrived and was taken (from whichever peer): the ask for it is answered.
        (A copy that was refused leaves the ask to time out and move to the next announcer.)"""
        ask = self._asks.pop(item, None)
        if ask is not None:
            self._answered(item, ask)

    def announcements(self) -> list[tuple[str, HaveMsg]]:
        out = []
        for p in self.peers:
            queued = self._tell.pop(p, None)
            if queued is None:
                continue
            txids, orders = list(queued[TX]), list(queued[ORDER])
            told = self._told.setdefault(p, OrderedDict())
            for item in (*txids, *orders):
                told[item] = None
            while len(told) > self.max_told_per_peer:
                told.popitem(last=False)
            for i in range(0, max(len(txids), len(orders)), MAX_INVENTORY):
                chunk = slice(i, i + MAX_INVENTORY)
                out.append((p, HaveMsg(tuple(txids[chunk]), tuple(orders[chunk]))))
        return out

    def on_have(
        self, peer: str, msg: HaveMsg, now: int, lacks: Callable[[Kind, Hash32], bool]
    ) -> WantMsg | None:
        """What to ask ``peer`` for of what it announced: the items we lack and have not
        asked anyone for (if we have, it is remembered as the next to ask)."""
        want: Wants = {}
        for kind, items in ((TX, msg.txids), (ORDER, msg.orders)):
            for item in items:
                self.has(peer, kind, item)
                if lacks(kind, item):
                    self._note(peer, kind, item, now, want)
        asked = want.get(peer)
        return None if asked is None else WantMsg(tuple(asked[TX]), tuple(asked[ORDER]))

    def _note(
        self,
        peer: str,
        kind: Kind,
        item: Hash32,
        now: int,
        want: Wants,
    ) -> None:
        """``peer`` has ``item``, which we lack: ask it (into ``want``), or remember it as the
        next to ask, or, with its asks at the cap, as one to ask it for later."""
        ask = self._asks.get(item)
        if ask is not None:
            if peer == ask.peer or peer in ask.others:
                return
            if len(ask.others) >= len(self.peers):  # (peers that left are dropped from it here)
                ask.others = [p for p in ask.others if p in self.peers]
            if len(ask.others) < len(self.peers):
                ask.others.append(peer)
        elif len(self._asked.get(peer, ())) < self.max_asks_per_peer:
            self._asks[item] = _Ask(kind, peer, now)
            self._asked.setdefault(peer, {})[item] = None
            want.setdefault(peer, ([], []))[kind].append(item)
        else:
            later = self._later.setdefault(peer, OrderedDict())
            if len(later) < self.max_asks_per_peer:
                later[item] = kind

    def may_serve(self, peer: str, item: Hash32) -> bool:
        """Whether ``peer`` may have ``item`` for the asking: it was announced to it (once)."""
        told = self._told.get(peer)
        if told is None or item not in told:
            return False
        del told[item]
        return True

    def retry(self, now: int, lacks: Callable[[Kind, Hash32], bool]) -> list[tuple[str, WantMsg]]:
        """Asks unanswered for the timeout (or of a peer gone) go to the next announcer
        (with none left the item is given up until announced again); a peer that left one
        unanswered is not asked for what it announced beyond its cap; and peers whose asks
        were answered are asked for what they announced beyond the cap."""
        want: Wants = {}
        expired = [item for item in self._gone if item in self._asks]
        self._gone = []
        for item, ask in self._asks.items():  # oldest first: up to the first still awaited
            if now - ask.at < self.timeout_ms:
                break
            expired.append(item)
        for item in dict.fromkeys(expired):  # (one gone may have timed out too)
            if item not in self._asks:
                continue
            ask = self._asks.pop(item)
            self._answered(item, ask)
            if ask.peer:  # it is still linked, and did not answer
                self._later.pop(ask.peer, None)
            others = [p for p in ask.others if p in self.peers]
            if others and lacks(ask.kind, item):
                self._note(others[0], ask.kind, item, now, want)
                if item in self._asks:
                    self._asks[item].others = others[1:]
        for peer, later in list(self._later.items()):
            while later and peer in self.peers and len(self._asked.get(peer, ())) < self.max_asks_per_peer:
                item, kind = later.popitem(last=False)
                if lacks(kind, item):
                    self._note(peer, kind, item, now, want)
            if not later or peer not in self.peers:
                del self._later[peer]
        return [
            (p, WantMsg(tuple(txids[i : i + MAX_INVENTORY]), tuple(orders[i : i + MAX_INVENTORY])))
            for p, (txids, orders) in want.items()
            for i in range(0, max(len(txids), len(orders)), MAX_INVENTORY)
        ]

    def remove_peer(self, peer: str) -> None:
        """Forget what was queued for, announced to or by ``peer``; its asks move on to the
        next announcer at the next :meth:`retry` (which passes over it where it was one of
        the next to ask: no ask is walked when a peer leaves)."""
        self._tell.pop(peer, None)
        self._told.pop(peer, None)
        self._later.pop(peer, None)
        for item in self._asked.pop(peer, {}):
            ask = self._asks[item]
            ask.peer = ""
            self._gone.append(item)

    def _answered(self, item: Hash32, ask: _Ask) -> None:
        asked = self._asked.get(ask.peer)
        if asked is not None:
            asked.pop(item, None)
            if not asked:
                del self._asked[ask.peer]

    def asks(self) -> int:
        """Items asked for and not received yet."""
        return len(self._asks)


@dataclass
class _Held:
    peer: str
    tx: Transaction
    size: int


class EarlyTxs:
    """Relayed transactions refused with ``NonceGap`` but held, to be admitted when their
    sender's earlier nonce is accepted or mined (gossip on several paths reorders a sender's
    transactions). Bounded in count and bytes (the oldest go first); the node decides what
    may be held (a sender that can pay, a nonce within its mempool limit)."""

    def __init__(self, max_txs: int, max_bytes: int, max_per_peer: int) -> None:
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_per_peer = max_per_peer
        self.bytes = 0
        self._by_id: OrderedDict[Hash32, _Held] = OrderedDict()
        self._by_sender: dict[bytes, dict[int, Hash32]] = {}
        self._of_peer: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, txid: Hash32) -> bool:
        return txid in self._by_id

    def copy_of(self, tx: Transaction) -> Hash32 | None:
        """The id of the held transaction ``tx`` is a copy of, if any: the one of its sender
        and nonce with its signature (see ``Mempool.copy_of``)."""
        txid = self._by_sender.get(tx.sender, {}).get(tx.nonce)
        if txid is None or self._by_id[txid].tx.signature != tx.signature:
            return None
        return txid

    def hold(self, peer: str, txid: Hash32, tx: Transaction, size: int) -> None:
        """Hold ``tx``; for a nonce already held, the higher fee stays. Not held: one larger
        than the whole hold, or from a peer that has ``max_per_peer`` held already (so one
        peer cannot push out what the others sent)."""
        if size > self.max_bytes or self._of_peer[peer] >= self.max_per_peer:
            return
        current = self._by_sender.get(tx.sender, {}).get(tx.nonce)
        if current is not None:
            if self._by_id[current].tx.fee >= tx.fee:
                return
            self._remove(current)
        self._by_sender.setdefault(tx.sender, {})[tx.nonce] = txid
        self._of_peer[peer] += 1
        self._by_id[txid] = _Held(peer, tx, size)
        self.bytes += size
        while len(self._by_id) > self.max_txs or self.bytes > self.max_bytes:
            self._remove(next(iter(self._by_id)))

    def drop_peer(self, peer: str) -> None:
        """Forget what ``peer`` sent (it left: its transactions are not held for it)."""
        if peer in self._of_peer:
            for txid in [t for t, held in self._by_id.items() if held.peer == peer]:
                self._remove(txid)

    def take(self, sender: bytes, nonce: int) -> tuple[str, Transaction] | None:
        """The held transaction of ``sender`` with ``nonce`` (no longer held), if any."""
        txid = self._by_sender.get(sender, {}).get(nonce)
        if txid is None:
            return None
        held = self._by_id[txid]
        self._remove(txid)
        return held.peer, held.tx

    def holds_sender(self, sender: bytes) -> bool:
        return sender in self._by_sender

    def drop_below(self, sender: bytes, nonce: int) -> None:
        """Forget ``sender``'s held transactions with a nonce below ``nonce`` (spent)."""
        for n, txid in list(self._by_sender.get(sender, {}).items()):
            if n < nonce:
                self._remove(txid)

    def _remove(self, txid: Hash32) -> None:
        held = self._by_id.pop(txid)
        self.bytes -= held.size
        self._of_peer[held.peer] -= 1
        if not self._of_peer[held.peer]:
            del self._of_peer[held.peer]
        nonces = self._by_sender[held.tx.sender]
        del nonces[held.tx.nonce]
        if not nonces:
            del self._by_sender[held.tx.sender]
