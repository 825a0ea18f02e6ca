"""The permissioned chain's rules (``ledger/poa.py``, ``ledger/txs/validators.py``): each
broken on purpose, each rejection named; finality, fork choice and the validator set."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
import pytest
from msgspec.structs import replace

from gridnet.crypto.hashing import vote_id
from gridnet.crypto.keys import Domain, PrivateKey
from gridnet.encoding import DEFAULT_MAX_BYTES, encode
from gridnet.errors import (
    BadJustification,
    BadSeal,
    BlockVoteInvalid,
    ConfigError,
    ConflictsWithFinal,
    InvalidBlock,
    NotAValidator,
    OffSlot,
    WrongProposer,
)
from gridnet.ledger.blocks import Block, Checkpoint, SignedVote, Vote
from gridnet.ledger.chain import AddStatus, Chain
from gridnet.ledger.merkle import merkle_root
from gridnet.ledger.miner import propose_block
from gridnet.ledger.params import (
    CONSENSUS_POA,
    MAX_VALIDATORS,
    ChainParams,
    Validator,
    params_from_dict,
    params_to_toml,
)
from gridnet.ledger.poa import (
    MEMBERSHIPS,
    TALLIES,
    VOTE_WINDOW,
    Finality,
    HandOver,
    PendingChange,
    Tally,
    ValidatorSet,
    conflicting_votes,
    finality,
    hand_over,
    height_key,
    is_voter,
    member_since,
    pending_change,
    proposer_of,
    seal_header,
    seal_message,
    sign_vote,
    slot_of,
    validator_set,
)
from gridnet.ledger.transactions import Transaction, tx_id
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.validators import ChangeValidators, ReportValidatorFault, approve
from gridnet.ledger.verify import verify_chain
from tests.helpers import GENESIS_TIME, INTERVAL, new_chain, next_block, rejection, remine, sign, test_params
from tests.ledger.vectors import record_rejection, record_valid, snapshot

KEYS = [PrivateKey.from_label(f"validator-{i}") for i in range(4)]
BY_KEY = {k.public_key: k for k in KEYS}
USER = PrivateKey.from_label("poa-user")


def poa_params(keys: Sequence[PrivateKey] = KEYS, votes: Sequence[int] | None = None) -> ChainParams:
    weights = votes or [1] * len(keys)
    members = sorted(
        (Validator(k.public_key, w) for k, w in zip(keys, weights, strict=True)), key=lambda v: v.key
    )
    return test_params([*keys, USER], consensus=CONSENSUS_POA, validators=tuple(members))


def at(slot: int) -> int:
    return GENESIS_TIME + slot * INTERVAL


def proposer(chain: Chain, slot: int) -> PrivateKey:
    return BY_KEY[proposer_of(validator_set(chain.view()).members, slot).key]


def propose(
    chain: Chain, slot: int, votes: Sequence[SignedVote] = (), txs: Sequence[Transaction] = ()
) -> Block:
    vtxs = [validate_transaction(t, chain.params, chain.chain_id) for t in txs]
    block, template = propose_block(chain, proposer(chain, slot), slot, vtxs, votes, now=at(slot))
    assert not template.rejected, template.rejected
    return block


def checkpoint(chain: Chain, height: int) -> Checkpoint:
    """The main chain's block at ``height`` as a vote names it."""
    entry = chain.main[height]
    return Checkpoint(height, slot_of(chain.params, entry.header.timestamp), entry.hash)


def votes_for(chain: Chain, voters: Sequence[PrivateKey]) -> list[SignedVote]:
    """Votes from the head's justified checkpoint to the head."""
    source = chain.justified()
    assert source is not None
    target = checkpoint(chain, chain.height)
    return [sign_vote(k, chain.chain_id, Vote(source, target)) for k in voters]


def grow(chain: Chain, slots: Iterable[int], voters: Sequence[PrivateKey] = KEYS) -> list[SignedVote]:
    """A block per slot, each carrying ``voters``' votes for the head before it."""
    votes: list[SignedVote] = []
    for slot in slots:
        chain.add_block(propose(chain, slot, votes), now=at(slot))
        votes = votes_for(chain, voters)
    return votes


def reseal(chain: Chain, block: Block, key: PrivateKey | None = None, **changes: object) -> Block:
    header = msgspec.structs.replace(block.header, **changes)  # type: ignore[arg-type]
    ids = [tx_id(t) for t in block.txs] + [vote_id(encode(v)) for v in block.votes]
    header = msgspec.structs.replace(header, tx_root=merkle_root(ids))
    signer = key or BY_KEY[block.header.proposer]
    return msgspec.structs.replace(block, header=seal_header(signer, chain.chain_id, header))


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return new_chain(tmp_path / "poa", poa_params())


# --- finality ------------------------------------------------------------------------------


def test_more_than_two_thirds_of_votes_justify_and_a_child_link_finalizes(chain: Chain) -> None:
    grow(chain, range(1, 8))
    record = finality(chain.view())
    # Votes for block h ride in block h+1: justified lags one block, final two.
    assert (record.justified.height, record.finalized.height) == (6, 5)
    assert chain.head.header.justified == 6
    assert chain.finalized() == checkpoint(chain, 5)


def test_consensus_vectors_of_a_finalizing_block_and_a_wrong_proposer(chain: Chain) -> None:
    votes = grow(chain, range(1, 3))
    pre = snapshot(chain)
    block = propose(chain, 3, votes)
    other = next(k for k in KEYS if k is not proposer(chain, 3))
    wrong = reseal(chain, block, other)
    with pytest.raises(WrongProposer) as err:
        chain.add_block(wrong, now=at(3))
    record_rejection(
        "poa_sealed_by_another_validator",
        "permissioned chain: a block sealed by a validator whose slot it is not",
        pre,
        wrong,
        at(3),
        err.value,
    )
    chain.add_block(block, now=at(3))
    assert finality(chain.view()).finalized.height == 1
    record_valid(
        "poa_votes_justify_and_finalize",
        "permissioned chain: a sealed block carrying all four validators' votes for its parent, "
        "which justifies the parent and finalizes the grandparent",
        pre,
        block,
        at(3),
        chain,
    )


def test_two_of_four_votes_never_justify(chain: Chain) -> None:
    grow(chain, range(1, 8), voters=KEYS[:2])
    record = finality(chain.view())
    assert (record.justified.height, record.finalized.height) == (0, 0)


def test_a_stall_keeps_each_targets_votes_in_its_own_entry_and_justifying_drops_them(chain: Chain) -> None:
    """The votes counted while finality stalls are one entry per target slot, not one record:
    a record of every tally grew with each vote (and at the vote window's 1,024 slots of 170 of
    256 equal validators, 6 MB, past what a state entry holds, refused every vote after:
    finality never came back). Justifying a target deletes every tally."""
    grow(chain, range(1, 12), voters=KEYS[:2])
    view = chain.view()
    record = finality(view)
    assert not any(k.public_key in encode(record) for k in KEYS), "no voter in the record"
    assert record.tallied == tuple(range(1, 11))
    tally = view.get(TALLIES, height_key(10))
    assert tally is not None and tally.target == checkpoint(chain, 10)
    assert tally.voters == tuple(k.public_key for k in KEYS[:2])
    grow(chain, range(12, 14))
    view = chain.view()
    assert finality(view).justified.slot == 12 and finality(view).tallied == ()
    assert all(view.get(TALLIES, height_key(slot)) is None for slot in range(1, 14))


def test_a_vote_deletes_the_tallies_that_left_the_vote_window(chain: Chain) -> None:
    """Tallies of targets more than the vote window before the block that counts a vote can
    never grow again: that vote deletes their entries and their slots from the record (slots
    1 to 5 here, 1,030 − 1,024 = 6 the first kept), and record and table agree."""
    votes = grow(chain, range(1, 11), voters=KEYS[:2])
    assert finality(chain.view()).tallied == tuple(range(1, 10))
    pre = snapshot(chain)
    block = propose(chain, 1030, votes)  # two votes for slot 10's block
    chain.add_block(block, now=at(1030))
    view = chain.view()
    assert 1030 - VOTE_WINDOW == 6 and finality(view).tallied == (6, 7, 8, 9, 10)
    assert [s for s in range(1, 11) if view.get(TALLIES, height_key(s)) is not None] == [6, 7, 8, 9, 10]
    record_valid(
        "poa_tallies_outside_the_vote_window_deleted",
        "permissioned chain: finality stalled with two of four validators voting for the blocks of "
        "slots 1 to 10; a block of slot 1,030 counts two votes for slot 10 and deletes the tallies "
        "of slots 1 to 5, which left the 1,024-slot vote window",
        pre,
        block,
        at(1030),
        chain,
    )


def test_the_largest_entries_finality_writes_fit_a_state_entry() -> None:
    """Whatever the stall, the finality record lists at most the vote window's slots, and a
    tally at most every validator: each well within what a state entry holds."""
    target = Checkpoint(2**62, 2**62, bytes(32))
    record = Finality(target, target, tuple(range(2**62, 2**62 + VOTE_WINDOW)))
    tally = Tally(target, tuple(i.to_bytes(32, "big") for i in range(MAX_VALIDATORS)))
    for entry in (record, tally):
        assert len(encode(entry)) * 100 < DEFAULT_MAX_BYTES, type(entry).__name__


def test_votes_weigh_by_the_genesis_weights(tmp_path: Path) -> None:
    heavy = new_chain(tmp_path / "w", poa_params(votes=[5, 1, 1, 1]))
    # The key holding 5 of 8 votes plus one more hold 6 of 8 > 2/3.
    big = next(k for k in KEYS if validator_set(heavy.view()).member(k.public_key).votes == 5)  # type: ignore[union-attr]
    other = next(k for k in KEYS if k is not big)
    grow(heavy, range(1, 6), voters=[big, other])
    assert finality(heavy.view()).finalized.height == 3


def test_the_audit_replays_the_finality_proofs(chain: Chain, tmp_path: Path) -> None:
    grow(chain, range(1, 8))
    chain.close()
    report = verify_chain(tmp_path / "poa")
    assert report.ok, report.message
    assert report.height == 7


# --- header rules --------------------------------------------------------------------------


def test_a_block_off_its_slot_start_is_offslot(chain: Chain) -> None:
    block = propose(chain, 1)
    bad = reseal(chain, block, timestamp=at(1) + 1)
    with pytest.raises(OffSlot):
        chain.add_block(bad, now=at(2))


def test_a_block_in_its_parents_slot_is_offslot(chain: Chain) -> None:
    chain.add_block(propose(chain, 2), now=at(2))
    block = propose(chain, 3)
    bad = reseal(chain, block, proposer(chain, 2), timestamp=at(2))
    with pytest.raises(OffSlot):
        chain.add_block(bad, now=at(3))


def test_a_tampered_seal_is_badseal(chain: Chain) -> None:
    block = propose(chain, 1)
    sig = bytearray(block.header.seal)
    sig[0] ^= 1
    bad = msgspec.structs.replace(block, header=msgspec.structs.replace(block.header, seal=bytes(sig)))
    with pytest.raises(BadSeal):
        chain.add_block(bad, now=at(1))


def test_a_coinbase_to_another_address_is_badseal(chain: Chain) -> None:
    block = propose(chain, 1)
    header = msgspec.structs.replace(block.header, miner=USER.address, seal=b"")
    seal = proposer(chain, 1).sign(Domain.BLOCK, seal_message(chain.chain_id, header))
    bad = msgspec.structs.replace(block, header=msgspec.structs.replace(header, seal=seal))
    with pytest.raises(BadSeal):
        chain.add_block(bad, now=at(1))


def test_a_sealed_block_with_proof_of_work_fields_is_badseal(chain: Chain) -> None:
    block = propose(chain, 1)
    with pytest.raises(BadSeal):
        chain.add_block(reseal(chain, block, nonce=7), now=at(1))


def test_a_header_below_its_parents_justification_is_badjustification(chain: Chain) -> None:
    grow(chain, range(1, 5))
    assert chain.head.header.justified >= 2
    block = propose(chain, 5)
    with pytest.raises(BadJustification):
        chain.add_block(reseal(chain, block, justified=chain.head.header.justified - 1), now=at(5))


def test_a_block_of_a_slot_far_ahead_is_timestamptoofarinfuture(chain: Chain) -> None:
    far = 1 + chain.params.max_future_ms // INTERVAL + 10
    block = propose(chain, far)
    with pytest.raises(InvalidBlock) as err:
        chain.add_block(block, now=at(1))
    assert err.value.rule == "TimestampTooFarInFuture"


def test_a_block_more_than_half_a_slot_early_is_timestamptoofarinfuture_until_its_time(
    chain: Chain,
) -> None:
    """A validator whose clock runs ahead cannot seal the next slots and take them: its block
    is refused until its slot is at most half a slot away, and not marked invalid for good."""
    block = propose(chain, 2)
    early = at(2) - INTERVAL // 2
    with pytest.raises(InvalidBlock) as err:
        chain.add_block(block, now=early - 1)
    assert err.value.rule == "TimestampTooFarInFuture"
    assert chain.add_block(block, now=early).status is AddStatus.EXTENDED


def test_a_report_with_one_item_is_malformed(chain: Chain) -> None:
    h = bytes(32)
    a = sign_vote(KEYS[1], chain.chain_id, Vote(Checkpoint(1, 1, h), Checkpoint(2, 2, h)))
    with pytest.raises(Exception) as err:
        validate_transaction(_report(chain, votes=(a,)), chain.params, chain.chain_id)
    assert type(err.value).__name__ == "MalformedTransaction"


def test_a_block_with_more_than_1024_votes_is_blocktoolarge(chain: Chain) -> None:
    votes = grow(chain, range(1, 3))
    block = propose(chain, 3, votes)
    crowded = reseal(chain, msgspec.structs.replace(block, votes=tuple(votes[i % 4] for i in range(1_025))))
    assert len(encode(crowded)) < chain.params.max_block_bytes
    with pytest.raises(InvalidBlock) as err:
        chain.add_block(crowded, now=at(3))
    assert err.value.rule == "BlockTooLarge" and "1025 votes" in str(err.value)


def test_more_than_256_approvals_are_malformed(chain: Chain) -> None:
    members = tuple(sorted((Validator(k.public_key, 1) for k in KEYS), key=lambda v: v.key))
    approvals = tuple(approve(KEYS[0], chain.chain_id, 1, members) for _ in range(257))
    tx = sign(chain, USER, ChangeValidators(1, members, approvals), chain.account(USER.address).nonce)
    with pytest.raises(Exception) as err:
        validate_transaction(tx, chain.params, chain.chain_id)
    assert type(err.value).__name__ == "MalformedTransaction"


def test_a_block_sealed_by_a_validator_out_of_turn_is_wrongproposer(chain: Chain) -> None:
    block = propose(chain, 1)
    other = next(k for k in KEYS if k is not proposer(chain, 1))
    with pytest.raises(WrongProposer):
        chain.add_block(reseal(chain, block, other), now=at(1))


def test_a_header_claiming_more_justification_than_its_votes_is_badjustification(chain: Chain) -> None:
    grow(chain, range(1, 4))
    block = propose(chain, 4)
    bad = reseal(chain, block, justified=block.header.justified + 1)
    with pytest.raises(BadJustification):
        chain.add_block(bad, now=at(4))


def test_a_proof_of_work_block_with_a_seal_or_votes_is_badseal(tmp_path: Path) -> None:
    pow_chain = new_chain(tmp_path / "pow", test_params([USER]))
    block = next_block(pow_chain)
    with pytest.raises(BadSeal):
        pow_chain.add_block(
            remine(block, seal=bytes(64), proposer=USER.public_key), now=block.header.timestamp
        )
    vote = sign_vote(USER, pow_chain.chain_id, Vote(Checkpoint(0, 0, bytes(32)), Checkpoint(1, 1, bytes(32))))
    ids = [tx_id(t) for t in block.txs] + [vote_id(encode(vote))]
    with_vote = msgspec.structs.replace(block, votes=(vote,))
    with pytest.raises(BadSeal):
        pow_chain.add_block(remine(with_vote, tx_root=merkle_root(ids)), now=block.header.timestamp)


# --- votes ---------------------------------------------------------------------------------


def _vote_rule(chain: Chain, votes: list[SignedVote], slot: int) -> str:
    honest = propose(chain, slot)
    bad = reseal(chain, msgspec.structs.replace(honest, votes=tuple(votes)))
    with pytest.raises(InvalidBlock) as err:
        chain.add_block(bad, now=at(slot))
    return err.value.rule


def test_a_block_with_an_invalid_vote_is_blockvoteinvalid_naming_the_vote(chain: Chain) -> None:
    """The block's first vote is a validator's, its second a stranger's: the block is refused
    as BlockVoteInvalid, which names the vote (from 1) and wraps the vote's own rule."""
    grow(chain, range(1, 3))
    votes = (*votes_for(chain, KEYS[:1]), *votes_for(chain, [USER]))
    bad = reseal(chain, msgspec.structs.replace(propose(chain, 3), votes=votes))
    head = chain.head.hash
    with pytest.raises(BlockVoteInvalid) as info:
        chain.add_block(bad, now=at(3))
    assert info.value.index == 2 and type(info.value.error) is NotAValidator
    assert str(info.value).startswith("vote 2: ") and info.value.rule == "NotAValidator"
    assert chain.head.hash == head


def test_a_vote_by_a_key_outside_the_set_is_notavalidator(chain: Chain) -> None:
    grow(chain, range(1, 3))
    assert _vote_rule(chain, votes_for(chain, [USER]), 3) == "NotAValidator"


def test_a_forged_vote_is_badvotesignature(chain: Chain) -> None:
    grow(chain, range(1, 3))
    vote = votes_for(chain, KEYS[:1])[0]
    forged = msgspec.structs.replace(vote, key=KEYS[1].public_key)
    assert _vote_rule(chain, [forged], 3) == "BadVoteSignature"


def test_a_vote_from_an_old_checkpoint_is_stalevotesource(chain: Chain) -> None:
    grow(chain, range(1, 5))
    assert finality(chain.view()).justified.height == 3
    old = checkpoint(chain, 2)
    vote = sign_vote(KEYS[0], chain.chain_id, Vote(old, checkpoint(chain, 4)))
    assert _vote_rule(chain, [vote], 5) == "StaleVoteSource"


def test_a_vote_for_a_block_off_the_branch_is_wrongvotetarget(chain: Chain) -> None:
    grow(chain, range(1, 3))
    source = chain.justified()
    assert source is not None
    vote = sign_vote(KEYS[0], chain.chain_id, Vote(source, Checkpoint(2, 2, bytes(32))))
    assert _vote_rule(chain, [vote], 3) == "WrongVoteTarget"


# --- fork choice and finality --------------------------------------------------------------


def test_fork_choice_prefers_the_higher_justified_branch_over_the_longer(tmp_path: Path) -> None:
    params = poa_params()
    a = new_chain(tmp_path / "a", params)
    b = new_chain(tmp_path / "b", params)
    for c in (a, b):
        grow(c, range(1, 3))  # both: heads at 2, justified 1
    # Branch A: one more block with votes (justified rises to 2). Branch B: three blocks, no votes.
    votes = votes_for(a, KEYS)
    a.add_block(propose(a, 3, votes), now=at(3))
    assert a.head.header.justified == 2
    for slot in (4, 5, 6):
        b.add_block(propose(b, slot), now=at(slot))
    assert b.height == 5 and b.head.header.justified == 1
    for block in (b.block_at(h) for h in range(3, 6)):
        assert block is not None
        a.add_block(block, now=at(6))
    assert a.height == 3, "the longer branch justified lower does not win"


def test_no_branch_below_the_final_block_is_taken(tmp_path: Path) -> None:
    params = poa_params()
    a = new_chain(tmp_path / "a", params)
    b = new_chain(tmp_path / "b", params)
    for c in (a, b):
        grow(c, range(1, 3))
    grow(a, range(3, 8))
    final = a.finalized()
    assert final is not None and final.height >= 3
    b.add_block(propose(b, 9), now=at(9))  # b's branch leaves a's at height 2
    block = b.block_at(3)
    assert block is not None
    with pytest.raises(ConflictsWithFinal):
        a.add_block(block, now=at(9))


# --- validator set -------------------------------------------------------------------------


def _change(
    chain: Chain, members: tuple[Validator, ...], approvers: Sequence[PrivateKey], seq: int = 1
) -> Transaction:
    approvals = tuple(approve(k, chain.chain_id, seq, members) for k in approvers)
    return sign(chain, USER, ChangeValidators(seq, members, approvals), chain.account(USER.address).nonce)


def _set(keys: Iterable[PrivateKey]) -> tuple[Validator, ...]:
    return tuple(sorted((Validator(k.public_key, 1) for k in keys), key=lambda v: v.key))


NEWCOMER = PrivateKey.from_label("validator-new")
BY_KEY[NEWCOMER.public_key] = NEWCOMER


def carry(chain: Chain, slots: Iterable[int], voters: Sequence[PrivateKey]) -> None:
    """A block per slot, each carrying ``voters``' votes for its parent."""
    for slot in slots:
        chain.add_block(propose(chain, slot, votes_for(chain, voters)), now=at(slot))


def test_a_change_is_pending_until_final_then_handed_over_then_the_new_set_finalizes(chain: Chain) -> None:
    """A ChangeValidators approved by more than two thirds waits on its branch until its block
    is final under the set in force; then the new set is in force (it proposes, and its
    members vote) while justification still needs more than two thirds of the outgoing set
    too; the next final block ends the hand-over, and the new set finalizes alone."""
    old, new = KEYS, [*KEYS[:3], NEWCOMER]
    chain.add_block(propose(chain, 1, txs=[_change(chain, _set(new), KEYS[:3])]), now=at(1))
    assert validator_set(chain.view()) == ValidatorSet(0, _set(old)), "pending: the set in force stays"
    assert pending_change(chain.view()) == PendingChange(_set(new), 1)
    assert _vote_rule(chain, votes_for(chain, [NEWCOMER]), 2) == "NotAValidator", (
        "a pending set does not vote"
    )
    carry(chain, [2], old)  # justifies block 1 (the change's)
    assert pending_change(chain.view()) is not None
    pre = snapshot(chain)
    block = propose(chain, 3, votes_for(chain, old))
    chain.add_block(block, now=at(3))
    assert finality(chain.view()).finalized.height == 1, "the change's block is final under the old set"
    assert validator_set(chain.view()) == ValidatorSet(1, _set(new))
    assert hand_over(chain.view()) == HandOver(ValidatorSet(0, _set(old)), 1)
    assert pending_change(chain.view()) is None
    assert member_since(chain.view(), NEWCOMER.public_key) == 4, "a member from the next slot"
    record_valid(
        "poa_change_handed_over_once_its_block_is_final",
        "permissioned chain: the block whose votes finalize the block of a pending ChangeValidators "
        "puts the new set in force, the outgoing set still needed for justification (hand-over)",
        pre,
        block,
        at(3),
        chain,
    )
    # During the hand-over the new set alone justifies nothing: 3 of 4 new, 2 of 4 outgoing.
    alone = [KEYS[0], KEYS[1], NEWCOMER]
    chain.add_block(propose(chain, 4, votes_for(chain, alone)), now=at(4))
    assert finality(chain.view()).justified.slot == 2
    assert hand_over(chain.view()) is not None
    # Both sets vote (the outgoing member KEYS[3] too): block 4 justified, then 5 final ends it.
    carry(chain, [5, 6], [*KEYS, NEWCOMER])
    record = finality(chain.view())
    assert (record.justified.slot, record.finalized.slot) == (5, 4)
    assert hand_over(chain.view()) is None, "a block above the one final at its start is final"
    assert chain.view().get(MEMBERSHIPS, KEYS[3].public_key) is None
    assert _vote_rule(chain, votes_for(chain, [KEYS[3]]), 7) == "NotAValidator", "the outgoing key left"
    carry(chain, [7, 8, 9], new)
    assert finality(chain.view()).finalized.slot == 7, "the new set finalizes alone"


def test_a_second_change_while_one_is_pending_or_handed_over_is_validatorchangepending(chain: Chain) -> None:
    """One change at a time: a second ChangeValidators (even the same one again) is refused
    until the first is handed over; then the set's next ``seq`` is taken, and the first
    change's approvals are stale."""
    first = _change(chain, _set(KEYS[:3]), KEYS[:3])
    chain.add_block(propose(chain, 1, txs=[first]), now=at(1))
    second = _change(chain, _set([*KEYS[:3], NEWCOMER]), KEYS)
    assert type(rejection(chain, second, at(2))).__name__ == "ValidatorChangePending"
    same = _change(chain, _set(KEYS[:3]), KEYS[:3])
    assert type(rejection(chain, same, at(2))).__name__ == "ValidatorChangePending"
    carry(chain, [2, 3], KEYS)
    assert hand_over(chain.view()) is not None
    assert type(rejection(chain, second, at(4))).__name__ == "ValidatorChangePending"
    carry(chain, [4, 5], KEYS[:3])
    assert hand_over(chain.view()) is None and validator_set(chain.view()) == ValidatorSet(1, _set(KEYS[:3]))
    assert type(rejection(chain, second, at(6))).__name__ == "StaleValidatorSet", "seq 1 was taken"
    again = _change(chain, _set([*KEYS[:3], NEWCOMER]), KEYS[:3], seq=2)
    chain.add_block(propose(chain, 6, txs=[again]), now=at(6))
    assert pending_change(chain.view()) is not None


def test_a_fault_while_a_change_is_pending_removes_the_key_from_both_sets(chain: Chain) -> None:
    """A proven fault takes the key out of the set in force and out of the pending change's
    set (the approval was signed before the fault); a key only in the pending set is not yet a
    member and cannot be reported; the change then hands over without the faulty key."""
    rotated = [KEYS[3], NEWCOMER]
    chain.add_block(propose(chain, 1, txs=[_change(chain, _set(rotated), KEYS[:3])]), now=at(1))
    source = Checkpoint(0, 0, chain.chain_id)
    h = bytes(32)
    guilty = KEYS[3]
    a = sign_vote(guilty, chain.chain_id, Vote(source, Checkpoint(1, 1, chain.head.hash)))
    b = sign_vote(guilty, chain.chain_id, Vote(source, Checkpoint(1, 1, h)))
    c = sign_vote(NEWCOMER, chain.chain_id, Vote(source, Checkpoint(1, 1, chain.head.hash)))
    d = sign_vote(NEWCOMER, chain.chain_id, Vote(source, Checkpoint(1, 1, h)))
    assert type(rejection(chain, _report(chain, votes=(c, d)), at(2))).__name__ == "NotInValidatorSet"
    chain.add_block(propose(chain, 2, txs=[_report(chain, votes=(a, b))]), now=at(2))
    assert validator_set(chain.view()) == ValidatorSet(1, _set(KEYS[:3]))
    assert pending_change(chain.view()) == PendingChange(_set([NEWCOMER]), 1)
    carry(chain, [3, 4], KEYS[:3])
    assert validator_set(chain.view()) == ValidatorSet(2, _set([NEWCOMER]))
    assert hand_over(chain.view()) == HandOver(ValidatorSet(1, _set(KEYS[:3])), 2)
    # the last key of the pending (now the new) set: never removed
    e = sign_vote(NEWCOMER, chain.chain_id, Vote(source, Checkpoint(9, 9, h)))
    f = sign_vote(NEWCOMER, chain.chain_id, Vote(source, Checkpoint(9, 9, b"\1" * 32)))
    assert type(rejection(chain, _report(chain, votes=(e, f)), at(5))).__name__ == "LastValidator"
    carry(chain, [5, 6], [*KEYS[:3], NEWCOMER])
    assert hand_over(chain.view()) is None
    assert {m.key for m in validator_set(chain.view()).members} == {NEWCOMER.public_key}


def test_a_fault_by_the_only_key_of_a_pending_change_drops_the_change(chain: Chain) -> None:
    """A report was LastValidator when the key was the whole of a pending change's set, so
    that key's fault went unpunished while the change waited, and it kept its votes in the set
    in force. Now the key leaves the set in force and the change, its set empty, is dropped."""
    alone = KEYS[0]
    chain.add_block(propose(chain, 1, txs=[_change(chain, _set([alone]), KEYS[:3])]), now=at(1))
    source = Checkpoint(0, 0, chain.chain_id)
    a = sign_vote(alone, chain.chain_id, Vote(source, Checkpoint(1, 1, chain.head.hash)))
    b = sign_vote(alone, chain.chain_id, Vote(source, Checkpoint(1, 1, bytes(32))))
    chain.add_block(propose(chain, 2, txs=[_report(chain, votes=(a, b))]), now=at(2))
    assert validator_set(chain.view()).member(alone.public_key) is None
    assert pending_change(chain.view()) is None


def test_a_fault_during_a_hand_over_removes_an_outgoing_key(chain: Chain) -> None:
    """An outgoing member still votes during the hand-over, and a fault it commits removes it
    from the outgoing set: justification then needs more than two thirds of the others."""
    chain.add_block(propose(chain, 1, txs=[_change(chain, _set([*KEYS[:3], NEWCOMER]), KEYS[:3])]), now=at(1))
    carry(chain, [2, 3], KEYS)
    assert hand_over(chain.view()) is not None
    source = chain.justified()
    assert source is not None
    guilty = KEYS[3]
    a = sign_vote(guilty, chain.chain_id, Vote(source, checkpoint(chain, chain.height)))
    b = sign_vote(
        guilty, chain.chain_id, Vote(source, replace(checkpoint(chain, chain.height), hash=bytes(32)))
    )
    chain.add_block(propose(chain, 4, txs=[_report(chain, votes=(a, b))]), now=at(4))
    over = hand_over(chain.view())
    assert over is not None and over.outgoing == ValidatorSet(0, _set(KEYS[:3]))
    assert validator_set(chain.view()).seq == 2
    carry(chain, [5, 6, 7], [*KEYS[:3], NEWCOMER])
    assert hand_over(chain.view()) is None and finality(chain.view()).finalized.slot == 5


def test_a_change_seen_by_one_side_of_a_partition_finalizes_nothing_there(tmp_path: Path) -> None:
    """The red team's rotation under a partition: {A, B, C, D} approve {D, E, F, G}; the change
    reaches only D's side, where D includes it. Had it taken effect at once, D, E, F, G (4 of 4
    of the new set) would have finalized their branch while A, B, C (3 of 4) finalized theirs:
    two conflicting final blocks, no vote in conflict. Pending until final under the old set,
    it finalizes nothing on D's side (1 of 4 of the set in force); A, B, C's side finalizes, and
    after the heal both sides follow it."""
    rotated = [PrivateKey.from_label(f"rotated-{i}") for i in range(3)]
    every = {k.public_key: k for k in [*KEYS, *rotated]}
    x, y = new_chain(tmp_path / "x", poa_params()), new_chain(tmp_path / "y", poa_params())
    members = validator_set(x.view()).members
    d = every[members[3].key]
    abc = [every[m.key] for m in members[:3]]
    new_set = _set([d, *rotated])
    change = _change(y, new_set, abc)
    signed: list[SignedVote] = []

    def run(branch: Chain, side: list[PrivateKey], carry_change: bool) -> None:
        votes: list[SignedVote] = []
        for slot in range(1, 16):
            key = every[proposer_of(validator_set(branch.view()).members, slot).key]
            if key not in side:
                continue  # (its proposer is on the other side: an empty slot)
            txs = (
                [validate_transaction(change, branch.params, branch.chain_id)]
                if carry_change and key is d
                else []
            )
            block, template = propose_block(branch, key, slot, txs, votes, now=at(slot))
            assert not template.rejected, template.rejected
            carry_change = carry_change and not txs
            branch.add_block(block, now=at(slot))
            voters = [k for k in side if is_voter(branch.view(), k.public_key)]
            votes = votes_for(branch, voters)
            signed.extend(votes)

    run(x, abc, carry_change=False)
    run(y, [d, *rotated], carry_change=True)
    assert pending_change(y.view()) == PendingChange(new_set, 1), "included by D, never final on its side"
    fx, fy = x.finalized(), y.finalized()
    assert fx is not None and fy is not None
    assert fx.height > 0 and fy.height == 0, "only the side of more than two thirds of the set in force"
    assert not any(conflicting_votes(x.chain_id, v, w) for v in signed for w in signed)
    with pytest.raises(ConflictsWithFinal):  # (D's side leaves X's main chain below its final)
        x.add_block(y.get_block(y.main[1].hash), now=at(40))
    for block in (x.get_block(e.hash) for e in x.main[1:]):
        y.add_block(block, now=at(40))
    assert y.head.hash == x.head.hash and y.finalized() == x.finalized()


def test_two_of_four_approvals_are_insufficientapprovals(chain: Chain) -> None:
    members = tuple(sorted((Validator(k.public_key, 1) for k in KEYS[:3]), key=lambda v: v.key))
    assert (
        rejection(chain, _change(chain, members, KEYS[:2]), at(1)).__class__.__name__
        == "InsufficientApprovals"
    )


def test_a_replayed_change_is_stalevalidatorset(chain: Chain) -> None:
    members = tuple(sorted((Validator(k.public_key, 1) for k in KEYS[:3]), key=lambda v: v.key))
    tx = _change(chain, members, KEYS, seq=2)
    assert type(rejection(chain, tx, at(1))).__name__ == "StaleValidatorSet"


def test_an_unordered_set_is_badvalidatorset(chain: Chain) -> None:
    members = tuple(sorted((Validator(k.public_key, 1) for k in KEYS), key=lambda v: v.key, reverse=True))
    with pytest.raises(Exception) as err:
        validate_transaction(_change(chain, members, KEYS), chain.params, chain.chain_id)
    assert type(err.value).__name__ == "BadValidatorSet"


def test_validator_transactions_on_proof_of_work_are_notpermissioned(tmp_path: Path) -> None:
    pow_chain = new_chain(tmp_path / "pow", test_params([USER]))
    members = (Validator(KEYS[0].public_key, 1),)
    tx = sign(pow_chain, USER, ChangeValidators(1, members, ()), 0)
    assert type(rejection(pow_chain, tx, GENESIS_TIME + INTERVAL)).__name__ == "NotPermissioned"


# --- faults --------------------------------------------------------------------------------


def _report(chain: Chain, **proof: object) -> Transaction:
    payload = ReportValidatorFault(**proof)  # type: ignore[arg-type]
    return sign(chain, USER, payload, chain.account(USER.address).nonce)


def test_two_blocks_sealed_for_one_slot_remove_the_validator(chain: Chain) -> None:
    first = propose(chain, 1)
    second = reseal(chain, first, timestamp=first.header.timestamp, state_root=bytes(32))
    guilty = first.header.proposer
    chain.add_block(propose(chain, 2, txs=[_report(chain, headers=(first.header, second.header))]), now=at(2))
    assert validator_set(chain.view()).member(guilty) is None


def test_a_double_vote_removes_the_validator(chain: Chain) -> None:
    grow(chain, range(1, 3))
    source = chain.justified()
    assert source is not None
    a = sign_vote(KEYS[2], chain.chain_id, Vote(source, checkpoint(chain, 2)))
    b = sign_vote(KEYS[2], chain.chain_id, Vote(source, Checkpoint(2, 2, bytes(32))))
    chain.add_block(propose(chain, 3, txs=[_report(chain, votes=(a, b))]), now=at(3))
    assert validator_set(chain.view()).member(KEYS[2].public_key) is None
    again = _report(chain, votes=(a, b))
    assert type(rejection(chain, again, at(4))).__name__ == "NotInValidatorSet"


def test_an_old_proof_against_a_validator_approved_back_is_faultbeforemembership(chain: Chain) -> None:
    """A fault counts for what a key did as a member since it last joined: the set may vote a
    removed validator back, and the proof that removed it cannot remove it again."""
    grow(chain, range(1, 3))
    source = chain.justified()
    assert source is not None
    guilty = KEYS[2]
    a = sign_vote(guilty, chain.chain_id, Vote(source, checkpoint(chain, 2)))
    b = sign_vote(guilty, chain.chain_id, Vote(source, Checkpoint(2, 2, bytes(32))))
    chain.add_block(propose(chain, 3, txs=[_report(chain, votes=(a, b))]), now=at(3))
    assert validator_set(chain.view()).member(guilty.public_key) is None
    everyone = tuple(sorted((Validator(k.public_key, 1) for k in KEYS), key=lambda v: v.key))
    back = _change(chain, everyone, [k for k in KEYS if k is not guilty], seq=2)
    chain.add_block(propose(chain, 4, txs=[back]), now=at(4))
    assert validator_set(chain.view()).member(guilty.public_key) is None, "pending"
    carry(chain, [5, 6], [k for k in KEYS if k is not guilty])  # block 6 finalizes block 4
    assert validator_set(chain.view()).member(guilty.public_key) is not None
    assert member_since(chain.view(), guilty.public_key) == 7
    assert member_since(chain.view(), KEYS[0].public_key) == 0, "a member since the genesis"
    replayed = _report(chain, votes=(a, b))
    assert type(rejection(chain, replayed, at(7))).__name__ == "FaultBeforeMembership"
    pre = snapshot(chain)
    empty = propose(chain, 7)
    carrying = reseal(chain, msgspec.structs.replace(empty, txs=(*empty.txs, replayed)))
    with pytest.raises(InvalidBlock) as err:
        chain.add_block(carrying, now=at(7))
    assert err.value.rule == "FaultBeforeMembership"
    record_rejection(
        "poa_fault_before_membership",
        "permissioned chain: a block carrying the proof of a double vote a validator cast before the "
        "validator set voted it back in (its fault counts from its current membership)",
        pre,
        carrying,
        at(7),
        err.value,
    )
    # a double vote for the block that let it back in counts (block 7 would count it)
    source = chain.justified()
    assert source is not None
    c = sign_vote(guilty, chain.chain_id, Vote(source, checkpoint(chain, 6)))
    d = sign_vote(guilty, chain.chain_id, Vote(source, Checkpoint(6, 6, bytes(32))))
    chain.add_block(propose(chain, 7, txs=[_report(chain, votes=(c, d))]), now=at(7))
    assert validator_set(chain.view()).member(guilty.public_key) is None
    assert chain.view().get(MEMBERSHIPS, guilty.public_key) is None, "no entry for a key out of the set"


def test_votes_counted_before_a_fault_removes_a_validator_are_counted_again(tmp_path: Path) -> None:
    """Removing a faulty member changes the weights as a ChangeValidators does: the tallies are
    dropped, and the votes counted so far count again under the smaller set. (Kept, a tally
    the removal took above two thirds would never justify its target: every voter in it
    already counted, VoteAlreadyCounted.)"""
    chain = new_chain(tmp_path / "poa", poa_params(votes=[1, 1, 1, 2]))
    grow(chain, range(1, 4))
    heavy, honest = KEYS[3], KEYS[:3]
    target = checkpoint(chain, chain.height)
    votes = votes_for(chain, honest)
    chain.add_block(propose(chain, 4, votes), now=at(4))
    record = finality(chain.view())
    assert record.justified.height < target.height, "3 of 5 votes: not more than two thirds"
    assert record.tallied == (target.slot,)
    assert chain.view().get(TALLIES, height_key(target.slot)) == Tally(target, tuple(v.key for v in votes))
    source = chain.justified()
    assert source is not None
    a = sign_vote(heavy, chain.chain_id, Vote(source, target))
    b = sign_vote(heavy, chain.chain_id, Vote(source, replace(target, hash=bytes(32))))
    chain.add_block(propose(chain, 5, txs=[_report(chain, votes=(a, b))]), now=at(5))
    assert validator_set(chain.view()).total == 3, "3 of 3 left: the tally now holds them all"
    assert finality(chain.view()).tallied == () and chain.view().get(TALLIES, height_key(target.slot)) is None
    pre = snapshot(chain)
    block = propose(chain, 6, votes)
    assert block.votes == tuple(votes), "counted again"
    chain.add_block(block, now=at(6))
    assert finality(chain.view()).justified == target
    record_valid(
        "poa_votes_counted_again_after_a_fault_report",
        "permissioned chain: votes counted before a fault report removed a validator are counted "
        "again under the smaller set, and justify their target",
        pre,
        block,
        at(6),
        chain,
    )


def test_a_surround_vote_is_a_fault(chain: Chain) -> None:
    h = bytes(32)
    wide = sign_vote(KEYS[1], chain.chain_id, Vote(Checkpoint(1, 1, h), Checkpoint(9, 9, h)))
    inner = sign_vote(KEYS[1], chain.chain_id, Vote(Checkpoint(3, 3, h), Checkpoint(5, 5, h)))
    chain.add_block(propose(chain, 1, txs=[_report(chain, votes=(inner, wide))]), now=at(1))
    assert validator_set(chain.view()).member(KEYS[1].public_key) is None


def test_votes_that_do_not_conflict_are_validatorfaultnotproven(chain: Chain) -> None:
    h = bytes(32)
    a = sign_vote(KEYS[1], chain.chain_id, Vote(Checkpoint(1, 1, h), Checkpoint(2, 2, h)))
    b = sign_vote(KEYS[1], chain.chain_id, Vote(Checkpoint(2, 2, h), Checkpoint(3, 3, h)))
    assert type(rejection(chain, _report(chain, votes=(a, b)), at(1))).__name__ == "ValidatorFaultNotProven"
    c = sign_vote(KEYS[2], chain.chain_id, Vote(Checkpoint(1, 1, h), Checkpoint(2, 2, bytes(31) + b"\1")))
    assert type(rejection(chain, _report(chain, votes=(a, c)), at(1))).__name__ == "ValidatorFaultNotProven"


def test_the_last_validator_is_never_removed(tmp_path: Path) -> None:
    solo = new_chain(tmp_path / "solo", poa_params(KEYS[:1]))
    h = bytes(32)
    a = sign_vote(KEYS[0], solo.chain_id, Vote(Checkpoint(0, 0, h), Checkpoint(2, 2, h)))
    b = sign_vote(KEYS[0], solo.chain_id, Vote(Checkpoint(0, 0, h), Checkpoint(2, 2, b"\1" * 32)))
    assert type(rejection(solo, _report(solo, votes=(a, b)), at(1))).__name__ == "LastValidator"


# --- genesis -------------------------------------------------------------------------------


def test_the_genesis_file_names_the_consensus_and_its_validators() -> None:
    doc = {
        "consensus": {"kind": "poa"},
        "validator": [{"key": KEYS[0].public_key.hex(), "votes": 2}, {"key": KEYS[1].public_key.hex()}],
    }
    params = params_from_dict(doc)
    assert params.permissioned and sorted(v.votes for v in params.validators) == [1, 2]
    import tomllib

    assert params_from_dict(tomllib.loads(params_to_toml(params))) == params


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"consensus": {"kind": "poa"}}, "names 1 to"),
        ({"consensus": {"kind": "pos"}}, "is not one of pow, poa"),
        ({"validator": [{"key": KEYS[0].public_key.hex()}]}, "only for a permissioned chain"),
        ({"consensus": {"kind": "poa"}, "validator": [{"key": "zz"}]}, "32-byte public key"),
        (
            {"consensus": {"kind": "poa"}, "validator": [{"key": KEYS[0].public_key.hex(), "votes": 0}]},
            "votes must",
        ),
    ],
)
def test_a_bad_genesis_consensus_is_one_clear_line(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        params_from_dict(doc)


def test_a_chain_of_sealed_blocks_extends(chain: Chain) -> None:
    assert chain.add_block(propose(chain, 1), now=at(1)).status is AddStatus.EXTENDED
