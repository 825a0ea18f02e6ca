"""State commitment: a fixed-shape bucketed Merkle tree over all state entries.

Every state entry ``key -> value`` has a leaf digest ``H(len(key) || key || value)``.
Keys fall into one of ``2**16`` buckets by their last two bytes (keys end in an
address, itself a digest, or in a big-endian counter, so buckets stay balanced). A bucket's digest
is the hash of its leaves sorted by key (a fixed all-zero digest when empty); four
levels of 16-ary nodes lead from the buckets to the root. Updating a block's
changes costs one digest per changed key and per touched node, not per entry, so
the root is recomputed for every block at little cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from gridnet.crypto.hashing import state_bucket, state_leaf, state_node
from gridnet.units import Hash32

FANOUT_BITS: Final = 4
LEVELS: Final = 4
BUCKET_BITS: Final = FANOUT_BITS * LEVELS
FANOUT: Final = 1 << FANOUT_BITS


def _empty_digests() -> list[Hash32]:
    empties = [bytes(32)]
    for _ in range(LEVELS):
        empties.append(state_node(empties[-1] * FANOUT))
    return empties


EMPTY: Final = _empty_digests()
"""EMPTY[0]: an empty bucket; EMPTY[level]: an empty node at that level; EMPTY[LEVELS]: root."""


def bucket_of(key: bytes) -> int:
    return (key[-2] << 8) | key[-1]


@dataclass
class CommitUndo:
    """What :meth:`StateCommitment.update` replaced, so that it can be reverted."""

    buckets: dict[int, dict[bytes, bytes] | None] = field(default_factory=dict)
    nodes: list[dict[int, Hash32]] = field(default_factory=list)


class StateCommitment:
    """Incrementally maintained root over a key-value state."""

    def __init__(self) -> None:
        self._buckets: dict[int, dict[bytes, bytes]] = {}
        # _levels[0]: bucket digests; _levels[l]: level-l nodes; _levels[LEVELS][0]: root.
        self._levels: list[list[Hash32]] = [
            [EMPTY[level]] * (1 << (BUCKET_BITS - FANOUT_BITS * level)) for level in range(LEVELS + 1)
        ]

    @classmethod
    def from_items(cls, items: Iterable[tuple[bytes, bytes]]) -> StateCommitment:
        tree = cls()
        tree.update(dict(items))
        return tree

    @property
    def root(self) -> Hash32:
        return self._levels[LEVELS][0]

    def update(self, changes: Mapping[bytes, bytes | None]) -> CommitUndo:
        """Apply ``changes`` (value None = deleted); returns what :meth:`revert` needs."""
        undo = CommitUndo(nodes=[{} for _ in range(LEVELS + 1)])
        buckets = self._buckets
        touched: set[int] = set()
        for key, value in changes.items():
            b = bucket_of(key)
            if b not in undo.buckets:
                old = buckets.get(b)
                undo.buckets[b] = old
                buckets[b] = dict(old) if old else {}
            contents = buckets[b]
            if value is None:
                contents.pop(key, None)
            else:
                contents[key] = state_leaf(key, value)
            touched.add(b)
        level0 = self._levels[0]
        saved = undo.nodes[0]
        for b in touched:
            contents = buckets[b]
            saved[b] = level0[b]
            if contents:
                level0[b] = state_bucket(b"".join(v for _, v in sorted(contents.items())))
            else:
                del buckets[b]
                level0[b] = EMPTY[0]
        for level in range(1, LEVELS + 1):
            below = self._levels[level - 1]
            nodes = self._levels[level]
            saved = undo.nodes[level]
            touched = {i >> FANOUT_BITS for i in touched}
            for parent in touched:
                first = parent << FANOUT_BITS
                saved[parent] = nodes[parent]
                nodes[parent] = state_node(b"".join(below[first : first + FANOUT]))
        return undo

    def revert(self, undo: CommitUndo) -> None:
        """Undo the :meth:`update` that returned ``undo`` (must be the latest one)."""
        for b, contents in undo.buckets.items():
            if contents is None:
                self._buckets.pop(b, None)
            else:
                self._buckets[b] = contents
        for level, saved in enumerate(undo.nodes):
            nodes = self._levels[level]
            for i, d in saved.items():
                nodes[i] = d
