"""The permissioned chain's finality rules in slots (``ledger/poa.py``): a vote's epoch is its
target's slot, not its height. Each test makes slots and heights differ (skipped slots, or
votes naming another height than slot) and breaks one rule, asserting its named rejection."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from msgspec.structs import replace

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import BadJustification, InvalidBlock
from gridnet.ledger.blocks import Checkpoint, Header, SignedVote, Vote
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import Validator
from gridnet.ledger.poa import VOTE_WINDOW, finality, member_since, seal_header, sign_vote, validator_set
from tests.helpers import new_chain, rejection
from tests.ledger.test_poa import (
    BY_KEY,
    KEYS,
    NEWCOMER,
    _change,
    _report,
    _set,
    _vote_rule,
    at,
    carry,
    checkpoint,
    grow,
    poa_params,
    propose,
    reseal,
    votes_for,
)
from tests.ledger.vectors import record_rejection, record_valid, snapshot

H = bytes(32)


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return new_chain(tmp_path / "poa", poa_params())


def slots_of(chain: Chain) -> tuple[int, int]:
    """The justified and the final checkpoint's slots."""
    record = finality(chain.view())
    return record.justified.slot, record.finalized.slot


def vote(
    key: PrivateKey, chain: Chain, source: tuple[int, int], target: tuple[int, int], tag: int = 0
) -> SignedVote:
    """A vote by ``key`` between checkpoints given as (height, slot)."""
    return sign_vote(
        key,
        chain.chain_id,
        Vote(Checkpoint(*source, H), Checkpoint(*target, bytes([tag]) * 32)),
    )


def fault_rule(chain: Chain, a: SignedVote, b: SignedVote, slot: int) -> str:
    return type(rejection(chain, _report(chain, votes=(a, b)), at(slot))).__name__


# --- justification and finality ------------------------------------------------------------


def test_a_link_to_the_next_slot_finalizes_and_one_across_a_skipped_slot_only_justifies(chain: Chain) -> None:
    """Finality is FFG's: the source is final when the target is in the very next slot. A
    link across a skipped slot justifies its target and finalizes nothing (a block of another
    branch may sit in the skipped slot); the next link between consecutive slots does."""
    grow(chain, [1, 2, 3])
    assert slots_of(chain) == (2, 1)
    chain.add_block(propose(chain, 5, votes_for(chain, KEYS)), now=at(5))  # (slot 3 from 2)
    assert slots_of(chain) == (3, 2)
    pre = snapshot(chain)
    block = propose(chain, 6, votes_for(chain, KEYS))  # votes for slot 5 from 3: slot 4 skipped
    chain.add_block(block, now=at(6))
    assert slots_of(chain) == (5, 2), "justified, the source not final"
    assert chain.head.header.justified == 5 and finality(chain.view()).justified.height == 4
    record_valid(
        "poa_link_across_a_skipped_slot_justifies_only",
        "permissioned chain: all four votes for a block two slots after the justified one (a slot "
        "skipped between) justify it and finalize nothing",
        pre,
        block,
        at(6),
        chain,
    )
    chain.add_block(propose(chain, 7, votes_for(chain, KEYS)), now=at(7))
    assert slots_of(chain) == (6, 5), "the link from slot 5 to slot 6 finalizes slot 5"


def test_a_header_naming_the_justified_height_instead_of_its_slot_is_badjustification(chain: Chain) -> None:
    grow(chain, [2, 4, 6])
    record = finality(chain.view())
    assert (record.justified.height, record.justified.slot) == (2, 4)
    block = propose(chain, 8)
    assert block.header.justified == 4
    with pytest.raises(BadJustification):
        chain.add_block(reseal(chain, block, justified=2), now=at(8))


def test_a_header_justified_in_its_own_slot_is_badjustification(chain: Chain) -> None:
    grow(chain, [1, 2])
    block = propose(chain, 3)
    with pytest.raises(BadJustification, match="justified slot 3"):
        chain.add_block(reseal(chain, block, justified=3), now=at(3))


def test_fork_choice_prefers_the_branch_justified_in_a_later_slot_over_one_justified_higher(
    tmp_path: Path,
) -> None:
    """Fork choice compares justified slots (then heights): branch A, longer and justified at
    a greater height, loses to branch B justified in a later slot. (A validator's last vote
    source is a slot: following A, it could not vote from A's justified checkpoint again.)"""
    params = poa_params()
    a = new_chain(tmp_path / "a", params)
    b = new_chain(tmp_path / "b", params)
    for c in (a, b):
        grow(c, [1, 2])  # common: justified slot 1, final genesis
    for slot in (3, 5, 7, 9):  # A: every other slot; slot 2 final, then justified up to slot 7
        a.add_block(propose(a, slot, votes_for(a, KEYS)), now=at(slot))
    for slot in (8, 10):  # B: slot 8, then justified slot 8 (not final: slot 2 to 8)
        b.add_block(propose(b, slot, votes_for(b, KEYS)), now=at(slot))
    ja, jb = finality(a.view()).justified, finality(b.view()).justified
    assert (ja.height, ja.slot, a.height) == (5, 7, 6)
    assert (jb.height, jb.slot, b.height) == (3, 8, 4)
    assert a.finalized() == checkpoint(a, 2)
    for height in (3, 4):
        block = b.block_at(height)
        assert block is not None
        a.add_block(block, now=at(10))
    assert a.head.hash == b.head.hash, "the branch justified in the later slot wins"


# --- what a vote must name -----------------------------------------------------------------


def test_a_vote_naming_another_slot_for_its_target_block_is_wrongvotetarget(chain: Chain) -> None:
    grow(chain, [2, 4])
    source = chain.justified()
    assert source is not None
    target = checkpoint(chain, 2)
    assert target.slot == 4
    wrong = sign_vote(KEYS[0], chain.chain_id, Vote(source, replace(target, slot=5)))
    assert _vote_rule(chain, [wrong], 6) == "WrongVoteTarget"


def test_a_vote_naming_another_slot_for_its_source_is_stalevotesource(chain: Chain) -> None:
    grow(chain, [2, 4, 6])
    source = chain.justified()
    assert source is not None and source.slot == 4
    stale = sign_vote(KEYS[0], chain.chain_id, Vote(replace(source, slot=3), checkpoint(chain, 3)))
    assert _vote_rule(chain, [stale], 8) == "StaleVoteSource"


def test_a_vote_for_a_block_more_than_the_vote_window_of_slots_back_is_wrongvotetarget(chain: Chain) -> None:
    """The vote window is in slots: a block 1,025 slots before the one that would count the
    vote is out of it, though it is the branch's previous block."""
    grow(chain, [1])
    late = 2 + VOTE_WINDOW
    assert _vote_rule(chain, votes_for(chain, KEYS[:1]), late) == "WrongVoteTarget"
    block = propose(chain, late - 1, votes_for(chain, KEYS))
    assert len(block.votes) == 3, "1,024 slots back: in the window (three justify; then a stale source)"
    chain.add_block(block, now=at(late - 1))
    assert finality(chain.view()).justified.slot == 1


def test_a_second_vote_for_one_slot_is_votealreadycounted(chain: Chain) -> None:
    grow(chain, [3, 5])
    vote = votes_for(chain, KEYS[:1])[0]
    assert vote.vote.target.slot == 5
    assert _vote_rule(chain, [vote, vote], 7) == "VoteAlreadyCounted"


# --- faults in slots -----------------------------------------------------------------------


def test_two_votes_for_one_slot_at_different_heights_are_a_double_vote(chain: Chain) -> None:
    a = vote(KEYS[1], chain, (0, 0), (4, 7))
    b = vote(KEYS[1], chain, (0, 0), (6, 7))
    chain.add_block(propose(chain, 1, txs=[_report(chain, votes=(a, b))]), now=at(1))
    assert validator_set(chain.view()).member(KEYS[1].public_key) is None


def test_two_votes_for_one_height_in_different_slots_are_validatorfaultnotproven(chain: Chain) -> None:
    """After a heal a validator votes for a block of the height it voted for on the other
    branch, in a later slot: no fault."""
    a = vote(KEYS[1], chain, (0, 0), (6, 7), tag=1)
    b = vote(KEYS[1], chain, (0, 0), (6, 9), tag=2)
    assert fault_rule(chain, a, b, 1) == "ValidatorFaultNotProven"


def test_a_surround_vote_is_told_by_slots_not_heights(chain: Chain) -> None:
    # heights nest (2 < 3 < 5 < 9), slots do not (2 < 12, 14 > 10): no fault
    wide = vote(KEYS[1], chain, (2, 2), (9, 10))
    crossing = vote(KEYS[1], chain, (3, 12), (5, 14))
    assert fault_rule(chain, wide, crossing, 1) == "ValidatorFaultNotProven"
    # slots nest (1 < 3 < 8 < 20), heights do not (6 > 4): a surround vote
    outer = vote(KEYS[2], chain, (1, 1), (4, 20))
    inner = vote(KEYS[2], chain, (6, 3), (7, 8))
    chain.add_block(propose(chain, 1, txs=[_report(chain, votes=(inner, outer))]), now=at(1))
    assert validator_set(chain.view()).member(KEYS[2].public_key) is None


def test_a_fault_counts_from_the_slot_a_key_joined_again_whatever_its_heights(chain: Chain) -> None:
    """A validator removed, then approved back in the block of slot 20 (height 4), which the
    block of slot 22 finalizes, is a member from slot 23. A double vote for slot 3 — at height
    10, a height above the block that let it back in, as on a longer branch during a partition
    — was signed before: it cannot remove it again (FaultBeforeMembership). A double vote for
    slot 25 at height 2 (below) was signed since, and does."""
    grow(chain, [1, 2])
    guilty = KEYS[2]
    first = vote(guilty, chain, (0, 0), (2, 2), tag=1), vote(guilty, chain, (0, 0), (2, 2), tag=2)
    chain.add_block(propose(chain, 3, txs=[_report(chain, votes=first)]), now=at(3))
    assert validator_set(chain.view()).member(guilty.public_key) is None
    everyone = tuple(sorted((Validator(k.public_key, 1) for k in KEYS), key=lambda v: v.key))
    back = _change(chain, everyone, [k for k in KEYS if k is not guilty], seq=2)
    chain.add_block(propose(chain, 20, txs=[back]), now=at(20))
    carry(chain, [21, 22], [k for k in KEYS if k is not guilty])
    assert (chain.height, member_since(chain.view(), guilty.public_key)) == (6, 23)

    old = vote(guilty, chain, (0, 0), (10, 3), tag=3), vote(guilty, chain, (0, 0), (10, 3), tag=4)
    assert fault_rule(chain, *old, 23) == "FaultBeforeMembership"
    pre = snapshot(chain)
    empty = propose(chain, 23)
    carrying = reseal(chain, msgspec.structs.replace(empty, txs=(*empty.txs, _report(chain, votes=old))))
    with pytest.raises(InvalidBlock) as err:
        chain.add_block(carrying, now=at(23))
    assert err.value.rule == "FaultBeforeMembership"
    record_rejection(
        "poa_fault_before_membership_by_slot",
        "permissioned chain: the proof of a double vote for a slot before the validator set voted "
        "the validator back in, though for a height above the block that did (faults count by "
        "slot, from the slot after the one of the block that let the key back in)",
        pre,
        carrying,
        at(23),
        err.value,
    )

    seals = _double_seal(chain, guilty, slot=19)
    assert type(rejection(chain, _report(chain, headers=seals), at(23))).__name__ == "FaultBeforeMembership"

    since = vote(guilty, chain, (0, 0), (2, 25), tag=5), vote(guilty, chain, (0, 0), (2, 25), tag=6)
    chain.add_block(propose(chain, 23, txs=[_report(chain, votes=since)]), now=at(23))
    assert validator_set(chain.view()).member(guilty.public_key) is None


def test_two_blocks_sealed_for_a_slot_since_a_key_joined_again_remove_it(chain: Chain) -> None:
    grow(chain, [1, 2])
    guilty = KEYS[2]
    first = vote(guilty, chain, (0, 0), (2, 2), tag=1), vote(guilty, chain, (0, 0), (2, 2), tag=2)
    chain.add_block(propose(chain, 3, txs=[_report(chain, votes=first)]), now=at(3))
    everyone = tuple(sorted((Validator(k.public_key, 1) for k in KEYS), key=lambda v: v.key))
    back = _change(chain, everyone, [k for k in KEYS if k is not guilty], seq=2)
    chain.add_block(propose(chain, 20, txs=[back]), now=at(20))
    carry(chain, [21, 22], [k for k in KEYS if k is not guilty])  # (a member from slot 23)
    seals = _double_seal(chain, guilty, slot=23)
    chain.add_block(propose(chain, 24, txs=[_report(chain, headers=seals)]), now=at(24))
    assert validator_set(chain.view()).member(guilty.public_key) is None


def _double_seal(chain: Chain, key: PrivateKey, slot: int) -> tuple[Header, Header]:
    """Two different headers ``key`` sealed for ``slot``."""
    header = replace(chain.head.header, timestamp=at(slot))
    return (
        seal_header(key, chain.chain_id, header),
        seal_header(key, chain.chain_id, replace(header, state_root=bytes(32))),
    )


def test_a_vote_for_a_slot_before_its_keys_membership_does_not_count(tmp_path: Path) -> None:
    """A key a ChangeValidators added is a member from the slot after the block that starts
    the hand-over, and a fault weighs from the slot after a vote's target: a vote of it for an
    earlier target counted, yet its double vote for that target was FaultBeforeMembership.
    With the hand-over ended by finalizing a block from before it began, the new set counted
    alone over targets no fault of its new keys could be proven for: a red team finalized two
    conflicting blocks on two branches and every report was refused. Such a vote does not
    count: VoteBeforeMembership."""
    chain = new_chain(tmp_path / "poa", poa_params())
    old, cid = KEYS, chain.chain_id
    chain.add_block(propose(chain, 1, txs=[_change(chain, _set([*KEYS[:3], NEWCOMER]), KEYS[:3])]), now=at(1))
    for s in (2, 3, 4):  # (the votes withheld, then late)
        chain.add_block(propose(chain, s), now=at(s))
    g = chain.justified()
    b1, b2, b3, b4 = (checkpoint(chain, h) for h in (1, 2, 3, 4))
    votes = [sign_vote(k, cid, Vote(g, b1)) for k in old] + [sign_vote(k, cid, Vote(b1, b2)) for k in old]
    chain.add_block(propose(chain, 5, votes), now=at(5))  # the change's block final: the hand-over
    assert member_since(chain.view(), NEWCOMER.public_key) == 6
    ended = [sign_vote(k, cid, Vote(b2, b3)) for k in old]  # (the newcomer's for slot 3: not counted)
    chain.add_block(propose(chain, 6, ended), now=at(6))
    assert finality(chain.view()).finalized.slot == 2  # the hand-over ended on a block before it began
    early = sign_vote(NEWCOMER, cid, Vote(b3, b4))  # target of slot 4, before its membership (6)
    assert _vote_rule(chain, [early], 7) == "VoteBeforeMembership"
    counted = [sign_vote(k, cid, Vote(b3, b4)) for k in KEYS[:3]]  # the members from the genesis
    chain.add_block(propose(chain, 7, counted), now=at(7))
    assert finality(chain.view()).justified.slot == 4
    b6 = checkpoint(chain, 6)  # (of slot 6: the newcomer's first; its fault would be provable)
    chain.add_block(propose(chain, 8, [sign_vote(NEWCOMER, cid, Vote(b4, b6))]), now=at(8))
    assert chain.height == 8


def test_a_rotation_split_across_two_branches_finalizes_no_conflicting_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The red team's split: {A,B,C,D} -> {D,E,F,G}; the outgoing set signs the same links on
    two branches that fork after the change's block and its two successors; on each, the
    hand-over ends, then the new keys (D with E and F on one, E, F and G on the other) vote for
    targets before their membership. Those votes counted, and both branches finalized
    conflicting blocks while every report of E's and F's surround votes was
    FaultBeforeMembership. They do not count now: what is final on one branch is on the other."""
    e, f, g = NEWCOMER, PrivateKey.from_label("validator-new-2"), PrivateKey.from_label("validator-new-3")
    for k in (f, g):
        monkeypatch.setitem(BY_KEY, k.public_key, k)
    a, b, c, d = KEYS
    x, y = new_chain(tmp_path / "x", poa_params()), new_chain(tmp_path / "y", poa_params())
    cid = x.chain_id
    for chain in (x, y):
        chain.add_block(propose(chain, 1, txs=[_change(chain, _set([d, e, f, g]), [a, b, c])]), now=at(1))
        for s in (2, 3):
            chain.add_block(propose(chain, s), now=at(s))
    g0 = x.justified()
    b1, b2, b3 = (checkpoint(x, h) for h in (1, 2, 3))
    outgoing = [sign_vote(k, cid, Vote(g0, b1)) for k in KEYS] + [
        sign_vote(k, cid, Vote(b1, b2)) for k in KEYS
    ]
    hand_end = [sign_vote(k, cid, Vote(b2, b3)) for k in [*KEYS, e, f, g]]
    for s in (4, 5):
        x.add_block(propose(x, s), now=at(s))
    x4, x5 = checkpoint(x, 4), checkpoint(x, 5)
    x.add_block(propose(x, 6, outgoing), now=at(6))
    x.add_block(propose(x, 7, hand_end), now=at(7))
    x.add_block(propose(x, 8, [sign_vote(k, cid, Vote(b3, x4)) for k in (d, e, f)]), now=at(8))
    x.add_block(propose(x, 9, [sign_vote(k, cid, Vote(x4, x5)) for k in (d, e, f)]), now=at(9))
    y.add_block(propose(y, 10, outgoing), now=at(10))
    y4 = checkpoint(y, 4)
    y.add_block(propose(y, 11, hand_end), now=at(11))
    y5 = checkpoint(y, 5)
    y.add_block(propose(y, 12, [sign_vote(k, cid, Vote(b3, y4)) for k in (e, f, g)]), now=at(12))
    y.add_block(propose(y, 13, [sign_vote(k, cid, Vote(y4, y5)) for k in (e, f, g)]), now=at(13))
    fx, fy = finality(x.view()).finalized, finality(y.view()).finalized
    assert y.main[fx.height].hash == fx.hash and x.main[fy.height].hash == fy.hash
