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


few = st.lists(  # (about BUCKET_SIZE keys: the root splits and merges back all the time)
    st.tuples(st.sampled_from(KEYS[:24]), st.one_of(st.none(), st.binary(min_size=1, max_size=2))),
    min_size=1,
    max_size=8,
)


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


@settings(max_examples=200, deadline=None)
@given(
    base=st.sets(st.sampled_from(KEYS[:24]), min_size=12, max_size=22),
    steps=st.lists(st.tuples(few, few), min_size=1, max_size=8),
)
def test_trials_that_split_and_merge_buckets_leave_every_digest_right(
    base: set[bytes],
    steps: list[tuple[list[tuple[bytes, bytes | None]], list[tuple[bytes, bytes | None]]]],
) -> None:
    """As above, on about ``BUCKET_SIZE`` keys: trials and their reverts split buckets and
    merge them back, and a revert may do it in another order than its trial."""
    state = dict.fromkeys(base, b"\0")
    tree = StateCommitment.from_items(state.items())
    for trial, real in steps:
        before = tree.root
        undo = tree.update(dict(trial))
        assert tree.root == rebuilt(applied(state, dict(trial)))
        tree.revert(undo)
        assert tree.root == before
        tree.update(dict(real))
        state = applied(state, dict(real))
        assert tree.root == rebuilt(state)


def test_a_node_a_trial_made_keeps_no_digest_after_the_revert() -> None:
    """17 keys (the root is an inner node); a trial deletes one (the root merges back into
    one bucket), adds two (it splits again: new children, one made for the last key) and is
    reverted in another order (the deleted key comes back first, into that new child). The
    child outlives the revert holding another key; the digest it had when it was made (the
    empty one) must not be put back. Found by the test above."""
    tree = StateCommitment()
    state: dict[bytes, bytes] = {}
    for i in (6, 1, 2, 16, 17, 18, 19, 3, 4, 5, 7, 8, 9, 10, 11, 14, 15):
        state[KEYS[i]] = b"\0"
    tree.update(dict(state))
    before = tree.root
    trial = {KEYS[1]: None, KEYS[13]: b"\0", KEYS[0]: b"\0"}
    undo = tree.update(trial)
    assert tree.root == rebuilt(applied(state, trial))
    tree.revert(undo)
    assert tree.root == before
    tree.update({KEYS[2]: b"\1"})  # (the root and one child recomputed: the rest as cached)
    state[KEYS[2]] = b"\1"
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
