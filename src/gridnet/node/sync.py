"""Headers-first sync bookkeeping of a node (sans-IO): the checked headers whose blocks it
lacks, held per peer, and the presync of branches still below the chain's minimum work.

A peer's *branch* is the path of checked headers it sent, from the last block we hold of its
chain to the last header it sent (its tip); the headers on it whose blocks are not here are
*pending*. Peers that sent the same headers share them. Every table is bounded: a peer holds
at most ``max_per_peer`` pending headers and all peers ``max_total`` (a peer that needs room
pushes out the branch of the peer holding the most, never a smaller share); a branch that
makes no progress (no new header kept, no block of it stored) for ``expiry_ms`` is dropped,
and so is everything of a peer when it goes.

*Presync.* Headers of a branch whose work is not yet worth keeping — below the chain's
``min_chain_work``, or no more than our best known header's — are checked (proof-of-work,
retarget, time, links) but not kept: the node keeps only the branch's last checked header with
the few ancestors the next header's checks read, and 4 bytes of each header's hash. When the
branch gets past that work, the node asks the peer for the same headers again and keeps them
only if each one's hash ends with the bytes recorded (a peer that swapped its branch after the
presync gets nothing kept); a branch that ends short of it, or needs more than
``max_presync`` headers to get there, is forgotten. So a peer can make a node check cheap
headers but never hold them.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from gridnet.ledger.chain import BlockEntry
from gridnet.units import Hash32

TAIL = 4
"""Bytes of each presynced header's hash recorded (the end of the hash: its start is the
proof-of-work's zeros)."""


@dataclass
class _Branch:
    tip: BlockEntry
    """The last header the peer sent (pending, or a block we hold)."""
    pending: deque[Hash32]
    """Its pending headers in chain order: the first one's parent is a block we hold."""
    since: int
    """When it last made progress: a header kept or a block of it stored [ms]."""
    complete: bool
    """The peer has shown all the work it announced (its last answer ended its chain)."""


@dataclass
class Presync:
    """A branch not yet worth keeping (below the minimum chain work, or our best known
    header's), being checked without being kept."""

    fork: BlockEntry
    """The block (or pending header) we hold that the branch leaves from."""
    last: BlockEntry
    """Its last checked header, with only the ancestors the next header's checks read."""
    tails: bytearray
    """``TAIL`` bytes of each checked header's hash, in chain order."""
    since: int
    """When the last batch was checked [ms]."""

    def extend(self, checked: list[BlockEntry], depth: int, now: int) -> None:
        """Record ``checked`` (the next headers of the branch, in order); keep of them only
        the last ``depth`` as ancestors of the new last header."""
        self.tails += b"".join(e.hash[-TAIL:] for e in checked)
        self.last = _detach(checked[-1], depth, self.fork.height)
        self.since = now

    def count(self) -> int:
        return len(self.tails) // TAIL


@dataclass(frozen=True)
class Proof:
    """What a finished presync showed: the branch from ``fork`` gets past the work it had to
    (the minimum chain work, and our best known header's)."""

    fork: BlockEntry
    tails: bytes

    def end(self) -> int:
        """The height at which the branch got past the work it had to."""
        return self.fork.height + len(self.tails) // TAIL

    def proves(self, entry: BlockEntry) -> bool:
        """Whether ``entry`` is the header the presync checked at its height."""
        i = (entry.height - self.fork.height - 1) * TAIL
        return 0 <= i < len(self.tails) and self.tails[i : i + TAIL] == entry.hash[-TAIL:]


def _detach(entry: BlockEntry, depth: int, floor: int) -> BlockEntry:
    """``entry`` with at most ``depth`` ancestors above height ``floor`` (copies: the older
    ones are cut off, so a long presync holds a few headers, not its whole branch)."""
    path: list[BlockEntry] = []
    e: BlockEntry | None = entry
    while e is not None and e.height > floor and len(path) < depth:
        path.append(e)
        e = e.parent
    if e is None or e.height <= floor:
        return entry  # nothing beyond ``depth`` to cut
    parent: BlockEntry | None = None
    for old in reversed(path):
        parent = BlockEntry(old.hash, old.header, parent, old.total_work)
    assert parent is not None
    return parent


class PendingHeaders:
    def __init__(self, *, max_total: int, max_per_peer: int, expiry_ms: int) -> None:
        self.max_total = max_total
        self.max_per_peer = max_per_peer
        self.expiry_ms = expiry_ms
        self.entries: dict[Hash32, BlockEntry] = {}
        """Every pending header."""
        self._refs: Counter[Hash32] = Counter()
        """Pending header -> how many branches hold it."""
        self._branches: dict[str, _Branch] = {}
        self.presyncs: dict[str, Presync] = {}
        self.proofs: dict[str, Proof] = {}
        """Peer -> what its finished presync showed (until its branch is kept past it)."""

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, h: Hash32) -> bool:
        return h in self.entries

    def get(self, h: Hash32) -> BlockEntry | None:
        return self.entries.get(h)

    def tip(self, peer: str) -> BlockEntry | None:
        """The last header ``peer`` sent us that we checked and kept (or its block)."""
        branch = self._branches.get(peer)
        return None if branch is None else branch.tip

    def held(self, peer: str) -> int:
        branch = self._branches.get(peer)
        return 0 if branch is None else len(branch.pending)

    def has_room(self, peer: str) -> bool:
        """Whether ``peer`` may add a header: within its bound, and within the overall one
        or by pushing out a larger share (``make_room``)."""
        held = self.held(peer)
        if held >= self.max_per_peer:
            return False
        if len(self.entries) < self.max_total:
            return True
        return any(p != peer and len(b.pending) > held + 1 for p, b in self._branches.items())

    def holders(self, h: Hash32) -> list[str]:
        """The peers whose branches hold pending header ``h``."""
        return [p for p, b in self._branches.items() if b.tip.hash == h or h in b.pending]

    def best(self, but: str) -> BlockEntry | None:
        """The pending tip with the most work of the peers other than ``but``."""
        tips = [b.tip for p, b in self._branches.items() if p != but and b.pending]
        return max(tips, key=lambda e: e.total_work, default=None)

    def leads_past(self, h: Hash32, work: int) -> bool:
        """Whether pending header ``h`` is on a branch whose tip has more than ``work``."""
        return any(b.tip.total_work > work and h in b.pending for b in self._branches.values())

    def best_height(self) -> int:
        return max((b.tip.height for b in self._branches.values() if b.pending), default=0)

    def make_room(self, peer: str, n: int) -> int:
        """How many of ``n`` new headers ``peer`` may keep: within its own bound, and within
        the overall one after pushing out, largest first, the branches of the peers that
        would still hold more than ``peer``."""
        n = min(n, max(0, self.max_per_peer - self.held(peer)))
        while len(self.entries) + n > self.max_total:
            others = [(len(b.pending), p) for p, b in self._branches.items() if p != peer and b.pending]
            largest = max(others, default=None)
            if largest is None or largest[0] <= self.held(peer) + n:
                break
            self.forget_branch(largest[1])
        return max(0, min(n, self.max_total - len(self.entries)))

    def keep(self, peer: str, tip: BlockEntry, new: list[BlockEntry], now: int, *, complete: bool) -> None:
        """``peer``'s branch now ends at ``tip``; ``new`` (headers checked now, in chain order,
        ending at ``tip``) become pending. The headers of its previous branch not on this one
        are released."""
        for entry in new:
            self.entries.setdefault(entry.hash, entry)
        path: list[Hash32] = []
        e: BlockEntry | None = tip
        while e is not None and self.entries.get(e.hash) is e:
            path.append(e.hash)
            e = e.parent
        path.reverse()
        self._refs.update(path)
        old = self._branches.get(peer)
        since = now if old is None or new else old.since
        self._branches[peer] = _Branch(tip, deque(path), since, complete)
        if old is not None:
            self._release(old.pending)

    def connected(self, h: Hash32, entry: BlockEntry, now: int) -> None:
        """The block of pending header ``h`` is stored (``entry`` in the chain's index): the
        branches that start with it move on (their next header's parent becomes ``entry``,
        so no copy of a stored header stays reachable)."""
        if self.entries.pop(h, None) is None:
            return
        del self._refs[h]
        for branch in self._branches.values():
            if branch.pending and branch.pending[0] == h:
                branch.pending.popleft()
                branch.since = now
                if branch.pending:
                    self.entries[branch.pending[0]].parent = entry
                if branch.tip.hash == h:
                    branch.tip = entry

    def roots(self) -> list[Hash32]:
        """The blocks the branches build on: the parent of each one's first pending header
        (or its tip when none is pending)."""
        out = []
        for branch in self._branches.values():
            root = self.entries[branch.pending[0]].parent if branch.pending else branch.tip
            if root is not None:
                out.append(root.hash)
        return out

    def forget_branch(self, peer: str) -> int:
        """Forget ``peer``'s branch (not its presync or proof); how many headers it held."""
        branch = self._branches.pop(peer, None)
        if branch is None:
            return 0
        self._release(branch.pending)
        return len(branch.pending)

    def drop(self, peer: str) -> int:
        """Forget ``peer``'s branch, presync and proof; how many headers it held."""
        self.presyncs.pop(peer, None)
        self.proofs.pop(peer, None)
        return self.forget_branch(peer)

    def drop_through(self, h: Hash32) -> None:
        """Forget the branches that lead through header ``h`` (its block is invalid)."""
        for peer in [p for p, b in self._branches.items() if h in b.pending or b.tip.hash == h]:
            self.forget_branch(peer)

    def drop_lighter(self, work: int) -> list[tuple[str, int]]:
        """Forget the complete branches whose tip has less than ``work``: (peer, headers)."""
        lighter = [
            p for p, b in self._branches.items() if b.complete and b.pending and b.tip.total_work < work
        ]
        return [(p, self.forget_branch(p)) for p in lighter]

    def expire(self, now: int) -> list[tuple[str, int]]:
        """Forget the branches and presyncs that made no progress for ``expiry_ms``: (peer,
        headers it held or had presynced)."""
        out = []
        for peer, branch in list(self._branches.items()):
            if branch.pending and now - branch.since >= self.expiry_ms:
                out.append((peer, self.forget_branch(peer)))
        for peer, presync in list(self.presyncs.items()):
            if now - presync.since >= self.expiry_ms:
                out.append((peer, presync.count()))
                del self.presyncs[peer]
        return out

    def _release(self, hashes: deque[Hash32]) -> None:
        refs = self._refs
        for h in hashes:
            if h not in refs:
                continue  # its block was stored meanwhile
            refs[h] -= 1
            if refs[h] <= 0:
                del refs[h]
                del self.entries[h]
