"""Datagrams through relays: each relay checks the originator's stake, peels its layer,
checks the token and signs its hop; the receiver's one claim pays every relay on chain."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.hashing import pool_id
from gridnet.crypto.keys import Domain, PrivateKey
from gridnet.encoding import encode
from gridnet.errors import (
    FlaggedOriginator,
    HopListBroken,
    OnionTampered,
    TokenNotForDatagram,
    TokenPreimageInvalid,
    TokenReplayed,
    UnregisteredOriginator,
)
from gridnet.identity import IdentityProof, find_identity_proof
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.authority import PublishFlag, RegisterAuthority
from gridnet.ledger.txs.relay import ChainRelayView, ClaimTransit, CreateTokenPool
from gridnet.relay import datagram
from gridnet.relay.datagram import Datagram, Delivered, Forwarded, Inbox, Relay, originate
from gridnet.relay.hops import hop_shares
from gridnet.relay.tokens import HashChain, SignedToken
from gridnet.security.roles import FlagTarget, Role
from tests.helpers import Actors, new_chain, register_identity, test_params

SENDER, RECEIVER, LAB, STRANGER = (PrivateKey.from_label(f"dgram-{n}") for n in ("s", "r", "lab", "x"))
RELAYS = [PrivateKey.from_label(f"dgram-relay-{i}") for i in range(3)]
CHAIN = HashChain(os.urandom(32), 500)
POOL = pool_id(SENDER.address, CHAIN.final)
PAYRATE = 750_000


@pytest.fixture
def net(tmp_path: Path) -> Actors:
    people = [SENDER, RECEIVER, LAB, STRANGER]
    a = Actors(new_chain(tmp_path / "c", test_params(people)), people)
    a.mine(*(a.tx(k, register_identity(a.chain, k).payload) for k in (SENDER, LAB)))
    a.mine(
        a.tx(SENDER, CreateTokenPool(CHAIN.final, CHAIN.length, 500_000, expiry_height=50)),
        a.tx(LAB, RegisterAuthority(int(Role.SECURITY), "Lab")),
    )
    return a


def proof(chain: Chain, key: PrivateKey) -> IdentityProof:
    return find_identity_proof(key.address, chain.params.identity_target_int)


def send(net: Actors, depth: int, body: bytes = b"an order", key: PrivateKey = SENDER) -> Datagram:
    path = [(r.address, r.public_key) for r in RELAYS]
    return originate(
        key,
        CHAIN,
        POOL,
        depth,
        PAYRATE,
        proof(net.chain, key),
        path,  # type: ignore[arg-type]
        (RECEIVER.address, RECEIVER.public_key),
        body,
        os.urandom(16),
    )


def carry(net: Actors, dgram: Datagram, relays: list[Relay] | None = None) -> Delivered:
    view = ChainRelayView(net.chain.view())
    relays = relays or [Relay(k, view) for k in RELAYS]
    by_address = {r.key.address: r for r in relays} | {RECEIVER.address: Relay(RECEIVER, view)}
    outcome = relays[0].handle(dgram)
    while isinstance(outcome, Forwarded):
        outcome = by_address[outcome.next_hop].handle(outcome.datagram)
    return outcome


def test_three_relays_carry_a_stream_and_one_claim_pays_them_on_chain(net: Actors) -> None:
    view = ChainRelayView(net.chain.view())
    relays = [Relay(k, view) for k in RELAYS]
    inbox = Inbox(RECEIVER)
    for n in range(1, 21):  # 20 datagrams, each committing 2 more units
        delivered = carry(net, send(net, 2 * n, f"order {n}".encode()), relays)
        assert delivered.envelope.body == f"order {n}".encode()
        assert len(delivered.datagram.hops) == 3
        inbox.record(delivered)
    (claim,) = inbox.close()
    assert claim.claim.datagrams == 20
    before = [net.chain.account(k.address).balance for k in RELAYS]
    net.mine(net.tx(RECEIVER, ClaimTransit(claim)))
    paid = [net.chain.account(k.address).balance - b for k, b in zip(RELAYS, before, strict=True)]
    assert paid == [s for _, s in hop_shares(40 * 1_000, [k.address for k in RELAYS], PAYRATE)]
    assert sum(paid) == 40 * 1_000  # 40 units of 1,000 base units, all to the relays


def test_a_datagram_from_an_unregistered_identity_is_dropped(net: Actors) -> None:
    with pytest.raises(UnregisteredOriginator):
        carry(net, send(net, 1, key=STRANGER))


def test_a_flagged_originator_is_dropped_only_by_relays_that_trust_the_flagger(net: Actors) -> None:
    net.mine(net.tx(LAB, PublishFlag(int(FlagTarget.IDENTITY), SENDER.address, "spam", True)))
    view = ChainRelayView(net.chain.view())
    with pytest.raises(FlaggedOriginator):
        Relay(RELAYS[0], view, trusted_flaggers=frozenset({LAB.address})).handle(send(net, 1))
    assert isinstance(Relay(RELAYS[0], view).handle(send(net, 1)), Forwarded)


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
        carry(net, stolen)


def test_a_replayed_datagram_is_refused(net: Actors) -> None:
    view = ChainRelayView(net.chain.view())
    relay = Relay(RELAYS[0], view)
    dgram = send(net, 3)
    relay.handle(dgram)
    with pytest.raises(TokenReplayed):
        relay.handle(dgram)


def test_a_datagram_overtaken_on_the_way_is_still_carried_once(net: Actors) -> None:
    view = ChainRelayView(net.chain.view())
    relay = Relay(RELAYS[0], view)
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
        good, token=SignedToken(bad_token, SENDER.sign(Domain.TOKEN, encode(bad_token)))
    )
    with pytest.raises(TokenPreimageInvalid):
        relay.handle(bad)


def test_a_token_beyond_its_pool_or_too_far_to_hash_is_refused(
    net: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = ChainRelayView(net.chain.view())
    beyond = send(net, 3)
    deep = msgspec.structs.replace(beyond.token.token, depth=CHAIN.length + 1)
    forged = msgspec.structs.replace(beyond, token=SignedToken(deep, SENDER.sign(Domain.TOKEN, encode(deep))))
    with pytest.raises(TokenPreimageInvalid):
        Relay(RELAYS[0], view).handle(forged)
    monkeypatch.setattr(datagram, "MAX_RELAY_STEPS", 5)
    with pytest.raises(TokenPreimageInvalid):  # would cost the relay 10 hashes
        Relay(RELAYS[0], view).handle(send(net, 10))


def test_a_hop_list_broken_on_the_way_is_caught_by_the_receiver(net: Actors) -> None:
    view = ChainRelayView(net.chain.view())
    first = Relay(RELAYS[0], view).handle(send(net, 1))
    assert isinstance(first, Forwarded)
    second = Relay(RELAYS[1], view).handle(first.datagram)
    assert isinstance(second, Forwarded)
    # The third relay drops the first relay's entry before appending its own.
    tampered = msgspec.structs.replace(second.datagram, hops=second.datagram.hops[1:])
    third = Relay(RELAYS[2], view).handle(tampered)
    assert isinstance(third, Forwarded)
    with pytest.raises(HopListBroken):
        Relay(RECEIVER, view).handle(third.datagram)


def test_depths_a_relay_forgot_stay_refused(net: Actors, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datagram, "MAX_SEEN", 2)
    relay = Relay(RELAYS[0], ChainRelayView(net.chain.view()))
    old = send(net, 1)
    for dgram in (old, send(net, 2), send(net, 3)):
        relay.handle(dgram)
    with pytest.raises(TokenReplayed):
        relay.handle(old)
