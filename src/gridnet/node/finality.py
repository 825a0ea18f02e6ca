"""What a node of a permissioned chain keeps besides blocks (``ledger/poa.py``): the finality
votes it heard (a proposer puts them in its block), and what each validator signed — votes
and seals — so that two conflicting ones become the proof of a ReportValidatorFault."""

from __future__ import annotations

from collections import OrderedDict, deque

from gridnet.crypto.hashing import vote_id
from gridnet.encoding import U63, Wire, encode
from gridnet.ledger.blocks import Header, SignedVote
from gridnet.ledger.params import ChainParams
from gridnet.ledger.poa import conflicting_votes, slot_of
from gridnet.units import Hash32

VOTES_KEPT_PER_KEY = 16
"""Recent votes kept per validator key, to catch a conflicting one."""


class LastVote(Wire, frozen=True):
    """The heights of the last vote this node's validator signed (kept in its store, so a
    restart never signs a vote that conflicts with one signed before it)."""

    source: U63
    target: U63


class VotePool:
    """Votes heard, at most ``max_votes`` (the oldest go first)."""

    def __init__(self, chain_id: Hash32, max_votes: int = 4096) -> None:
        self.chain_id = chain_id
        self.max_votes = max_votes
        self.votes: OrderedDict[Hash32, SignedVote] = OrderedDict()
        self._by_key: dict[bytes, deque[SignedVote]] = {}

    def __contains__(self, vid: Hash32) -> bool:
        return vid in self.votes

    def __len__(self) -> int:
        return len(self.votes)

    def add(self, vote: SignedVote) -> SignedVote | None:
        """Keep a vote whose signature was checked; returns an earlier vote of the same key
        that conflicts with it (a fault to report), if any."""
        vid = vote_id(encode(vote))
        if vid in self.votes:
            return None
        self.votes[vid] = vote
        while len(self.votes) > self.max_votes:
            self.votes.popitem(last=False)
        seen = self._by_key.setdefault(vote.key, deque(maxlen=VOTES_KEPT_PER_KEY))
        conflict = next((v for v in seen if conflicting_votes(self.chain_id, v, vote) is not None), None)
        seen.append(vote)
        return conflict

    def candidates(self, justified_height: int) -> list[SignedVote]:
        """Votes that may still count: their target above the justified height (the block
        builder keeps those that count on its branch)."""
        return [v for v in self.votes.values() if v.vote.target.height > justified_height]

    def prune(self, justified_height: int) -> None:
        """Forget the votes that can no longer count (their target at or below the justified
        height); what each key signed stays for fault detection."""
        for vid in [vid for vid, v in self.votes.items() if v.vote.target.height <= justified_height]:
            del self.votes[vid]


class SealLog:
    """The header each proposer sealed per slot (the last ``max_slots`` seen)."""

    def __init__(self, chain_id: Hash32, params: ChainParams, max_slots: int = 4096) -> None:
        self.chain_id = chain_id
        self.params = params
        self.max_slots = max_slots
        self._seen: OrderedDict[tuple[bytes, int], Header] = OrderedDict()

    def add(self, header: Header) -> Header | None:
        """Note a header whose seal was checked; returns another header its proposer sealed
        for the same slot (a fault to report), if any."""
        key = (header.proposer, slot_of(self.params, header.timestamp))
        earlier = self._seen.get(key)
        if earlier is not None:
            return earlier if earlier != header else None
        self._seen[key] = header
        while len(self._seen) > self.max_slots:
            self._seen.popitem(last=False)
        return None
