"""The state commitment: incremental updates equal a rebuild; reverts are exact;
chosen keys cannot crowd one bucket."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.ledger.commitment import BUCKET_SIZE, EMPTY, StateCommitment, _Node

KEYS = [b"A" + i.to_bytes(20, "big") for i in range(200)]
ops = st.lists(
    st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(min_size=1, max_size=8))),
    min_size=1,
    max_size=120,
)


def rebuilt(state: dict[bytes, bytes]) -> bytes:
    return StateCommitment.from_items(state.items()).root


def applied(state: dict[bytes, bytes], changes: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
    """``state`` after ``changes`` (value None = deleted)."""
    out = dict(state)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def buckets(node: _Node) -> list[int]:
    if node.entries is not None:
        return [len(node.entries)]
    assert node.children is not None
    return [n for c in node.children if c is not None for n in buckets(c)]


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(ops, min_size=1, max_size=6))
def test_incremental_root_equals_rebuild_and_revert_is_exact(
    batches: list[list[tuple[bytes, bytes | None]]],
) -> None:
    tree = StateCommitment()
    state: dict[bytes, bytes] = {}
    for batch in batches:
        changes = dict(batch)
        before = tree.root
        undo = tree.update(changes)
        tree.revert(undo)
        assert tree.root == before
        tree.update(changes)
        state = applied(state, changes)
        assert tree.root == rebuilt(state)
    tree.update(dict.fromkeys(list(state)))
    assert tree.root == EMPTY


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(ops, ops), min_size=1, max_size=5))
def test_a_trial_root_reverted_leaves_every_digest_right_for_the_next_root(
    steps: list[tuple[list[tuple[bytes, bytes | None]], list[tuple[bytes, bytes | None]]]],
) -> None:
    """A miner's template: changes applied, the root computed, the changes reverted (the
    touched nodes' digests put back), then other changes: every root is a rebuild's."""
    tree = StateCommitment()
    state: dict[bytes, bytes] = {}
    for trial, real in steps:
        before = tree.root
        trial_state = applied(state, dict(trial))
        undo = tree.update(dict(trial))
        assert tree.root == rebuilt(trial_state)
        tree.revert(undo)
        assert tree.root == before == rebuilt(state)
        tree.update(dict(real))
        state = applied(state, dict(real))
        assert tree.root == rebuilt(state)


@settings(max_examples=60, deadline=None)
@given(base=ops, templates=st.lists(ops, min_size=1, max_size=5))
def test_templates_on_one_head_grow_one_undo_that_puts_the_head_back(
    base: list[tuple[bytes, bytes | None]], templates: list[list[tuple[bytes, bytes | None]]]
) -> None:
    """A chain's templates on one head: each update goes on from the last (with what it
    changed that the next does not, set back to the head's value), one undo grows to revert
    them all; every root is a rebuild's, and the revert leaves every digest right."""
    head = {k: v for k, v in dict(base).items() if v is not None}
    tree = StateCommitment.from_items(head.items())
    head_root = tree.root
    undo = None
    last: dict[bytes, bytes | None] = {}
    for template in templates:
        changes = dict(template)
        delta = {k: v for k, v in changes.items() if k not in last or last[k] != v}
        delta.update({k: head.get(k) for k in last.keys() - changes.keys()})
        undo = tree.update(delta, undo)
        last = changes
        assert tree.root == rebuilt(applied(head, changes))
    assert undo is not None
    tree.revert(undo)
    assert tree.root == head_root == rebuilt(head)
    tree.update({KEYS[0]: b"next"})  # the digests put back serve the next root
    assert tree.root == rebuilt({**head, KEYS[0]: b"next"})


def test_shape_splits_and_merges_canonically() -> None:
    tree = StateCommitment()
    keys = [os.urandom(21) for _ in range(3_000)]
    tree.update({k: b"v" for k in keys})
    assert max(buckets(tree._root)) <= BUCKET_SIZE
    tree.update(dict.fromkeys(keys[:2_990]))
    assert tree._root.entries is not None and len(tree._root.entries) == 10  # merged back
    assert tree.root == rebuilt({k: b"v" for k in keys[2_990:]})


def test_keys_chosen_to_share_bytes_do_not_share_a_bucket() -> None:
    # The attack on a byte-indexed bucket: thousands of addresses ending alike.
    crowd = [b"A" + os.urandom(18) + b"\x00\x00" for _ in range(5_000)]
    tree = StateCommitment.from_items((k, b"coin") for k in crowd)
    assert max(buckets(tree._root)) <= BUCKET_SIZE
