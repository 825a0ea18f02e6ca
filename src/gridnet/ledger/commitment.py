"""State commitment: a hexary Merkle trie over hashed keys, with small leaf buckets.

Every state entry ``key -> value`` has a leaf digest ``H_leaf(len(key) || key || value)``
and a path ``H_path(key)`` whose 4-bit nibbles lead down the trie. The shape depends
only on the set of keys: a subtree holding at most ``BUCKET_SIZE`` entries is a leaf
bucket (digest: ``H_bucket`` of its leaf digests in path order; an empty subtree is all
zero), a larger one is an inner node with 16 children by the next nibble (digest:
``H_node`` of the 16 child digests). Because keys are placed by a hash, crowding one
path takes a brute-force search per key, and even then an update only costs one leaf
bucket plus one node per level: never work proportional to the size of the state.

Updates are applied in place and return the inverse changes, so a block that fails
validation is reverted exactly (the shape is canonical, so re-applying the old leaves
restores every node). A revert also puts back the digests the update made stale: a node
that was in the trie before the update and is back where it was holds what it held, so a
miner that computes a template's root and reverts it does not hash the same nodes again for
the next root. (A node the update made has no digest to go back to: the revert may keep it,
holding other entries.) Updates may accumulate into
one undo (a chain's successive templates on one head), which reverts them all at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from gridnet.crypto.hashing import state_bucket, state_leaf, state_node, state_path
from gridnet.units import Hash32

BUCKET_SIZE: Final = 16
"""Largest subtree kept as one leaf bucket."""
EMPTY: Final = bytes(32)
"""Digest of an empty subtree (and the root of an empty state)."""
MAX_DEPTH: Final = 64
"""Nibbles in a 32-byte path: the deepest a node can be."""


_BORN: Final = itertools.count()
"""Numbers nodes and undos in the order they are made (one call: atomic, whatever thread)."""


def _nibble(path: bytes, depth: int) -> int:
    byte = path[depth >> 1]
    return byte >> 4 if depth & 1 == 0 else byte & 15


class _Node:
    """A leaf bucket (``entries``) or an inner node (``children``); ``digest`` None = stale."""

    __slots__ = ("born", "children", "count", "digest", "entries")

    def __init__(self) -> None:
        self.entries: dict[bytes, tuple[bytes, Hash32]] | None = {}  # key -> (path, leaf)
        self.children: list[_Node | None] | None = None
        self.count = 0
        self.digest: Hash32 | None = EMPTY
        self.born = next(_BORN)


Touched = dict[int, tuple[_Node, Hash32 | None]]
"""id(node) -> (node, its digest before an update first made it stale)."""


@dataclass
class CommitUndo:
    """The leaf digests an update replaced (None = the key did not exist), and the digests
    of the nodes it touched, as they were before. Only nodes older than the undo are
    recorded: one made by the updates (a bucket split, a new child) has no digest to go
    back to, and a revert that rebuilds the shape in another order may keep it holding
    other entries."""

    leaves: dict[bytes, Hash32 | None] = field(default_factory=dict)
    digests: Touched = field(default_factory=dict)
    newer: int = field(default_factory=lambda: next(_BORN))
    """Nodes born after this number were made after the undo began."""


class StateCommitment:
    """Incrementally maintained root over a key-value state."""

    def __init__(self) -> None:
        self._root = _Node()
        self._leaves: dict[bytes, tuple[bytes, Hash32]] = {}  # key -> (path, leaf digest)

    @classmethod
    def from_items(cls, items: Iterable[tuple[bytes, bytes]]) -> StateCommitment:
        tree = cls()
        tree.update(dict(items))
        return tree

    @property
    def root(self) -> Hash32:
        return _digest(self._root)

    def update(self, changes: Mapping[bytes, bytes | None], undo: CommitUndo | None = None) -> CommitUndo:
        """Apply ``changes`` (value None = deleted); returns what :meth:`revert` needs. Given
        the ``undo`` of the latest update, it grows to revert both at once."""
        if undo is None:
            undo = CommitUndo()
        for key, value in changes.items():
            old = self._leaves.get(key)
            if key not in undo.leaves:
                undo.leaves[key] = old[1] if old is not None else None
            self._set(key, None if value is None else state_leaf(key, value), old, undo)
        return undo

    def revert(self, undo: CommitUndo) -> None:
        """Undo the :meth:`update` that returned ``undo`` (must be the latest one)."""
        for key, leaf in undo.leaves.items():
            self._set(key, leaf, self._leaves.get(key), None)
        for node, digest in undo.digests.values():
            node.digest = digest

    # --- the trie ----------------------------------------------------------------------

    def _set(
        self, key: bytes, leaf: Hash32 | None, old: tuple[bytes, Hash32] | None, undo: CommitUndo | None
    ) -> None:
        if leaf is None:
            if old is not None:
                del self._leaves[key]
                _delete(self._root, 0, old[0], key, undo)
            return
        path = old[0] if old is not None else state_path(key)
        self._leaves[key] = (path, leaf)
        _insert(self._root, 0, path, key, leaf, old is None, undo)


def _insert(
    node: _Node, depth: int, path: bytes, key: bytes, leaf: Hash32, new: bool, undo: CommitUndo | None = None
) -> None:
    while True:
        if undo is not None and node.born < undo.newer and id(node) not in undo.digests:
            undo.digests[id(node)] = (node, node.digest)
        node.digest = None
        if new:
            node.count += 1
        entries = node.entries
        if entries is not None:
            entries[key] = (path, leaf)
            if node.count > BUCKET_SIZE and depth < MAX_DEPTH:
                _split(node, depth)
            return
        children = node.children
        assert children is not None
        i = _nibble(path, depth)
        child = children[i]
        if child is None:
            child = children[i] = _Node()
        node = child
        depth += 1


def _split(node: _Node, depth: int) -> None:
    """Turn an over-full leaf bucket into an inner node (children may split again)."""
    entries = node.entries
    assert entries is not None
    children: list[_Node | None] = [None] * 16
    node.entries, node.children = None, children
    for key, (path, leaf) in entries.items():
        i = _nibble(path, depth)
        child = children[i]
        if child is None:
            child = children[i] = _Node()
        _insert(child, depth + 1, path, key, leaf, True)


def _delete(node: _Node, depth: int, path: bytes, key: bytes, undo: CommitUndo | None) -> None:
    if undo is not None and node.born < undo.newer and id(node) not in undo.digests:
        undo.digests[id(node)] = (node, node.digest)
    node.digest = None
    node.count -= 1
    if node.entries is not None:
        del node.entries[key]
        return
    children = node.children
    assert children is not None
    i = _nibble(path, depth)
    child = children[i]
    assert child is not None
    _delete(child, depth + 1, path, key, undo)
    if child.count == 0:
        children[i] = None
    if node.count <= BUCKET_SIZE:  # small enough again: back to one leaf bucket
        merged: dict[bytes, tuple[bytes, Hash32]] = {}
        _collect(node, merged)
        node.children, node.entries = None, merged


def _collect(node: _Node, into: dict[bytes, tuple[bytes, Hash32]]) -> None:
    if node.entries is not None:
        into.update(node.entries)
        return
    assert node.children is not None
    for child in node.children:
        if child is not None:
            _collect(child, into)


def _digest(node: _Node) -> Hash32:
    d = node.digest
    if d is not None:
        return d
    if node.entries is not None:
        if node.entries:
            d = state_bucket(b"".join([leaf for _, leaf in sorted(node.entries.values())]))
        else:
            d = EMPTY
    else:
        assert node.children is not None
        # (Most children are unchanged: their digest is read here, without a call.)
        d = state_node(
            b"".join(
                [
                    EMPTY if c is None else c.digest if c.digest is not None else _digest(c)
                    for c in node.children
                ]
            )
        )
    node.digest = d
    return d
