"""Token pools, transmission tokens, the sender's hop entries and payrate shares (pure rules)."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.crypto.hashing import datagram_digest, hash32, pool_id
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import (
    ClaimSignatureInvalid,
    HopBeneficiaryNotCredited,
    HopEntryInvalid,
    NotHopEquivocation,
    NotOvercredit,
    TokenPreimageInvalid,
    TokenSignatureInvalid,
    TooManyHops,
)
from gridnet.ledger.merkle import EMPTY_ROOT, MerkleStep, merkle_proof
from gridnet.relay import hops as hops_module
from gridnet.relay.claims import HopClaim, TransitClaim, check_claim_signature, sign_claim
from gridnet.relay.fraud import (
    check_hop_equivocation,
    check_overcredit,
    equivocation_beneficiary,
    excess_relays,
    overcredit,
    overcredit_beneficiary,
)
from gridnet.relay.hops import (
    MAX_CONNECTION_HOPS,
    HopBook,
    HopEntry,
    HopTicket,
    hop_id,
    hop_shares,
    hops_root,
    verify_ticket,
)
from gridnet.relay.tokens import (
    PPM,
    HashChain,
    SignedToken,
    check_preimage,
    check_token_signature,
    issue_token,
)

OWNER = PrivateKey.from_label("pool-owner")
RELAYS = [PrivateKey.from_label(f"relay-{i}").address for i in range(4)]
CHAIN = HashChain(b"s" * 32, 50)
POOL = pool_id(OWNER.address, CHAIN.final)
PAYRATE = 750_000
CHAIN_ID = hash32(b"incentives: this chain")
"""The chain the tokens are signed for (a genesis hash stands here)."""


def token(depth: int = 3, datagram: bytes = b"payload", hop_root: bytes = EMPTY_ROOT) -> SignedToken:
    return issue_token(OWNER, CHAIN_ID, CHAIN, POOL, depth, datagram_digest(datagram), hop_root)


def test_a_preimage_proves_its_depth_by_hashing_forward() -> None:
    t = token(7)
    check_preimage(t, CHAIN.final, 0)
    check_preimage(t, CHAIN.preimage(4), 4)


def test_a_preimage_that_does_not_hash_to_the_pool() -> None:
    t = token(7)
    wrong = msgspec.structs.replace(t.token, preimage=CHAIN.preimage(6))
    forged = msgspec.structs.replace(t, token=wrong)
    with pytest.raises(TokenPreimageInvalid):
        check_preimage(forged, CHAIN.final, 0)
    with pytest.raises(TokenPreimageInvalid):  # shallower than what was already paid
        check_preimage(token(3), CHAIN.preimage(5), 5)


def test_a_token_moved_to_another_datagram_or_given_other_hop_entries() -> None:
    t = token(3)
    for field, value in (("datagram", datagram_digest(b"another")), ("hop_root", bytes([1]) * 32)):
        moved = msgspec.structs.replace(t, token=msgspec.structs.replace(t.token, **{field: value}))
        with pytest.raises(TokenSignatureInvalid):
            check_token_signature(moved, OWNER.address, CHAIN_ID)
    with pytest.raises(TokenSignatureInvalid):  # a valid token, but not the pool owner's
        check_token_signature(t, RELAYS[0], CHAIN_ID)


# --- the sender's hop entries ------------------------------------------------------------


def test_the_book_shares_each_datagrams_units_along_its_own_path() -> None:
    """Two datagrams over different paths: every relay's entry is what the two paths'
    shares add up to, and each relay's ticket proves exactly its own entry."""
    book = HopBook(b"k" * 32)
    first = book.plan(2, RELAYS[:3], PAYRATE)
    assert book.depth == 0 and book.credits == {}  # nothing changes until the datagram is built
    book.commit(first)
    second = book.plan(5, [RELAYS[0], RELAYS[3]], PAYRATE)
    book.commit(second)
    expected: dict[bytes, int] = {}
    for units, path in ((2, RELAYS[:3]), (3, [RELAYS[0], RELAYS[3]])):
        for relay, share in hop_shares(units * PPM, path, PAYRATE):
            expected[relay] = expected.get(relay, 0) + share
    assert book.credits == expected and sum(expected.values()) == 5 * PPM
    for credit, path in ((first, RELAYS[:3]), (second, [RELAYS[0], RELAYS[3]])):
        assert [t.entry.relay for t in credit.tickets] == path
        for ticket in credit.tickets:
            verify_ticket(ticket, credit.root, ticket.entry.relay)
            assert ticket.entry.credit == credit.credits[ticket.entry.relay]
    # Relay 1 and 2 are off the second path: they get no ticket, but keep their entries.
    assert second.credits[RELAYS[1]] == first.credits[RELAYS[1]]


def test_a_ticket_proves_only_its_own_relays_entry_under_its_own_root() -> None:
    book = HopBook(b"k" * 32)
    first = book.plan(2, RELAYS[:3], PAYRATE)
    book.commit(first)
    second = book.plan(4, RELAYS[:3], PAYRATE)
    ticket = first.tickets[0]
    with pytest.raises(HopEntryInvalid):  # presented by another relay
        verify_ticket(ticket, first.root, RELAYS[1])
    with pytest.raises(HopEntryInvalid):  # under another datagram's root
        verify_ticket(ticket, second.root, RELAYS[0])
    raised = msgspec.structs.replace(ticket.entry, credit=ticket.entry.credit + 1)
    with pytest.raises(HopEntryInvalid):  # a credit changed
        verify_ticket(msgspec.structs.replace(ticket, entry=raised), first.root, RELAYS[0])
    step = ticket.proof[0]
    bent = (MerkleStep(bytes(32), step.sibling_is_left), *ticket.proof[1:])
    with pytest.raises(HopEntryInvalid):  # a digest of another entry changed
        verify_ticket(msgspec.structs.replace(ticket, proof=bent), first.root, RELAYS[0])


def test_no_relay_can_add_an_entry_for_another() -> None:
    """Relay 1 knows its own ticket (its entry, the digests on its way to the root): with
    them it cannot make an entry for a puppet (or for itself again) that the root holds."""
    credit = HopBook(b"k" * 32).plan(1, RELAYS[:3], PAYRATE)
    own = credit.tickets[1]
    puppet = HopEntry(RELAYS[3], own.entry.credit, own.entry.salt)
    for forged in (
        HopTicket(puppet, own.proof),
        HopTicket(puppet, (MerkleStep(hop_id(own.entry), True), *own.proof)),
    ):
        with pytest.raises(HopEntryInvalid):
            verify_ticket(forged, credit.root, RELAYS[3])


def test_the_root_hides_the_entries_from_whoever_knows_the_path() -> None:
    """Someone who knows the path, the units and the payrate knows every credit: without the
    sender's secret it still cannot recompute the root (the salts), and the root of the
    same credits differs from one datagram to the next."""
    book = HopBook(b"k" * 32)
    first = book.plan(1, RELAYS[:3], PAYRATE)
    book.commit(first)
    guess = [HopEntry(r, c, bytes(16)) for r, c in first.credits.items()]
    assert hops_root(guess) != first.root
    same_credits = book.plan(2, [], PAYRATE)  # a datagram straight to the receiver
    assert same_credits.credits == first.credits and same_credits.root != first.root
    assert HopBook(b"k" * 32).plan(1, [], PAYRATE).root == EMPTY_ROOT  # nobody credited yet


def test_the_book_refuses_a_depth_that_does_not_grow_and_a_payrate_beyond_one() -> None:
    book = HopBook(b"k" * 32)
    book.commit(book.plan(3, RELAYS[:1], PAYRATE))
    for depth, payrate in ((3, PAYRATE), (2, PAYRATE), (4, PPM + 1), (4, -1)):
        with pytest.raises(ValueError):
            book.plan(depth, RELAYS[:1], payrate)


def test_a_connection_credits_a_bounded_number_of_relays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hops_module, "MAX_CONNECTION_HOPS", 3)
    book = HopBook(b"k" * 32)
    book.commit(book.plan(1, RELAYS[:3], PAYRATE))
    with pytest.raises(TooManyHops):
        book.plan(2, RELAYS[3:], PAYRATE)


# --- shares ------------------------------------------------------------------------------

addresses = st.lists(st.sampled_from([bytes([i]) * 20 for i in range(6)]), min_size=1, max_size=10)
payrates = st.integers(0, PPM)
rewards = st.integers(0, 10**12)


@settings(max_examples=300, deadline=None)
@given(rewards, addresses, payrates)
def test_shares_always_sum_to_the_reward(reward: int, hops: list[bytes], p: int) -> None:
    assert sum(s for _, s in hop_shares(reward, hops, p)) == reward


def test_shares_follow_the_payrate_geometrically() -> None:
    """p = 0.75 over three hops: (1 - p), p(1 - p), p^2 of the reward."""
    assert [s for _, s in hop_shares(40_000, RELAYS[:3], PAYRATE)] == [10_000, 7_500, 22_500]


@settings(max_examples=300, deadline=None)
@given(rewards, addresses, payrates, st.integers(1, 5), st.data())
def test_repeating_oneself_never_pays(
    reward: int, hops: list[bytes], p: int, extra: int, data: st.DataObject
) -> None:
    """A party that appends itself again (consecutive hops, one identity) earns exactly what
    it earned once, wherever it stands; so do all the others."""
    i = data.draw(st.integers(0, len(hops) - 1))
    padded = hops[: i + 1] + [hops[i]] * extra + hops[i + 1 :]
    assert hop_shares(reward, padded, p) == hop_shares(reward, hops, p)


@settings(max_examples=300, deadline=None)
@given(rewards, addresses, payrates, st.integers(1, 5))
def test_artificial_hops_before_the_receiver_never_pay(
    reward: int, hops: list[bytes], p: int, extra: int
) -> None:
    """The last hop adds identities of its own between itself and the receiver: with all of
    them it earns exactly what it earned delivering alone, and every earlier hop too."""
    alone = hop_shares(reward, hops, p)
    puppets = [bytes([100 + k]) * 20 for k in range(extra)]  # new identities, all its own
    padded = hop_shares(reward, hops + puppets, p)
    assert padded[: len(alone) - 1] == alone[:-1]
    assert sum(share for _, share in padded[len(alone) - 1 :]) == alone[-1][1]


# --- what an honest sender's signatures never prove ------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.lists(st.sampled_from(RELAYS), max_size=4)), min_size=1, max_size=8
    ),
    payrates,
    st.data(),
)
def test_an_honest_connection_proves_no_fraud(
    datagrams: list[tuple[int, list[bytes]]], p: int, data: st.DataObject
) -> None:
    """Whatever its paths and units per datagram, an honest sender's tokens never share a
    depth, and no choice of one entry per relay (from any of its tokens) credits more than
    the deepest chosen token reveals: neither fraud proof can be made against it."""
    book, depth = HopBook(b"k" * 32), 0
    tokens: list[SignedToken] = []
    claims: dict[bytes, list[HopClaim]] = {}
    for units, path in datagrams:
        depth += units
        credit = book.plan(depth, path, p)
        tokens.append(token(depth, hop_root=credit.root))
        book.commit(credit)
        for ticket in credit.tickets:
            claims.setdefault(ticket.entry.relay, []).append(HopClaim(tokens[-1], ticket))
    for a, b in itertools.combinations(tokens, 2):
        with pytest.raises(NotHopEquivocation):
            check_hop_equivocation(a, b, CHAIN_ID)
    if claims:
        chosen = [data.draw(st.sampled_from(c)) for c in claims.values()]
        assert overcredit(chosen) <= 0
        with pytest.raises(NotOvercredit):
            check_overcredit(chosen, CHAIN_ID)


def test_an_honest_connection_of_as_many_relays_as_a_pool_pays_proves_no_fraud() -> None:
    """A sender whose datagrams credit 64 relays in all, on overlapping paths: no choice
    of one entry per relay names more relays than a pool pays, nor credits more than revealed."""
    many = [PrivateKey.from_label(f"relay-{i}").address for i in range(MAX_CONNECTION_HOPS)]
    book = HopBook(b"k" * 32)
    deepest: dict[bytes, HopClaim] = {}
    for depth, path in enumerate((many[:40], many[24:], many[::3]), start=1):
        credit = book.plan(depth, path, PAYRATE)
        book.commit(credit)
        for ticket in credit.tickets:
            deepest[ticket.entry.relay] = HopClaim(token(depth, hop_root=credit.root), ticket)
    chosen = list(deepest.values())
    assert len(chosen) == MAX_CONNECTION_HOPS and excess_relays(chosen) == 0 and overcredit(chosen) <= 0
    with pytest.raises(NotOvercredit):
        check_overcredit(chosen, CHAIN_ID)


def test_entries_of_more_relays_than_a_pool_pays_are_an_overcredit() -> None:
    """One relay more than a pool pays, each credited one millionth of a unit under a token
    of depth 1: within the units revealed, yet no honest book signs it."""
    relays = [PrivateKey.from_label(f"relay-{i}").address for i in range(MAX_CONNECTION_HOPS + 1)]
    entries = [HopEntry(r, 1, bytes(16)) for r in relays]
    ids = sorted(hop_id(e) for e in entries)
    t = token(1, hop_root=hops_root(entries))
    hops = [HopClaim(t, HopTicket(e, merkle_proof(ids, ids.index(hop_id(e))))) for e in entries]
    assert overcredit(hops) < 0 and excess_relays(hops) == 1
    check_overcredit(hops, CHAIN_ID)
    with pytest.raises(NotOvercredit):  # as many relays as a pool pays
        check_overcredit(hops[:-1], CHAIN_ID)
    with pytest.raises(NotOvercredit):  # a relay counted twice makes no 65th
        check_overcredit([*hops[:-1], hops[0]], CHAIN_ID)


def test_two_tokens_of_one_depth_are_an_equivocation_whatever_differs() -> None:
    check_hop_equivocation(token(3, hop_root=EMPTY_ROOT), token(3, hop_root=bytes([1]) * 32), CHAIN_ID)
    check_hop_equivocation(token(3, datagram=b"one"), token(3, datagram=b"another"), CHAIN_ID)
    with pytest.raises(NotHopEquivocation):
        check_hop_equivocation(token(3), token(3), CHAIN_ID)


# --- what is signed for one chain proves nothing on another -------------------------------

OTHER_CHAIN = hash32(b"incentives: another chain")


def test_a_token_is_signed_for_one_chain() -> None:
    """A pool of the same owner and final hash has one id on every chain: the token's
    signature names the chain, and is refused on any other."""
    t = token(3)
    check_token_signature(t, OWNER.address, CHAIN_ID)
    with pytest.raises(TokenSignatureInvalid, match="this chain"):
        check_token_signature(t, OWNER.address, OTHER_CHAIN)
    elsewhere = issue_token(OWNER, OTHER_CHAIN, CHAIN, POOL, 3, datagram_digest(b"payload"), EMPTY_ROOT)
    assert elsewhere.token == t.token and elsewhere.signature != t.signature


def test_tokens_of_two_chains_at_one_depth_are_no_equivocation() -> None:
    """One token a depth on each of two chains (honest), or both of another chain's pool:
    neither is a proof here; both signed for this chain are."""
    here = token(3, datagram=b"on this chain")
    there = issue_token(OWNER, OTHER_CHAIN, CHAIN, POOL, 3, datagram_digest(b"on the other"), EMPTY_ROOT)
    with pytest.raises(TokenSignatureInvalid):
        check_hop_equivocation(here, there, CHAIN_ID)
    with pytest.raises(TokenSignatureInvalid):
        check_hop_equivocation(there, here, CHAIN_ID)
    drill = issue_token(OWNER, OTHER_CHAIN, CHAIN, POOL, 3, datagram_digest(b"a drill"), EMPTY_ROOT)
    with pytest.raises(TokenSignatureInvalid):
        check_hop_equivocation(there, drill, CHAIN_ID)
    check_hop_equivocation(there, drill, OTHER_CHAIN)
    entries = [HopEntry(r, 3 * PPM, bytes(16)) for r in RELAYS[:2]]
    foreign = [
        HopClaim(issue_token(OWNER, OTHER_CHAIN, CHAIN, POOL, 3, bytes(32), hops_root([e])), HopTicket(e, ()))
        for e in entries
    ]
    with pytest.raises(TokenSignatureInvalid):
        check_overcredit(foreign, CHAIN_ID)
    check_overcredit(foreign, OTHER_CHAIN)


def test_a_receivers_claim_is_signed_for_one_chain() -> None:
    receiver = PrivateKey.from_label("incentives-receiver")
    claim = sign_claim(receiver, CHAIN_ID, TransitClaim(token(3), bytes(32), receiver.public_key, 1))
    check_claim_signature(claim, CHAIN_ID)
    with pytest.raises(ClaimSignatureInvalid):
        check_claim_signature(claim, OTHER_CHAIN)


# --- who a proof rewards -------------------------------------------------------------------


def test_an_equivocations_beneficiary_is_a_relay_one_of_its_tokens_credits() -> None:
    entries = [HopEntry(r, PPM, bytes(16)) for r in RELAYS[:3]]
    ids = sorted(hop_id(e) for e in entries)
    first = token(3, hop_root=hops_root(entries))
    puppet = HopEntry(RELAYS[3], 3 * PPM, bytes(16))
    second = token(3, hop_root=hops_root([puppet]))
    for e in entries:
        ticket = HopTicket(e, merkle_proof(ids, ids.index(hop_id(e))))
        assert equivocation_beneficiary(first, second, ticket) == e.relay
    assert equivocation_beneficiary(first, second, HopTicket(puppet, ())) == RELAYS[3]
    assert equivocation_beneficiary(first, second, None) is None
    ticket = HopTicket(entries[0], merkle_proof(ids, ids.index(hop_id(entries[0]))))
    for forged in (
        HopTicket(msgspec.structs.replace(entries[0], relay=RELAYS[3]), ticket.proof),  # moved to another
        HopTicket(msgspec.structs.replace(entries[0], credit=2 * PPM), ticket.proof),  # raised
        HopTicket(HopEntry(RELAYS[3], PPM, bytes(16)), ()),  # made up
    ):
        with pytest.raises(HopBeneficiaryNotCredited):
            equivocation_beneficiary(first, second, forged)
    nothing = HopEntry(RELAYS[0], 0, bytes(16))
    with pytest.raises(HopBeneficiaryNotCredited):  # under a root, but credited nothing
        equivocation_beneficiary(first, token(3, hop_root=hops_root([nothing])), HopTicket(nothing, ()))


def test_an_overcredits_beneficiary_is_a_relay_its_entries_credit() -> None:
    entries = [HopEntry(r, 2 * PPM, bytes(16)) for r in RELAYS[:2]]
    hops = [HopClaim(token(3, hop_root=hops_root([e])), HopTicket(e, ())) for e in entries]
    assert overcredit_beneficiary(hops, RELAYS[1]) == RELAYS[1]
    assert overcredit_beneficiary(hops, None) is None
    with pytest.raises(HopBeneficiaryNotCredited):
        overcredit_beneficiary(hops, RELAYS[2])
    nothing = HopEntry(RELAYS[2], 0, bytes(16))
    with pytest.raises(HopBeneficiaryNotCredited):
        overcredit_beneficiary(
            [*hops, HopClaim(token(3, hop_root=hops_root([nothing])), HopTicket(nothing, ()))], RELAYS[2]
        )
