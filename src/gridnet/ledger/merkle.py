"""Merkle tree over a block's transaction ids, with inclusion proofs.

Leaves and inner nodes are hashed under different personalisations, and an odd
node at the end of a level is promoted unchanged (never duplicated), so no two
different lists of ids share a root.
"""

from __future__ import annotations

from collections.abc import Sequence

from gridnet.crypto.hashing import merkle_leaf, merkle_node
from gridnet.encoding import HashBytes, Wire
from gridnet.units import Hash32

EMPTY_ROOT: Hash32 = bytes(32)


class MerkleStep(Wire, frozen=True):
    sibling: HashBytes
    sibling_is_left: bool


def merkle_root(ids: Sequence[Hash32]) -> Hash32:
    if not ids:
        return EMPTY_ROOT
    level = [merkle_leaf(i) for i in ids]
    while len(level) > 1:
        nxt = [merkle_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_proof(ids: Sequence[Hash32], index: int) -> tuple[MerkleStep, ...]:
    """Steps from leaf ``index`` up to the root."""
    if not 0 <= index < len(ids):
        raise IndexError(f"no transaction at index {index} (block has {len(ids)})")
    level = [merkle_leaf(i) for i in ids]
    steps: list[MerkleStep] = []
    pos = index
    while len(level) > 1:
        sibling = pos ^ 1
        if sibling < len(level):
            steps.append(MerkleStep(sibling=level[sibling], sibling_is_left=sibling < pos))
        nxt = [merkle_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        pos //= 2
    return tuple(steps)


def verify_merkle_proof(root: Hash32, item_id: Hash32, proof: Sequence[MerkleStep]) -> bool:
    """What a light client runs: is ``item_id`` under ``root``?"""
    node = merkle_leaf(item_id)
    for step in proof:
        node = merkle_node(step.sibling, node) if step.sibling_is_left else merkle_node(node, step.sibling)
    return node == root
