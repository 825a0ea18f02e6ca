"""What a node of a permissioned chain keeps besides blocks (``ledger/poa.py``): the finality
votes it heard (a proposer puts them in its block), and what each validator signed — votes
and seals — so that two conflicting ones become the proof of a ReportValidatorFault. A vote's
epoch is its target's slot: every window here is in slots."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from gridnet.encoding import U63, Wire
from gridnet.ledger.blocks import Checkpoint, Header, SignedVote
from gridnet.ledger.params import ChainParams
from gridnet.ledger.poa import VOTE_WINDOW, conflicting_votes, slot_lead_ms, slot_of, slot_start
from gridnet.units import Hash32

VOTES_POOLED_PER_KEY = 32
"""Votes kept per validator key for the blocks this node seals (its own oldest go first: one
member's votes never push out another's)."""
VOTES_ASIDE_PER_KEY = 4
"""Votes kept per validator key whose target is not (yet) a block of this node's main chain
(a vote may arrive before its block): taken into the pool when it is."""
SEALS_KEPT_PER_KEY = 64
"""Slots whose seal is kept per proposer key, to catch a second block for one of them."""


def lowest_counted(justified_slot: int, current_slot: int) -> int:
    """The slot at or below which no vote's target counts any more in a block of the current
    slot or later: the justified one, or the one that left the vote window
    (``poa.VOTE_WINDOW`` slots)."""
    return max(justified_slot, current_slot - VOTE_WINDOW - 1)


def vote_ahead(params: ChainParams, target_slot: int, now: int) -> bool:
    """Whether a vote's target is in a slot whose block this node would not take yet (it
    starts more than the slot lead after ``now`` [ms]): no honest validator signed it yet."""
    return slot_start(params, target_slot) > now + slot_lead_ms(params)


class LastVote(Wire, frozen=True):
    """The slots of the last vote this node's validator signed, source and target (kept in
    its store, so a restart never signs a vote that conflicts with one signed before it)."""

    source: U63
    target: U63


class VotePool:
    """Votes heard, per validator key: those whose target is on this node's main chain (what
    the blocks it seals carry), and a few held aside until their target joins it."""

    def __init__(self, chain_id: Hash32) -> None:
        self.chain_id = chain_id
        self._pooled: dict[bytes, OrderedDict[Hash32, SignedVote]] = {}
        self._aside: dict[bytes, OrderedDict[Hash32, tuple[str, SignedVote]]] = {}
        """Per key: the peer each came from (to relay it once taken), and the vote."""
        self._signed: dict[bytes, dict[int, SignedVote]] = {}
        """Per key: target slot -> the first vote of the key seen for it (what it signed, to
        catch a conflicting vote), for the targets above the lowest that can still count."""

    def holds(self, vid: Hash32, key: bytes) -> bool:
        return vid in self._pooled.get(key, ()) or vid in self._aside.get(key, ())

    def __len__(self) -> int:
        return sum(len(kept) for kept in self._pooled.values())

    def check(self, vote: SignedVote, lowest: int) -> SignedVote | None:
        """Note what a key signed (a vote whose signature was checked and whose target the
        node takes: kept or held aside), when its target is above ``lowest`` (the slot at or
        below which no vote counts any more); returns the first vote of the same key that
        conflicts with it (a fault to report), if any. One vote per key and target slot is
        noted, the first: the key's record holds at most one vote per slot the node takes, and
        nothing the key sends later pushes out what it signed before."""
        signed = self._signed.setdefault(vote.key, {})
        slot = vote.vote.target.slot
        earlier = signed.get(slot)
        if earlier is not None:  # (a double vote, or the same vote again)
            return None if earlier == vote else earlier
        conflict = next(
            (v for v in signed.values() if conflicting_votes(self.chain_id, v, vote) is not None), None
        )
        if slot > lowest:
            signed[slot] = vote
        return conflict

    def add(self, vid: Hash32, vote: SignedVote) -> None:
        """Keep a vote whose target is on the main chain."""
        kept = self._pooled.setdefault(vote.key, OrderedDict())
        kept[vid] = vote
        if len(kept) > VOTES_POOLED_PER_KEY:
            kept.popitem(last=False)

    def hold(self, vid: Hash32, vote: SignedVote, origin: str) -> None:
        """Keep aside a vote whose target is not on the main chain (yet)."""
        aside = self._aside.setdefault(vote.key, OrderedDict())
        aside[vid] = (origin, vote)
        if len(aside) > VOTES_ASIDE_PER_KEY:
            aside.popitem(last=False)

    def take_held(self, on_main: Callable[[Checkpoint], bool]) -> list[tuple[str, SignedVote]]:
        """Move into the pool the votes held aside whose target is now on the main chain;
        returns them with the peer each came from."""
        taken: list[tuple[str, SignedVote]] = []
        for aside in self._aside.values():
            for vid, (origin, vote) in list(aside.items()):
                if on_main(vote.vote.target):
                    del aside[vid]
                    self.add(vid, vote)
                    taken.append((origin, vote))
        return taken

    def candidates(self, justified_slot: int) -> list[SignedVote]:
        """Votes that may still count: their target after the justified slot (the block
        builder keeps those that count on its branch)."""
        return [
            v for kept in self._pooled.values() for v in kept.values() if v.vote.target.slot > justified_slot
        ]

    def prune(self, justified_slot: int, lowest: int) -> None:
        """Forget the votes that can no longer count (their target at or before the justified
        slot), and what each key signed for a target at or before ``lowest``
        (``lowest_counted``)."""
        for key, signed in list(self._signed.items()):
            for slot in [t for t in signed if t <= lowest]:
                del signed[slot]
            if not signed:
                del self._signed[key]
        for key, kept in list(self._pooled.items()):
            for vid in [vid for vid, v in kept.items() if v.vote.target.slot <= justified_slot]:
                del kept[vid]
            if not kept:
                del self._pooled[key]
        for key, aside in list(self._aside.items()):
            for vid in [vid for vid, (_, v) in aside.items() if v.vote.target.slot <= justified_slot]:
                del aside[vid]
            if not aside:
                del self._aside[key]


class SealLog:
    """The first header each member sealed per slot, for the slots whose blocks a node takes
    (from its last final block's slot up to the slot lead ahead of its clock), at most
    ``per_key`` slots per proposer key, its lowest going first: one key pushes out only its
    own seals, and only older ones than it can seal now (a key that seals far-off slots, or
    one slot twice, cannot push out the seal that a second block for the same slot would
    conflict with)."""

    def __init__(self, chain_id: Hash32, params: ChainParams, per_key: int = SEALS_KEPT_PER_KEY) -> None:
        self.chain_id = chain_id
        self.params = params
        self.per_key = per_key
        self._seen: dict[bytes, dict[int, Header]] = {}
        """Proposer key -> slot -> the first header it sealed for that slot."""

    def __len__(self) -> int:
        return sum(len(slots) for slots in self._seen.values())

    def add(self, header: Header, lowest_slot: int, now: int) -> Header | None:
        """Note a header whose seal was checked, when a node takes a block of its slot (not
        before ``lowest_slot``, the last final block's, nor more than the slot lead ahead of
        ``now`` [ms]); returns the first header its proposer sealed for the same slot (a
        fault to report), if it differs."""
        slot = slot_of(self.params, header.timestamp)
        slots = self._seen.get(header.proposer, {})
        earlier = slots.get(slot)
        if earlier is not None:
            return earlier if earlier != header else None
        if slot < lowest_slot or header.timestamp > now + slot_lead_ms(self.params):
            return None  # (refused for its time, not checked: not noted)
        slots[slot] = header
        self._seen[header.proposer] = slots
        if len(slots) > self.per_key:
            del slots[min(slots)]
        return None
