"""The votes a node of a permissioned chain keeps (``node/finality.py``'s ``VotePool``): only
those that can count in a block it seals soon, per validator key, so that one member's votes
never push out another's; the rest is refused by name (``VoteRefused``), not a fault."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gridnet.crypto.hashing import header_hash, vote_id
from gridnet.crypto.keys import PrivateKey
from gridnet.crypto.ops import OPS
from gridnet.encoding import encode
from gridnet.ledger.blocks import Checkpoint, SignedVote, Vote
from gridnet.ledger.chain import Chain
from gridnet.ledger.poa import hand_over, proposer_of, sign_vote, slot_lead_ms, validator_set
from gridnet.ledger.txs.validators import ReportValidatorFault
from gridnet.node.finality import VOTES_POOLED_PER_KEY, VotePool
from gridnet.node.messages import BlockMsg, VoteMsg
from gridnet.node.node import Node, NodeConfig, Outgoing
from tests.helpers import new_chain
from tests.ledger.test_poa import (
    KEYS,
    NEWCOMER,
    _change,
    _set,
    at,
    carry,
    grow,
    poa_params,
    propose,
    votes_for,
)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    chain = new_chain(tmp_path / "poa", poa_params())
    grow(chain, range(1, 4))
    node = Node("n0", chain, NodeConfig())
    node.add_peer("p")
    node.add_peer("q")
    return node


def relayed(out: list[Outgoing]) -> list[SignedVote]:
    return [m.vote for p, m in out if p == "q" and isinstance(m, VoteMsg)]


def far_vote(chain: Chain, n: int) -> SignedVote:
    source = chain.justified()
    assert source is not None
    return sign_vote(KEYS[3], chain.chain_id, Vote(source, Checkpoint(10**9 + n, 10**9 + n, os.urandom(32))))


def test_a_flood_of_votes_far_above_the_head_is_votetargetahead_and_honest_votes_stay(node: Node) -> None:
    chain = node.chain
    honest = votes_for(chain, KEYS[:3])
    for vote in honest:
        assert relayed(node.handle("p", VoteMsg(vote), at(4))) == [vote]
    flood = 4_200
    relays = [relayed(node.handle("p", VoteMsg(far_vote(chain, n)), at(4))) for n in range(flood)]
    justified = chain.justified()
    assert justified is not None
    assert node.votes.candidates(justified.slot) == honest
    assert len(propose(chain, 4, node.votes.candidates(justified.slot)).votes) == 3
    assert relays == [[]] * flood
    assert node.stats.votes_refused["VoteTargetAhead"] == flood
    assert node.stats.peer_faults.get("p", 0) == 0, "a vote is no fault of the peer that relays it"


def test_a_vote_that_comes_before_its_block_is_held_aside_and_relayed_with_it(node: Node) -> None:
    chain = node.chain
    block = propose(chain, 4)
    source = chain.justified()
    assert source is not None
    target = Checkpoint(chain.height + 1, 4, header_hash(encode(block.header)))
    early = sign_vote(KEYS[0], chain.chain_id, Vote(source, target))
    assert node.handle("p", VoteMsg(early), at(4)) == []
    assert node.votes.holds(vote_id(encode(early)), early.key)
    assert early not in node.votes.candidates(source.slot)
    assert node.handle("q", VoteMsg(early), at(4)) == [], "held: not checked nor kept twice"
    out = node.handle("p", BlockMsg(block), at(4))
    assert early in relayed(out)
    assert early in node.votes.candidates(source.slot)


def test_a_vote_for_an_unknown_block_of_a_slot_not_yet_come_is_votetargetahead(node: Node) -> None:
    """A vote for a block this node has not seen is held aside while its slot starts at most
    the slot lead after the node's clock (its block would be taken): one for a later slot,
    whose block no honest validator sealed yet, is refused."""
    chain = node.chain
    source = chain.justified()
    assert source is not None
    now = at(4)
    lead = slot_lead_ms(chain.params)
    soon = sign_vote(KEYS[0], chain.chain_id, Vote(source, Checkpoint(chain.height + 1, 5, bytes(32))))
    assert node.handle("p", VoteMsg(soon), at(5) - lead) == []
    assert node.votes.holds(vote_id(encode(soon)), soon.key), "its slot starts within the slot lead"
    late = sign_vote(KEYS[1], chain.chain_id, Vote(source, Checkpoint(chain.height + 1, 5, bytes(32))))
    assert node.handle("p", VoteMsg(late), at(5) - lead - 1) == []
    assert node.stats.votes_refused["VoteTargetAhead"] == 1
    assert not node.votes.holds(vote_id(encode(late)), late.key)
    far = sign_vote(KEYS[2], chain.chain_id, Vote(source, Checkpoint(chain.height + 1, 6, bytes(32))))
    assert node.handle("p", VoteMsg(far), now) == []
    assert node.stats.votes_refused["VoteTargetAhead"] == 2


def test_a_late_vote_is_votetoolate_and_an_outsiders_notavalidator(node: Node) -> None:
    chain = node.chain
    justified = chain.justified()
    assert justified is not None and justified.height >= 1
    late = sign_vote(KEYS[0], chain.chain_id, Vote(Checkpoint(0, 0, chain.chain_id), justified))
    outsider = votes_for(chain, [PrivateKey.from_label("poa-outsider")])[0]
    checked = OPS.verifies
    assert node.handle("p", VoteMsg(late), at(4)) == []
    assert node.handle("p", VoteMsg(outsider), at(4)) == []
    assert node.stats.votes_refused == {"VoteTooLate": 1, "NotAValidator": 1}
    assert OPS.verifies == checked, "refused for its key or its target: no signature checked"
    from gridnet.node.api.ops import _NodeCollector  # (what GET /metrics serves)

    scraped = {
        s.labels["rule"]: s.value
        for family in _NodeCollector(node, None).collect()
        for s in family.samples
        if s.name == "gridnet_votes_refused_total"
    }
    assert scraped == {"VoteTooLate": 1, "NotAValidator": 1}


def test_a_members_vote_that_does_not_verify_is_the_peers_fault(node: Node) -> None:
    chain = node.chain
    vote = votes_for(chain, [KEYS[0]])[0]
    forged = SignedVote(vote.vote, vote.key, bytes(64))
    assert node.handle("p", VoteMsg(forged), at(4)) == []
    assert node.stats.peer_faults == {"p": 1} and node.stats.fault_rules["BadVoteSignature"] == 1
    assert not node.votes.holds(vote_id(encode(forged)), forged.key)


def test_one_keys_votes_push_out_only_its_own() -> None:
    pool = VotePool(bytes(32))
    chain_id = bytes(32)
    source = Checkpoint(0, 0, chain_id)

    def vote(key: int, slot: int) -> SignedVote:
        return sign_vote(KEYS[key], chain_id, Vote(source, Checkpoint(slot, slot, bytes(32))))

    other = vote(1, 1)
    pool.add(vote_id(encode(other)), other)
    for slot in range(1, 3 * VOTES_POOLED_PER_KEY):
        v = vote(3, slot)
        pool.add(vote_id(encode(v)), v)
    kept = pool.candidates(0)
    assert other in kept
    assert len(kept) == 1 + VOTES_POOLED_PER_KEY
    own = [v.vote.target.slot for v in kept if v.key == KEYS[3].public_key]
    assert own == list(range(2 * VOTES_POOLED_PER_KEY, 3 * VOTES_POOLED_PER_KEY)), "its newest"


def test_a_members_votes_for_far_off_targets_do_not_hide_its_double_vote(tmp_path: Path) -> None:
    """Between its two votes for the next height the member sends 16 (and more) votes for
    targets far above the head (refused VoteTargetAhead, not noted): the second vote is seen
    against the first and reported."""
    chain = new_chain(tmp_path / "poa", poa_params())
    grow(chain, range(1, 4))
    node = Node("n0", chain, NodeConfig(validator=KEYS[0]))
    node.add_peer("evil")
    source = chain.justified()
    assert source is not None
    guilty = KEYS[3]
    height = chain.height + 1  # (the next block, not known yet: both held aside)
    v1, v2 = (
        sign_vote(guilty, chain.chain_id, Vote(source, Checkpoint(height, 4, os.urandom(32)))) for _ in "ab"
    )
    node.handle("evil", VoteMsg(v1), at(4))
    for n in range(64):
        node.handle("evil", VoteMsg(far_vote(chain, n)), at(4))
    assert node.stats.votes_refused["VoteTargetAhead"] == 64
    node.handle("evil", VoteMsg(v2), at(4))
    assert node._reported == {guilty.public_key}
    reports = [v.tx.payload for v in node.mempool.candidates()]
    assert len(reports) == 1 and isinstance(reports[0], ReportValidatorFault)
    assert set(reports[0].votes) == {v1, v2}


def test_what_a_key_signed_is_noted_once_per_target_slot_the_first_vote_kept() -> None:
    chain_id = bytes(32)
    pool = VotePool(chain_id)
    key = KEYS[3]

    def vote(source: int, target: int, tag: int = 0, height: int | None = None) -> SignedVote:
        at_height = target if height is None else height
        return sign_vote(
            key,
            chain_id,
            Vote(Checkpoint(source, source, bytes(32)), Checkpoint(at_height, target, bytes([tag]) * 32)),
        )

    first = vote(0, 5)
    assert pool.check(first, 0) is None
    assert pool.check(first, 0) is None, "the same vote again is no fault"
    for tag in range(1, 40):  # (double votes for slot 5: each conflicts with the first)
        assert pool.check(vote(0, 5, tag), 0) == first
    assert pool.check(vote(0, 5, height=3), 0) == first, "slot 5 again, at another height: a double vote"
    for target in range(6, 40):  # (one vote per slot: none pushes out another)
        assert pool.check(vote(0, target), 0) is None
    assert pool.check(vote(0, 41, height=5), 0) is None, "height 5 again, in another slot: no fault"
    assert pool.check(vote(0, 5, 99), 0) == first
    assert pool.check(vote(6, 7), 0) is not None, "a link inside (0, 8): a surround vote"
    assert pool.check(vote(0, 3), 3) is None
    assert pool.check(vote(0, 3, 1), 3) is None, "a target at or below the lowest counted: not noted"
    pool.prune(justified_slot=5, lowest=5)
    assert pool.check(vote(0, 5, 7), 5) is None, "what can no longer count is forgotten"
    assert pool.check(vote(0, 6, 7), 5) == vote(0, 6)


def test_a_key_of_a_pending_set_neither_votes_nor_seals_until_the_hand_over(tmp_path: Path) -> None:
    """A ChangeValidators waits for its block to be final under the set in force: until then a
    node whose key only the new set names does not vote or seal, and its votes are refused
    (``NotAValidator``); once the new set is in force it does both, and an outgoing member's
    votes still count during the hand-over."""
    chain = new_chain(tmp_path / "poa", poa_params())
    change = _change(chain, _set([*KEYS[:3], NEWCOMER]), KEYS[:3])
    chain.add_block(propose(chain, 1, txs=[change]), now=at(1))
    node = Node("n0", chain, NodeConfig(validator=NEWCOMER))
    node.add_peer("p")
    node.add_peer("q")
    assert node.handle("p", VoteMsg(votes_for(chain, [NEWCOMER])[0]), at(2)) == []
    assert node.stats.votes_refused == {"NotAValidator": 1}
    assert node._vote(at(2)) == []
    assert all(node._propose(at(slot)) == [] for slot in range(2, 6)), "not the set in force"
    carry(chain, [2, 3], KEYS)  # block 3 finalizes block 1: the hand-over begins
    assert hand_over(chain.view()) is not None
    assert relayed(node._vote(at(3))), "a member of the set in force votes"
    outgoing = votes_for(chain, [KEYS[3]])[0]
    assert relayed(node.handle("p", VoteMsg(outgoing), at(3))) == [outgoing], (
        "an outgoing member's vote counts"
    )
    mine = next(
        s
        for s in range(4, 12)
        if proposer_of(validator_set(chain.view()).members, s).key == NEWCOMER.public_key
    )
    assert node._propose(at(mine)), "it seals its slot"
    assert chain.head.header.proposer == NEWCOMER.public_key
