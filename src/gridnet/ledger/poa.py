"""The permissioned chain (seed 004): validators in turn by slot, sealed blocks, finality.

A chain whose genesis sets ``[consensus] kind = "poa"`` is run by a validator set named in
the genesis (``ChainParams.validators``) and kept in the state (``VALIDATOR_SET``).

*Slots.* Time after genesis is cut into slots of ``block_interval_ms``. The block of slot
``s`` carries the slot's start as its timestamp and is proposed by member ``s mod n`` of the
set in its parent's state (members ordered by key); it is *sealed*: the proposer signs the
header with an empty seal (``Domain.BLOCK``, with the chain id). A slot whose proposer is
away stays empty; the next slot's proposer builds on what it has.

*Votes and finality* (Casper FFG with a checkpoint at every block, its slot as its epoch). A
validator votes for a link from the justified checkpoint of its head's state (source) to its
head (target). Proposers put the votes they hear into their blocks, and the state transition
counts them: once validators holding more than two thirds of the votes have voted for a link
from the justified checkpoint to a block, that block is *justified*; when its slot is the one
right after the source's, the source is *final* (and every block before it). Every node
replays the same votes from the blocks, so a node that syncs verifies the finality proofs
itself.

Epochs are slots, not heights, because slots grow with time on every branch: after a
partition heals, the new blocks of the branch every node follows are in later slots than any
block voted for on the other branch, so a validator that voted there votes here at once
(with heights it had to wait until the followed branch grew past its last target). The
source is final only when the target is in the very next slot (as in Casper FFG, the next
epoch): "the source's child block", with slots skipped between them, would not be safe, as a
block of another branch may sit in a skipped slot and be justified by a link that neither
surrounds nor doubles the finalizing one. A skipped slot after a justified block delays its
finality until two blocks of the branch are in consecutive slots.

*Fork choice.* The branch whose header names the latest justified slot, then the one with
more blocks (``chain_weight``); no branch that leaves the main chain below its final block is
ever taken (``ConflictsWithFinal``).

*Changes of the set* (Casper FFG's dynamic validator sets: a rear and a forward set, each
step at a finalization). A ChangeValidators does not take effect in the block that includes
it. It is *pending* on its branch (``PENDING_CHANGE``): the set in force ``S`` proposes and
votes alone. Once its block is final -- finalized by more than two thirds of ``S`` -- the
*hand-over* begins, after the votes of the block that finalized it (``apply_set_change``):
from the next block the new set ``S'`` is in force (it proposes; its members vote) and the
outgoing set ``S`` (``HAND_OVER``) votes too: a link is counted only when more than two
thirds of EACH set voted for it. The next block final above the one final when the hand-over
began ends it: ``S'`` counts alone. One change at a time (``ValidatorChangePending``). A fault
report removes the key from the set in force, the outgoing set and the pending change's set.

Why the hand-over, and not the new set alone once the change's block is final: two branches
that forked after the change's block was justified can disagree on whether it is final. The
votes that finalize it may reach one side only (an honest proposer includes them, the others
never hear them): that side would count ``S'`` alone while the other still counts ``S``
alone, and each could finalize its own branch with no vote of ``S`` nor of ``S'`` in
conflict -- the red team's split in one more step. With the hand-over, the rule by which a
branch counts links goes ``S``, ``S`` and ``S'``, ``S'``, one step at each finalization, and
each step's finalizing link carries more than two thirds of ``S`` up to and including the
link that ends the hand-over. Two branches agree up to where they fork. If one counts ``S'``
alone and the other still ``S`` alone, every link of both since the fork carries more than
two thirds of ``S`` up to the one that ended the hand-over: by the FFG argument over ``S``,
the second branch either justified the same checkpoints by the same links up to that one (so
it also finalized the change's block, and is not at ``S`` alone) or more than a third of
``S`` signed a double or a surround vote. Otherwise the two branches count under rules that
share a set, and the FFG argument over that set holds as in one set. Liveness: with more
than two thirds of ``S`` online the change's block is final as any block is (two blocks in
consecutive slots after it); the hand-over then needs more than two thirds of both sets
online for one more final block (``S``'s retiring keys stay up a few slots longer); then
``S'`` alone finalizes. A pending change's keys neither propose nor vote, on the chain or
at the node (``is_voter``).

*Faults.* A validator is provably at fault when it seals two blocks for one slot, or signs
two votes for one target slot (a double vote) or one vote whose link surrounds another, in
slots (surround vote). Each proof is a ReportValidatorFault transaction; it removes the validator
from the set, when the fault is from its current membership (``MEMBERSHIPS``: a key the set
approves back is not removed again by the old proof). With less than a third of the votes at
fault, no two conflicting blocks are ever both final (each would need more than two thirds, so
more than a third signed both); if validators holding a third or more stop, finality stops
until they return, while blocks keep coming in the slots of those present.
"""

from __future__ import annotations

import struct

from msgspec.structs import replace

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import U63, PublicKeyBytes, Wire, encode
from gridnet.errors import (
    BadJustification,
    BadSeal,
    BadVoteSignature,
    NotAValidator,
    OffSlot,
    StaleVoteSource,
    VoteAlreadyCounted,
    VoteBeforeMembership,
    WrongProposer,
    WrongVoteTarget,
)
from gridnet.ledger.header import Checkpoint, Header, SignedVote, Vote
from gridnet.ledger.params import ChainParams, Validator
from gridnet.ledger.state import StateView, register_table
from gridnet.units import Hash32

VOTE_WINDOW = 1024
"""A vote may target a block of the last this many slots before the block that includes it
(there are at most this many blocks in them: ``RECENT_BLOCKS`` holds them all) [slots]."""
MAX_VOTES_PER_BLOCK = 1024
VOTE_BYTES = 200
"""Room a vote takes in a block (encoded it is at most this) [bytes]."""
GENESIS_CHECKPOINT = Checkpoint(0, 0, bytes(32))
"""The genesis as the state names it (the chain id is not known inside the state it commits
to): a vote names it with the chain id."""


class ValidatorSet(Wire, frozen=True):
    seq: U63
    """How many times the set changed (a ChangeValidators names the next)."""
    members: tuple[Validator, ...]
    """Ordered by key: member ``slot mod n`` proposes the block of ``slot``."""

    @property
    def total(self) -> int:
        return sum(m.votes for m in self.members)

    def member(self, key: bytes) -> Validator | None:
        return next((m for m in self.members if m.key == key), None)

    def weight(self, keys: tuple[bytes, ...]) -> int:
        voted = frozenset(keys)  # (a tally holds up to 256 keys: not a scan of them per member)
        return sum(m.votes for m in self.members if m.key in voted)


class Tally(Wire, frozen=True):
    """Votes counted for one target, all from the current justified checkpoint (one vote per
    voter and target slot; a branch has one block a slot, so one target)."""

    target: Checkpoint
    voters: tuple[PublicKeyBytes, ...]


class Finality(Wire, frozen=True):
    justified: Checkpoint
    """The latest justified checkpoint of this branch (source of every vote counted next)."""
    finalized: Checkpoint
    """The last final block of this branch: no reorg goes below it."""
    tallied: tuple[U63, ...] = ()
    """The target slots with votes counted from ``justified`` (each its ``TALLIES`` entry),
    ascending, until one target is justified. The tallies are entries of their own: in one
    record, a stall of the vote window's 1,024 slots with 170 of 256 equal validators voting
    reached 6 MB, past what a state entry holds, and from then on every vote was refused
    (``StateOutOfRange``), so finality never came back [slots]."""


class RecentBlock(Wire, frozen=True):
    hash: bytes
    slot: U63
    """The slot the block was sealed for."""


class PendingChange(Wire, frozen=True):
    """A ChangeValidators included on this branch whose block is not final yet: the set in
    force still proposes and votes alone."""

    members: tuple[Validator, ...]
    """The approved set, ordered by key."""
    height: U63
    """The height of the block that included the change: its hand-over begins once that block
    is final (finalized by the votes of the set in force)."""


class HandOver(Wire, frozen=True):
    """A change of the set being handed over: the new set is in force (it proposes, its
    members vote) and justification still needs more than two thirds of the outgoing set."""

    outgoing: ValidatorSet
    """The set being replaced (its members vote until the hand-over ends)."""
    finalized: U63
    """The height final when the hand-over began: the next final block above it ends it."""


class Membership(Wire, frozen=True):
    since: U63
    """The first slot of the key's current membership: the one after the slot of the block
    whose ChangeValidators added it [slot]."""


VALIDATOR_SET = register_table("validator_set", b"K", ValidatorSet)
FINALITY = register_table("finality", b"J", Finality)
RECENT_BLOCKS = register_table("recent_blocks", b"N", RecentBlock)
"""Height (8 bytes, big-endian) -> hash and slot of the block at that height on this branch,
for the last ``VOTE_WINDOW`` heights: what a vote's target is checked against."""
PENDING_CHANGE = register_table("validator_change", b"w", PendingChange)
"""``current`` -> the ChangeValidators waiting for its block to be final (at most one)."""
HAND_OVER = register_table("validator_hand_over", b"y", HandOver)
"""``current`` -> the outgoing set of a change being handed over (at most one)."""
TALLIES = register_table("finality_tallies", b"0", Tally)
"""Target slot (8 bytes, big-endian) -> the votes counted for the target of that slot, for the
slots ``Finality.tallied`` lists."""
MEMBERSHIPS = register_table("validator_since", b"j", Membership)
"""Member key -> the slot its current membership began, for a key a ChangeValidators added (no
entry: a member since the genesis, 0): a fault counts only from then on."""
ONLY = b"current"
"""The key of a table with one entry (hex ``63757272656e74`` in ``GET /state``)."""


def height_key(height: int) -> bytes:
    return struct.pack(">Q", height)


def genesis_poa_state(params: ChainParams) -> dict[bytes, bytes]:
    members = tuple(sorted(params.validators, key=lambda v: v.key))
    return {
        VALIDATOR_SET.key(ONLY): encode(ValidatorSet(0, members)),
        FINALITY.key(ONLY): encode(Finality(GENESIS_CHECKPOINT, GENESIS_CHECKPOINT)),
    }


def checkpoint_hash(checkpoint: Checkpoint, chain_id: Hash32) -> bytes:
    """The block hash a state checkpoint stands for (the genesis: the chain id)."""
    return chain_id if checkpoint.height == 0 else checkpoint.hash


def finality(state: StateView) -> Finality:
    found = state.get(FINALITY, ONLY)
    assert found is not None, "a permissioned chain's state has its finality record"
    return found


def validator_set(state: StateView) -> ValidatorSet:
    found = state.get(VALIDATOR_SET, ONLY)
    assert found is not None, "a permissioned chain's state has its validator set"
    return found


def pending_change(state: StateView) -> PendingChange | None:
    return state.get(PENDING_CHANGE, ONLY)


def hand_over(state: StateView) -> HandOver | None:
    return state.get(HAND_OVER, ONLY)


def voting_sets(state: StateView) -> tuple[ValidatorSet, ...]:
    """The sets whose votes count, each of which a justification needs more than two thirds
    of: the set in force, and during a hand-over the outgoing set too."""
    over = hand_over(state)
    current = validator_set(state)
    return (current,) if over is None else (current, over.outgoing)


def is_voter(state: StateView, key: bytes) -> bool:
    """Whether ``key``'s votes count on this branch now (a member of a set that votes; not of
    a pending one)."""
    return any(s.member(key) is not None for s in voting_sets(state))


# --- slots and seals --------------------------------------------------------------------


def slot_of(params: ChainParams, timestamp: int) -> int:
    """The slot a time falls in (slots before genesis count as slot 0)."""
    return max(0, timestamp - params.genesis_time) // params.block_interval_ms


def slot_start(params: ChainParams, slot: int) -> int:
    return params.genesis_time + slot * params.block_interval_ms


def slot_lead_ms(params: ChainParams) -> int:
    """How long before its slot starts a sealed block is taken [ms]: half a slot (at most
    ``max_future_ms``). Clocks that differ by less are tolerated; a validator whose clock runs
    ahead cannot seal the slots after the current one and take them from their proposers
    (its block is refused as ``TimestampTooFarInFuture`` until its slot has nearly come, and
    the current slot's block had half a slot to spread)."""
    return min(params.block_interval_ms // 2, params.max_future_ms)


def proposer_of(members: tuple[Validator, ...], slot: int) -> Validator:
    return members[slot % len(members)]


def seal_message(chain_id: Hash32, header: Header) -> bytes:
    return chain_id + encode(replace(header, seal=b""))


def seal_header(key: PrivateKey, chain_id: Hash32, header: Header) -> Header:
    """``header`` as ``key``'s validator proposes it: its key named, the coinbase paid to its
    address, and sealed."""
    named = replace(header, proposer=key.public_key, miner=key.address, seal=b"")
    return replace(named, seal=key.sign(Domain.BLOCK, seal_message(chain_id, named)))


def seal_valid(chain_id: Hash32, header: Header) -> bool:
    return len(header.proposer) == 32 and verify_signature(
        Domain.BLOCK, header.proposer, seal_message(chain_id, header), header.seal
    )


def check_sealed_header(
    header: Header, params: ChainParams, chain_id: Hash32, parent_timestamp: int, parent_justified: int
) -> None:
    """The header rules of a permissioned chain that need no state: slot-aligned time after
    the parent's slot, a valid seal by the key it names (paid as the miner), no proof-of-work
    fields, and a justified slot from the parent's up to before its own."""
    if (
        header.timestamp - params.genesis_time
    ) % params.block_interval_ms or header.timestamp < params.genesis_time:
        raise OffSlot(
            f"block {header.height}: timestamp {header.timestamp} is not the start of a slot "
            f"(genesis + a multiple of {params.block_interval_ms} ms)"
        )
    if header.timestamp <= parent_timestamp:
        raise OffSlot(f"block {header.height}: its slot is not after its parent's")
    if not seal_valid(chain_id, header):
        raise BadSeal(f"block {header.height}: the seal does not verify for the proposer key it names")
    if header.miner != address_from_public_key(header.proposer):
        raise BadSeal(f"block {header.height}: the coinbase goes to another address than its proposer's")
    if header.nonce != 0 or header.target != params.initial_target:
        raise BadSeal(
            f"block {header.height}: a sealed block carries no proof-of-work (nonce 0, the genesis target)"
        )
    slot = slot_of(params, header.timestamp)
    if not parent_justified <= header.justified < slot:
        raise BadJustification(
            f"block {header.height}: justified slot {header.justified} is not between its "
            f"parent's ({parent_justified}) and its own ({slot})"
        )


def chain_weight(params: ChainParams, parent_weight: int, header: Header, work: int) -> int:
    """What fork choice compares: on proof-of-work the cumulative ``work``; on a permissioned
    chain the latest justified slot first, then the height."""
    if params.permissioned:
        return (header.justified << 64) | header.height
    return parent_weight + work


# --- the state transition's part --------------------------------------------------------


def begin_sealed_block(
    state: StateView,
    params: ChainParams,
    height: int,
    prev_hash: bytes,
    parent_timestamp: int,
    timestamp: int,
    proposer: bytes,
) -> None:
    """Before the block's votes and transactions: the proposer must be the one the parent's
    set names for the slot; the parent's hash and slot join the recent blocks."""
    members = validator_set(state).members
    slot = slot_of(params, timestamp)
    expected = proposer_of(members, slot)
    if proposer != expected.key:
        raise WrongProposer(
            f"block {height}: slot {slot} belongs to validator {expected.key.hex()[:16]}, "
            f"not {proposer.hex()[:16]}"
        )
    parent = height - 1
    state.put(RECENT_BLOCKS, height_key(parent), RecentBlock(prev_hash, slot_of(params, parent_timestamp)))
    if parent >= VOTE_WINDOW:
        state.put(RECENT_BLOCKS, height_key(parent - VOTE_WINDOW), None)


def vote_message(chain_id: Hash32, vote: Vote) -> bytes:
    return chain_id + encode(vote)


def sign_vote(key: PrivateKey, chain_id: Hash32, vote: Vote) -> SignedVote:
    return SignedVote(vote, key.public_key, key.sign(Domain.VOTE, vote_message(chain_id, vote)))


def vote_signed(chain_id: Hash32, signed: SignedVote) -> bool:
    return verify_signature(Domain.VOTE, signed.key, vote_message(chain_id, signed.vote), signed.signature)


def apply_vote(state: StateView, chain_id: Hash32, height: int, slot: int, signed: SignedVote) -> None:
    """Count one vote in the block at ``height`` (sealed for ``slot``): from a member, signed,
    from the branch's justified checkpoint to one of its recent blocks in a later slot, once
    per voter and target slot. Justifies the target when more than two thirds of the votes
    are counted for it (of each set that votes: during a hand-over, of the set in force and
    of the outgoing set), and then finalizes the source if the target is in the next slot."""
    sets = voting_sets(state)
    if all(s.member(signed.key) is None for s in sets):
        raise NotAValidator(f"vote by {signed.key.hex()[:16]}, which is not in the validator set")
    if not vote_signed(chain_id, signed):
        raise BadVoteSignature(f"vote by {signed.key.hex()[:16]} does not verify on this chain")
    record = finality(state)
    source, target = signed.vote.source, signed.vote.target
    since = member_since(state, signed.key)
    if target.slot + 1 < since:  # (its fault would weigh from target.slot + 1: fault_slot)
        raise VoteBeforeMembership(
            f"vote by {signed.key.hex()[:16]} for a target of slot {target.slot}; it is a member from "
            f"slot {since}, and only a vote whose fault could be proven counts"
        )
    justified = record.justified
    if source != replace(justified, hash=checkpoint_hash(justified, chain_id)):
        raise StaleVoteSource(
            f"vote from the checkpoint of slot {source.slot}, height {source.height}; the branch's "
            f"justified checkpoint is of slot {justified.slot}, height {justified.height}"
        )
    if not justified.slot < target.slot < slot:
        raise WrongVoteTarget(
            f"vote target of slot {target.slot} is not after the justified slot {justified.slot} "
            f"and before the block's slot {slot}"
        )
    if target.slot < slot - VOTE_WINDOW:
        raise WrongVoteTarget(
            f"vote target of slot {target.slot} left the vote window ({VOTE_WINDOW} slots before {slot})"
        )
    recent = state.get(RECENT_BLOCKS, height_key(target.height)) if target.height < height else None
    if recent is None or (recent.hash, recent.slot) != (target.hash, target.slot):
        raise WrongVoteTarget(
            f"vote target {target.height} {target.hash.hex()[:16]} of slot {target.slot} is not on "
            "this branch"
        )
    counted = state.get(TALLIES, height_key(target.slot))
    if counted is not None and signed.key in counted.voters:
        raise VoteAlreadyCounted(
            f"validator {signed.key.hex()[:16]} already has a vote counted for slot {target.slot}"
        )
    tally = Tally(target, (*counted.voters, signed.key) if counted is not None else (signed.key,))
    if all(s.weight(tally.voters) * 3 > s.total * 2 for s in sets):  # (both, in a hand-over)
        # (the next epoch only: a block of another branch may sit in a slot skipped between)
        final = justified if target.slot == justified.slot + 1 else record.finalized
        drop_tallies(state)
        state.put(FINALITY, ONLY, Finality(target, final))
        return
    state.put(TALLIES, height_key(target.slot), tally)
    # (tallies of targets that left the vote window can never grow again: dropped)
    tallied = [s for s in record.tallied if s >= slot - VOTE_WINDOW]
    for gone in record.tallied[: len(record.tallied) - len(tallied)]:
        state.put(TALLIES, height_key(gone), None)
    if counted is None:
        tallied = sorted((*tallied, target.slot))
    if tallied != list(record.tallied):
        state.put(FINALITY, ONLY, replace(record, tallied=tuple(tallied)))


def check_justified(state: StateView, header: Header) -> None:
    justified = finality(state).justified.slot
    if header.justified != justified:
        raise BadJustification(
            f"block {header.height} names justified slot {header.justified}; its votes give {justified}"
        )


# --- faults -----------------------------------------------------------------------------


def double_seal(chain_id: Hash32, params: ChainParams, a: Header, b: Header) -> bytes | None:
    """The key that sealed both ``a`` and ``b`` for one slot (two different blocks), or None."""
    if (
        a != b
        and a.proposer == b.proposer
        and slot_of(params, a.timestamp) == slot_of(params, b.timestamp)
        and seal_valid(chain_id, a)
        and seal_valid(chain_id, b)
    ):
        return a.proposer
    return None


def conflicting_votes(chain_id: Hash32, a: SignedVote, b: SignedVote) -> bytes | None:
    """The key that signed both votes if they conflict (one target slot twice, or one link
    surrounding the other, in slots), or None."""
    if a.key != b.key or a.vote == b.vote:
        return None
    s1, t1 = a.vote.source.slot, a.vote.target.slot
    s2, t2 = b.vote.source.slot, b.vote.target.slot
    conflict = t1 == t2 or s1 < s2 < t2 < t1 or s2 < s1 < t1 < t2
    if conflict and vote_signed(chain_id, a) and vote_signed(chain_id, b):  # (signatures last: the dearest)
        return a.key
    return None


def member_since(state: StateView, key: bytes) -> int:
    """The first slot of ``key``'s current membership (0: a member since the genesis)."""
    found = state.get(MEMBERSHIPS, key)
    return 0 if found is None else found.since


def fault_slot(params: ChainParams, headers: tuple[Header, ...], votes: tuple[SignedVote, ...]) -> int:
    """The first slot in which a fault's items could weigh: the headers' slot, or the one after
    the lower vote target's (a vote for the block of slot ``t`` counts from slot ``t + 1``).
    Slots, not heights: they are one clock on every branch, so a fault signed on another
    branch before the key joined again is told from one signed since, whatever the heights."""
    if headers:
        return min(slot_of(params, h.timestamp) for h in headers)
    return min(v.vote.target.slot for v in votes) + 1


def remove_validator(state: StateView, key: bytes) -> None:
    """Take ``key`` out of every set it is in: the set in force (the next slot's proposer is
    picked among the others; ``seq`` + 1), the outgoing set of a hand-over and the pending
    change's set (a proven fault is not let back in by an approval signed before it; a change
    whose set that empties is dropped: its approvers may propose another). As on
    any change of the set, the votes counted so far are dropped, to be counted again under
    the new weights: a tally kept would not justify its target once the smaller total put it
    above two thirds, as no vote already counted in it can be counted again."""
    current = validator_set(state)
    members = tuple(m for m in current.members if m.key != key)
    state.put(VALIDATOR_SET, ONLY, ValidatorSet(current.seq + 1, members))
    over = hand_over(state)
    if over is not None:
        outgoing = over.outgoing
        kept = tuple(m for m in outgoing.members if m.key != key)
        state.put(HAND_OVER, ONLY, replace(over, outgoing=ValidatorSet(outgoing.seq, kept)))
    pending = pending_change(state)
    if pending is not None:
        kept = tuple(m for m in pending.members if m.key != key)
        state.put(PENDING_CHANGE, ONLY, replace(pending, members=kept) if kept else None)
    state.put(MEMBERSHIPS, key, None)
    drop_tallies(state)


def apply_set_change(state: StateView, slot: int) -> None:
    """After the votes of the block of ``slot``: a pending change whose block is now final
    begins its hand-over (the new set is in force from the next block: it proposes, and its
    members vote beside the outgoing set's; each key it adds is a member from the next slot),
    and a hand-over ends once a block above the one final when it began is final (the
    outgoing members that are not in the new set leave). Either way the tallies are dropped:
    counted again under the new rule."""
    final = finality(state).finalized.height
    over = hand_over(state)
    if over is not None:
        if final > over.finalized:
            state.put(HAND_OVER, ONLY, None)
            current = validator_set(state)
            for m in over.outgoing.members:
                if current.member(m.key) is None:
                    state.put(MEMBERSHIPS, m.key, None)
            drop_tallies(state)
        return
    pending = pending_change(state)
    if pending is None or final < pending.height:
        return
    current = validator_set(state)
    state.put(VALIDATOR_SET, ONLY, ValidatorSet(current.seq + 1, pending.members))
    state.put(PENDING_CHANGE, ONLY, None)
    state.put(HAND_OVER, ONLY, HandOver(current, final))
    for m in pending.members:
        if current.member(m.key) is None:
            state.put(MEMBERSHIPS, m.key, Membership(slot + 1))
    drop_tallies(state)


def drop_tallies(state: StateView) -> None:
    """Forget the votes counted towards the next justified checkpoint (the validator set
    changed: they are counted again, under the new weights, when a block carries them)."""
    record = finality(state)
    for slot in record.tallied:
        state.put(TALLIES, height_key(slot), None)
    if record.tallied:
        state.put(FINALITY, ONLY, replace(record, tallied=()))
