"""Datagrams through relays: each relay checks the originator's stake, peels its layer,
checks the token and its own hop entry, and forwards only to a registered next hop. No
relay sees another's entry and the receiver sees none; the receiver's claim proves the
delivery, each relay's hop claim pays it on chain."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.boxes import seal
from gridnet.crypto.hashing import hash32, pool_id
from gridnet.crypto.keys import Domain, PrivateKey
from gridnet.encoding import encode
from gridnet.errors import (
    FlaggedOriginator,
    HopEntryInvalid,
    IdentityStakeMismatch,
    OnionTampered,
    TokenNotForDatagram,
    TokenPreimageInvalid,
    TokenReplayed,
    TokenSignatureInvalid,
    UnregisteredNextHop,
    UnregisteredOriginator,
)
from gridnet.identity import IdentityProof, find_identity_proof
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.authority import PublishFlag, RegisterAuthority
from gridnet.ledger.txs.relay import POOLS, ChainRelayView, ClaimTransit, CreateTokenPool, ReclaimPool
from gridnet.relay import datagram
from gridnet.relay.claims import HopClaim
from gridnet.relay.datagram import POOL_EXPIRY_MARGIN, Datagram, Delivered, Forwarded, Inbox, Relay, originate
from gridnet.relay.hops import HopBook, HopEntry, HopTicket, hop_shares
from gridnet.relay.onion import Layer, peel
from gridnet.relay.tokens import PPM, HashChain, SignedToken
from gridnet.security.roles import FlagTarget, Role
from gridnet.units import Address
from tests.helpers import Actors, new_chain, register_identity, test_params

SENDER, RECEIVER, LAB, STRANGER = (PrivateKey.from_label(f"dgram-{n}") for n in ("s", "r", "lab", "x"))
RELAYS = [PrivateKey.from_label(f"dgram-relay-{i}") for i in range(3)]
PUPPET = PrivateKey.from_label("dgram-puppet")
CHAIN = HashChain(os.urandom(32), 500)
POOL = pool_id(SENDER.address, CHAIN.final)
PAYRATE = 750_000
UNIT = 1_000
"""Base units per pool hash (500,000 over 500 hashes)."""
EXPIRY = 50 + POOL_EXPIRY_MARGIN
"""The pools' expiry height: far enough for relays to carry their datagrams from the start."""


@pytest.fixture
def net(tmp_path: Path) -> Actors:
    people = [SENDER, RECEIVER, LAB, STRANGER, PUPPET, *RELAYS]
    a = Actors(new_chain(tmp_path / "c", test_params(people)), people)
    a.mine(*(a.tx(k, register_identity(a.chain, k).payload) for k in (SENDER, LAB, RECEIVER, *RELAYS)))
    a.mine(
        a.tx(SENDER, CreateTokenPool(CHAIN.final, CHAIN.length, 500 * UNIT, expiry_height=EXPIRY)),
        a.tx(LAB, RegisterAuthority(int(Role.SECURITY), "Lab")),
    )
    return a


def proof(chain: Chain, key: PrivateKey) -> IdentityProof:
    return find_identity_proof(key.address, chain.params.identity_target_int)


def send(
    net: Actors,
    depth: int,
    body: bytes = b"an order",
    key: PrivateKey = SENDER,
    book: HopBook | None = None,
    relays: list[PrivateKey] = RELAYS,
    chain_id: bytes | None = None,
) -> Datagram:
    """``key``'s datagram at ``depth`` of the pool, signed for ``net``'s chain (or ``chain_id``)."""
    path = [(r.address, r.public_key) for r in relays]
    receiver = (RECEIVER.address, RECEIVER.public_key)
    return originate(
        key,
        CHAIN,
        POOL,
        depth,
        PAYRATE,
        proof(net.chain, key),
        path,
        receiver,
        body,
        os.urandom(16),
        book=book,
        chain_id=net.chain.chain_id if chain_id is None else chain_id,
    )


def view(net: Actors) -> ChainRelayView:
    return ChainRelayView.of(net.chain)


def carry(net: Actors, dgram: Datagram, relays: list[Relay] | None = None) -> Delivered:
    relays = relays or [Relay(k, view(net)) for k in RELAYS]
    by_address = {r.key.address: r for r in relays} | {RECEIVER.address: Relay(RECEIVER, view(net))}
    outcome = relays[0].handle(dgram)
    while isinstance(outcome, Forwarded):
        outcome = by_address[outcome.next_hop].handle(outcome.datagram)
    return outcome


def balances(net: Actors, keys: list[PrivateKey]) -> list[int]:
    return [net.chain.account(k.address).balance for k in keys]


def collect(net: Actors, relays: list[Relay]) -> list[int]:
    """Each relay claims what the chain pays it now; returns what each was paid."""
    before = balances(net, [r.key for r in relays])
    txs = []
    for r in relays:
        r.view = view(net)
        (hop_claim,) = r.collectable()
        txs.append(net.tx(r.key, ClaimTransit(None, (hop_claim,))))
    net.mine(*txs)
    after = balances(net, [r.key for r in relays])
    return [b - a + tx.fee for a, b, tx in zip(before, after, txs, strict=True)]


def test_three_relays_carry_a_stream_and_their_claims_pay_them_on_chain(net: Actors) -> None:
    relays = [Relay(k, view(net)) for k in RELAYS]
    inbox, book = Inbox(RECEIVER, net.chain.chain_id), HopBook(os.urandom(32))
    for n in range(1, 21):  # 20 datagrams, each committing 2 more units
        delivered = carry(net, send(net, 2 * n, f"order {n}".encode(), book=book), relays)
        assert delivered.envelope.body == f"order {n}".encode()
        inbox.record(delivered)
    (claim,) = inbox.close()
    assert claim.claim.datagrams == 20 and claim.claim.token.token.depth == 40
    net.mine(net.tx(RECEIVER, ClaimTransit(claim)))
    paid = collect(net, relays)
    assert paid == [s for _, s in hop_shares(40 * UNIT, [k.address for k in RELAYS], PAYRATE)]
    assert sum(paid) == 40 * UNIT  # 40 units of 1,000 base units, all to the relays
    for r in relays:  # paid once: nothing more to claim
        r.view = view(net)
        assert r.collectable() == []


def test_a_stream_over_changing_paths_pays_each_relay_its_own_datagrams(net: Actors) -> None:
    """The connection's claim pays per-relay totals: each datagram's units shared along the
    path that datagram took, not the last path for everything."""
    book = HopBook(os.urandom(32))
    relays = [Relay(k, view(net)) for k in RELAYS]
    inbox = Inbox(RECEIVER, net.chain.chain_id)
    routes = [RELAYS, RELAYS[1:], RELAYS, RELAYS[:1]]
    for depth, route in enumerate(routes, start=1):
        hops = [r for r in relays if r.key in route]
        inbox.record(carry(net, send(net, depth, book=book, relays=route), hops))
    (claim,) = inbox.close()
    net.mine(net.tx(RECEIVER, ClaimTransit(claim)))
    owed: dict[Address, int] = {}
    for route in routes:
        for relay, share in hop_shares(PPM, [k.address for k in route], PAYRATE):
            owed[relay] = owed.get(relay, 0) + share
    assert collect(net, relays) == [owed[k.address] * UNIT // PPM for k in RELAYS]


def test_no_relay_sees_another_relays_entry_and_the_receiver_sees_none(net: Actors) -> None:
    """What each relay is handed and what it finds in its layer names no hop but itself and
    its successor; what the receiver gets names no relay at all."""
    relays = [Relay(k, view(net)) for k in RELAYS]
    keys = [*RELAYS, RECEIVER]
    names = {k.address: [k.address, k.public_key] for k in keys}
    outcome: Forwarded | Delivered | None = None
    for i, relay in enumerate([*relays, Relay(RECEIVER, view(net))]):
        assert outcome is None or isinstance(outcome, Forwarded)
        dgram = send(net, 1) if outcome is None else outcome.datagram
        handed = encode(dgram)
        layer = peel(relay.key, dgram.onion)
        seen = handed + encode(Layer(layer.next_hop or bytes(20), layer.hop, b""))
        allowed = {keys[i].address, keys[i + 1].address} if i < len(RELAYS) else {RECEIVER.address}
        for address, ids in names.items():
            if address not in allowed:
                assert all(x not in seen for x in ids), f"hop {i} learns of {address.hex()}"
        outcome = relay.handle(dgram)
    assert isinstance(outcome, Delivered)
    received = encode(outcome.datagram) + encode(outcome.envelope) + outcome.receipt
    assert all(x not in received for k in RELAYS for x in (k.address, k.public_key))


def test_a_datagram_from_an_unregistered_identity_is_dropped(net: Actors) -> None:
    with pytest.raises(UnregisteredOriginator):
        carry(net, send(net, 1, key=STRANGER))


def test_a_datagram_carrying_another_identity_proof_than_the_registered_one_is_dropped(net: Actors) -> None:
    """The stake a relay checks is the originator's registered proof: another registered
    identity's proof, or a second valid proof of the sender's own address, does not stand
    in for it."""
    registered = proof(net.chain, SENDER)
    target = net.chain.params.identity_target_int
    start = IdentityProof(rounds=registered.rounds, nonce=registered.nonce + 1)
    second_own = find_identity_proof(SENDER.address, target, start=start)
    assert second_own != registered
    for identity in (proof(net.chain, RELAYS[0]), second_own):
        dgram = msgspec.structs.replace(send(net, 1), identity=identity)
        with pytest.raises(IdentityStakeMismatch, match="another identity proof than the registered one"):
            Relay(RELAYS[0], view(net)).handle(dgram)
    assert isinstance(Relay(RELAYS[0], view(net)).handle(send(net, 1)), Forwarded)


def test_a_flagged_originator_is_dropped_only_by_relays_that_trust_the_flagger(net: Actors) -> None:
    net.mine(net.tx(LAB, PublishFlag(int(FlagTarget.IDENTITY), SENDER.address, "spam", True)))
    with pytest.raises(FlaggedOriginator):
        Relay(RELAYS[0], view(net), trusted_flaggers=frozenset({LAB.address})).handle(send(net, 1))
    assert isinstance(Relay(RELAYS[0], view(net)).handle(send(net, 1)), Forwarded)


def test_a_relay_never_extends_a_path_to_an_unregistered_next_hop(net: Actors) -> None:
    """The sender routed through a key with no identity (no stake): the relay before it
    refuses to forward, whether that key is a relay or the receiver."""
    with pytest.raises(UnregisteredNextHop):
        carry(net, send(net, 1, relays=[RELAYS[0], PUPPET, RELAYS[1]]))
    to_stranger = originate(
        SENDER,
        CHAIN,
        POOL,
        2,
        PAYRATE,
        proof(net.chain, SENDER),
        [(RELAYS[0].address, RELAYS[0].public_key)],
        (STRANGER.address, STRANGER.public_key),
        b"to nobody",
        os.urandom(16),
        chain_id=net.chain.chain_id,
    )
    with pytest.raises(UnregisteredNextHop):
        Relay(RELAYS[0], view(net)).handle(to_stranger)


def test_an_artificial_intermediary_earns_nothing_and_costs_the_later_hops_nothing(net: Actors) -> None:
    """Relay 0 inserts a registered puppet of its own before relay 1: it wraps what it
    should forward in a layer for the puppet, with a hop entry it made up. An honest puppet
    would refuse the entry; this one forwards anyway. The delivery is claimed; relays 1 and
    2 get exactly what the sender credits them, and the puppet's claim is refused."""
    net.mine(net.tx(PUPPET, register_identity(net.chain, PUPPET).payload))
    dgram = send(net, 10)
    first = Relay(RELAYS[0], view(net))
    outcome = first.handle(dgram)
    assert isinstance(outcome, Forwarded) and outcome.next_hop == RELAYS[1].address
    ticket = first.hop_claims[POOL][-1].ticket
    made_up = HopTicket(HopEntry(PUPPET.address, ticket.entry.credit, ticket.entry.salt), ticket.proof)
    layer = Layer(RELAYS[1].address, made_up, outcome.datagram.onion)
    detour = msgspec.structs.replace(outcome.datagram, onion=seal(PUPPET.public_key, encode(layer)))
    with pytest.raises(HopEntryInvalid):
        Relay(PUPPET, view(net)).handle(detour)
    rest = [Relay(k, view(net)) for k in RELAYS[1:]]
    inbox = Inbox(RECEIVER, net.chain.chain_id)
    inbox.record(carry(net, peel_for_puppet(detour), rest))
    (claim,) = inbox.close()
    net.mine(net.tx(RECEIVER, ClaimTransit(claim)))
    shares = hop_shares(10 * UNIT, [k.address for k in RELAYS], PAYRATE)
    assert collect(net, rest) == [s for _, s in shares[1:]]  # as if the puppet were not there
    forged = HopClaim(dgram.token, made_up)
    with pytest.raises(HopEntryInvalid):
        net.refused(PUPPET, ClaimTransit(None, (forged,)))


def peel_for_puppet(detour: Datagram) -> Datagram:
    """What the puppet forwards: the inner onion, as if it had checked nothing."""
    return msgspec.structs.replace(detour, onion=peel(PUPPET, detour.onion).inner)


def test_a_layer_without_this_relays_hop_entry_is_refused(net: Actors) -> None:
    """The sender credits relay 0 nothing (no ticket), or hands it another relay's ticket."""
    book = HopBook(os.urandom(32))
    credit = book.plan(1, [k.address for k in RELAYS], PAYRATE)
    dgram = send(net, 1)
    hop = (RELAYS[0].address, RELAYS[0].public_key)
    for ticket in (None, credit.tickets[1]):
        layer = Layer(RELAYS[1].address, ticket, b"the rest")
        bad = msgspec.structs.replace(dgram, onion=seal(hop[1], encode(layer)))
        with pytest.raises(HopEntryInvalid):
            Relay(RELAYS[0], view(net)).handle(bad)


def test_a_relay_cannot_change_the_hop_entries_the_sender_signed(net: Actors) -> None:
    """A relay that puts another hop root into the token (to credit itself more) breaks the
    sender's signature at the next hop."""
    outcome = Relay(RELAYS[0], view(net)).handle(send(net, 1))
    assert isinstance(outcome, Forwarded)
    token = outcome.datagram.token
    altered = msgspec.structs.replace(token, token=msgspec.structs.replace(token.token, hop_root=bytes(32)))
    with pytest.raises(TokenSignatureInvalid):
        Relay(RELAYS[1], view(net)).handle(msgspec.structs.replace(outcome.datagram, token=altered))


def test_a_tampered_onion_layer(net: Actors) -> None:
    dgram = send(net, 1)
    onion = bytearray(dgram.onion)
    onion[len(onion) // 2] ^= 1
    with pytest.raises(OnionTampered):
        carry(net, msgspec.structs.replace(dgram, onion=bytes(onion)))


def test_a_token_moved_to_another_datagram_is_caught_by_the_receiver(net: Actors) -> None:
    victim, thief = send(net, 5, b"paid for"), send(net, 6, b"free ride")
    # The thief's datagram carries the victim's (valid, signed) token.
    stolen = msgspec.structs.replace(thief, token=victim.token)
    with pytest.raises(TokenNotForDatagram):
        Relay(RECEIVER, view(net)).handle(
            msgspec.structs.replace(stolen, onion=peel_all(stolen.onion, RELAYS))
        )


def peel_all(onion: bytes, keys: list[PrivateKey]) -> bytes:
    for key in keys:
        onion = peel(key, onion).inner
    return onion


def test_a_replayed_datagram_is_refused(net: Actors) -> None:
    relay = Relay(RELAYS[0], view(net))
    dgram = send(net, 3)
    relay.handle(dgram)
    with pytest.raises(TokenReplayed):
        relay.handle(dgram)


def test_a_datagram_overtaken_on_the_way_is_still_carried_once(net: Actors) -> None:
    relay = Relay(RELAYS[0], view(net))
    first, second = send(net, 1), send(net, 2)
    assert isinstance(relay.handle(second), Forwarded)  # the later datagram arrives first
    assert isinstance(relay.handle(first), Forwarded)  # the earlier one still checks out
    with pytest.raises(TokenReplayed):
        relay.handle(first)
    # An overtaken token whose preimage is not on the pool's chain is refused.
    good = send(net, 3)
    relay.handle(send(net, 4))
    bad_token = msgspec.structs.replace(good.token.token, preimage=CHAIN.preimage(2))
    bad = msgspec.structs.replace(
        good, token=SignedToken(bad_token, SENDER.sign(Domain.TOKEN, net.chain.chain_id + encode(bad_token)))
    )
    with pytest.raises(TokenPreimageInvalid):
        relay.handle(bad)


def test_a_token_signed_for_another_chain_is_refused(net: Actors) -> None:
    """The sender's pool has the same id on another chain (same owner, same final hash): a
    token it signed there is not carried here, neither by a relay nor by the receiver, and
    nothing of it is kept."""
    elsewhere = hash32(b"another genesis")
    relay, receiver = Relay(RELAYS[0], view(net)), Relay(RECEIVER, view(net))
    with pytest.raises(TokenSignatureInvalid, match="this chain"):
        relay.handle(send(net, 1, chain_id=elsewhere))
    with pytest.raises(TokenSignatureInvalid):
        receiver.handle(send(net, 1, relays=[], chain_id=elsewhere))
    assert (relay.anchors, relay.seen, relay.hop_claims, receiver.anchors) == ({}, {}, {}, {})
    assert isinstance(relay.handle(send(net, 1)), Forwarded)


def test_a_token_beyond_its_pool_or_too_far_to_hash_is_refused(
    net: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    beyond = send(net, 3)
    deep = msgspec.structs.replace(beyond.token.token, depth=CHAIN.length + 1)
    forged = msgspec.structs.replace(
        beyond, token=SignedToken(deep, SENDER.sign(Domain.TOKEN, net.chain.chain_id + encode(deep)))
    )
    with pytest.raises(TokenPreimageInvalid):
        Relay(RELAYS[0], view(net)).handle(forged)
    monkeypatch.setattr(datagram, "MAX_RELAY_STEPS", 5)
    with pytest.raises(TokenPreimageInvalid):  # would cost the relay 10 hashes
        Relay(RELAYS[0], view(net)).handle(send(net, 10))


def test_depths_a_relay_forgot_stay_refused(net: Actors, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datagram, "MAX_SEEN", 2)
    relay = Relay(RELAYS[0], view(net))
    old = send(net, 1)
    for dgram in (old, send(net, 2), send(net, 3)):
        relay.handle(dgram)
    with pytest.raises(TokenReplayed):
        relay.handle(old)


def test_a_relay_keeps_its_latest_hop_claims_and_claims_the_deepest_delivered(
    net: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Datagrams 4 and 5 are still on their way when the receiver claims depth 3: the relay
    claims its entry at depth 3; of five evenly spaced claims it drops the shallowest."""
    monkeypatch.setattr(datagram, "MAX_KEPT_HOP_CLAIMS", 4)
    book = HopBook(os.urandom(32))
    relays = [Relay(k, view(net)) for k in RELAYS]
    inbox = Inbox(RECEIVER, net.chain.chain_id)
    for depth in range(1, 4):
        inbox.record(carry(net, send(net, depth, book=book), relays))
    for depth in (4, 5):
        relays[0].handle(send(net, depth, book=book))
    assert [c.token.token.depth for c in relays[0].hop_claims[POOL]] == [2, 3, 4, 5]
    (claim,) = inbox.close()
    net.mine(net.tx(RECEIVER, ClaimTransit(claim)))
    relays[0].view = view(net)
    (hop_claim,) = relays[0].collectable()
    assert hop_claim.token.token.depth == 3


def test_a_relay_checks_against_the_chains_anchor_once_the_receivers_claimed_past_its_own(
    net: Actors,
) -> None:
    """Relay 0 carried depth 1 and was then away while the connection went on over other
    relays to depth 4,000, claimed: a token at 5,000 is 1,000 hashes from the chain's anchor,
    though 4,999 (more than MAX_RELAY_STEPS) from relay 0's."""
    long_chain = HashChain(os.urandom(32), 6_000)
    long_pool = pool_id(SENDER.address, long_chain.final)
    net.mine(
        net.tx(SENDER, CreateTokenPool(long_chain.final, long_chain.length, 6_000, expiry_height=EXPIRY))
    )
    book, inbox = HopBook(os.urandom(32)), Inbox(RECEIVER, net.chain.chain_id)

    def stream(depth: int, route: list[PrivateKey]) -> Datagram:
        path = [(r.address, r.public_key) for r in route]
        receiver = (RECEIVER.address, RECEIVER.public_key)
        identity = proof(net.chain, SENDER)
        return originate(
            SENDER,
            long_chain,
            long_pool,
            depth,
            PAYRATE,
            identity,
            path,
            receiver,
            b"x",
            os.urandom(16),
            book=book,
            chain_id=net.chain.chain_id,
        )

    away = Relay(RELAYS[0], view(net))
    inbox.record(carry(net, stream(1, RELAYS[:2]), [away, Relay(RELAYS[1], view(net))]))
    others = [Relay(k, view(net)) for k in RELAYS[1:]]
    inbox.record(carry(net, stream(4_000, RELAYS[1:]), others))
    (claim,) = inbox.close()
    net.mine(net.tx(RECEIVER, ClaimTransit(claim)))
    away.view = view(net)
    assert isinstance(away.handle(stream(5_000, RELAYS[:2])), Forwarded)


def test_a_relay_keeps_hop_claims_spread_over_the_depths_a_receiver_may_claim(
    net: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay after relay 0 delivers depths 1 to 24 and drops 25 to 40: relay 0 keeps 8
    claims spread over 1 to 40 (not the last 8, all beyond what the receiver claims), so it
    claims one within 2 x 40 / 7 depths of the 24 delivered; once paid, what it keeps at or
    below the redeemed depth is dropped."""
    monkeypatch.setattr(datagram, "MAX_KEPT_HOP_CLAIMS", 8)
    book = HopBook(os.urandom(32))
    relays = [Relay(k, view(net)) for k in RELAYS]
    inbox = Inbox(RECEIVER, net.chain.chain_id)
    for depth in range(1, 41):
        dgram = send(net, depth, book=book)
        if depth <= 24:
            inbox.record(carry(net, dgram, relays))
        else:
            relays[0].handle(dgram)
    kept = [c.token.token.depth for c in relays[0].hop_claims[POOL]]
    assert len(kept) == 8 and kept[-1] == 40 and kept == sorted(kept)
    (claim,) = inbox.close()
    net.mine(net.tx(RECEIVER, ClaimTransit(claim)))
    relays[0].view = view(net)
    (hop_claim,) = relays[0].collectable()
    assert 24 - 2 * 40 / 7 <= hop_claim.token.token.depth <= 24
    net.mine(net.tx(RELAYS[0], ClaimTransit(None, (hop_claim,))))
    relays[0].view = view(net)
    relays[0].handle(send(net, 41, book=book))
    assert all(c.token.token.depth > 24 for c in relays[0].hop_claims[POOL])  # paid: dropped


def test_a_relay_forgets_a_pool_gone_from_chain_and_what_a_claim_made_useless(net: Actors) -> None:
    """Relay 0 carried 30 datagrams of a pool: the receiver's claim of depth 20 leaves it the
    depths above 20 and one hop claim at or below; once the relay is paid and the pool
    reclaimed after expiry, nothing of the pool is left."""
    book = HopBook(os.urandom(32))
    relays = [Relay(k, view(net)) for k in RELAYS]
    inbox = Inbox(RECEIVER, net.chain.chain_id)
    for depth in range(1, 31):
        delivered = carry(net, send(net, depth, book=book), relays)
        if depth <= 20:
            inbox.record(delivered)
    (claim,) = inbox.close()
    net.mine(net.tx(RECEIVER, ClaimTransit(claim)))
    first = relays[0]
    first.view = view(net)
    first.prune()
    assert first.seen[POOL] == set(range(21, 31)) and first.anchors[POOL][0] == 30
    assert [c.token.token.depth for c in first.hop_claims[POOL]][:2] == [20, 21]
    (hop_claim,) = first.collectable()
    net.mine(net.tx(RELAYS[0], ClaimTransit(None, (hop_claim,))))
    first.view = view(net)
    first.prune()
    assert first.hop_claims[POOL][0].token.token.depth == 21  # paid: dropped
    while net.chain.head.header.height < EXPIRY:
        net.mine()
    net.mine(net.tx(SENDER, ReclaimPool(POOL)))
    first.view = view(net)
    first.prune()
    assert (first.anchors, first.seen, first.floors, first.hop_claims) == ({}, {}, {}, {})


def test_a_connection_deeper_than_one_claim_reveals_is_claimed_in_steps(net: Actors) -> None:
    """The sender reveals 4,096 units a datagram (as deep as a relay hashes), 102,400 in all:
    more than one claim reveals (MAX_CLAIM_UNITS). The receiver keeps stepping stones and
    signs a claim per stone, each within 100,000 units of the one before: mined in order, they
    redeem the whole connection and the relays are paid all they carried."""
    long_chain = HashChain(os.urandom(32), 110_000)
    long_pool = pool_id(SENDER.address, long_chain.final)
    net.mine(
        net.tx(SENDER, CreateTokenPool(long_chain.final, long_chain.length, 110_000, expiry_height=EXPIRY))
    )
    book, inbox = HopBook(os.urandom(32)), Inbox(RECEIVER, net.chain.chain_id)
    relays = [Relay(k, view(net)) for k in RELAYS]
    path = [(r.address, r.public_key) for r in RELAYS]
    receiver, identity = (RECEIVER.address, RECEIVER.public_key), proof(net.chain, SENDER)
    by_address = {r.key.address: r for r in relays} | {RECEIVER.address: Relay(RECEIVER, view(net))}
    for n in range(1, 26):
        dgram = originate(
            SENDER,
            long_chain,
            long_pool,
            4_096 * n,
            PAYRATE,
            identity,
            path,
            receiver,
            b"x",
            os.urandom(16),
            book=book,
            chain_id=net.chain.chain_id,
        )
        outcome = relays[0].handle(dgram)
        while isinstance(outcome, Forwarded):
            outcome = by_address[outcome.next_hop].handle(outcome.datagram)
        inbox.record(outcome)
    claims = inbox.close()
    assert [c.claim.token.token.depth for c in claims] == [98_304, 102_400]
    assert sum(c.claim.datagrams for c in claims) == 25
    net.mine(*(net.tx(RECEIVER, ClaimTransit(c)) for c in claims))
    pool = net.chain.view().get(POOLS, long_pool)
    assert pool is not None and pool.redeemed_depth == 102_400
    before = balances(net, RELAYS)
    txs = []
    for r in relays:
        r.view = view(net)
        (hop_claim,) = r.collectable()
        txs.append(net.tx(r.key, ClaimTransit(None, (hop_claim,))))
    net.mine(*txs)
    paid = [b - a + tx.fee for a, b, tx in zip(before, balances(net, RELAYS), txs, strict=True)]
    assert paid == [s for _, s in hop_shares(102_400, [k.address for k in RELAYS], PAYRATE)]


def test_stepping_stones_bridge_datagrams_that_arrive_out_of_order(net: Actors) -> None:
    """Stones are kept as few as the claims allow, whatever order datagrams arrive in."""
    inbox = Inbox(RECEIVER, net.chain.chain_id)
    token = send(net, 1).token

    def at(depth: int) -> Delivered:
        t = msgspec.structs.replace(token.token, depth=depth)
        dgram = Datagram(SignedToken(t, token.signature), proof(net.chain, SENDER), b"")
        return Delivered(datagram.Envelope(bytes(16), b""), dgram, bytes(32), 0)

    for depth in (150_000, 50_000, 120_000, 90_000, 30_000, 160_000):
        inbox.record(at(depth))
    stones = inbox.connections[POOL].stones
    assert [s.token.token.depth for s in stones] == [90_000, 160_000]
    assert sum(s.datagrams for s in stones) == 6
