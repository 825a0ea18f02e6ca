"""A relaying participant: what it drops after a datagram's checks (no route to its next
hop) does not use up the datagram's depth there, nor earn it a hop claim."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gridnet.crypto.hashing import pool_id
from gridnet.crypto.keys import PrivateKey
from gridnet.identity import find_identity_proof
from gridnet.ledger.txs.relay import ChainRelayView, CreateTokenPool, ReclaimPool
from gridnet.node import relay_peer
from gridnet.node.messages import DatagramMsg
from gridnet.node.relay_peer import RelayPeer
from gridnet.relay.datagram import POOL_EXPIRY_MARGIN, Datagram, originate
from gridnet.relay.hops import HopBook
from gridnet.relay.onion import peel
from gridnet.relay.tokens import HashChain
from gridnet.units import Address
from tests.helpers import Actors, new_chain, register_identity, test_params

SENDER, RECEIVER = (PrivateKey.from_label(f"peer-{n}") for n in ("s", "r"))
RELAYS = [PrivateKey.from_label(f"peer-relay-{i}") for i in range(2)]
CHAIN = HashChain(os.urandom(32), 500)
POOL = pool_id(SENDER.address, CHAIN.final)
NAMES = {RELAYS[0].address: "r0", RELAYS[1].address: "r1", RECEIVER.address: "receiver"}


@pytest.fixture
def net(tmp_path: Path) -> Actors:
    people = [SENDER, RECEIVER, *RELAYS]
    a = Actors(new_chain(tmp_path / "c", test_params(people)), people)
    a.mine(*(a.tx(k, register_identity(a.chain, k).payload) for k in people))
    a.mine(
        a.tx(
            SENDER, CreateTokenPool(CHAIN.final, CHAIN.length, 500_000, expiry_height=50 + POOL_EXPIRY_MARGIN)
        )
    )
    return a


def stream(net: Actors, count: int) -> list[Datagram]:
    book = HopBook(os.urandom(32))
    identity = find_identity_proof(SENDER.address, net.chain.params.identity_target_int)
    path = [(r.address, r.public_key) for r in RELAYS]
    receiver = (RECEIVER.address, RECEIVER.public_key)
    return [
        originate(
            SENDER,
            CHAIN,
            POOL,
            d,
            750_000,
            identity,
            path,
            receiver,
            b"x",
            os.urandom(16),
            book=book,
            chain_id=net.chain.chain_id,
        )
        for d in range(1, count + 1)
    ]


def relay(net: Actors, directory: dict[Address, str]) -> RelayPeer:
    return RelayPeer("r0", RELAYS[0], lambda: ChainRelayView.of(net.chain), directory.get)


def kept_depths(peer: RelayPeer) -> list[int]:
    return sorted(c.token.token.depth for c in peer._relay.hop_claims.get(POOL, ()))


def test_a_datagram_dropped_as_carrier_full_keeps_its_depth_and_earns_no_claim(
    net: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_peer, "MAX_HELD", 1)
    first, second = stream(net, 2)
    peer = relay(net, NAMES)  # r1 is known but not a neighbour: held
    assert peer.handle("sender", DatagramMsg(first), 0) == [] and len(peer.held) == 1
    assert peer.handle("sender", DatagramMsg(second), 0) == []
    assert peer.stats.dropped == {"CarrierFull": 1} and kept_depths(peer) == [1]
    peer.add_peer("r1")
    assert [name for name, _ in peer.tick(0)] == ["r1"]  # the held one goes: room again
    assert peer.handle("sender", DatagramMsg(second), 0) == [("r1", DatagramMsg(peel_once(second)))]
    assert peer.stats.dropped == {"CarrierFull": 1} and kept_depths(peer) == [1, 2]


def test_a_datagram_dropped_for_an_unknown_next_hop_keeps_its_depth_and_earns_no_claim(
    net: Actors,
) -> None:
    (dgram,) = stream(net, 1)
    directory = {RELAYS[0].address: "r0"}  # r1 not (yet) in the directory
    peer = relay(net, directory)
    peer.add_peer("r1")
    assert peer.handle("sender", DatagramMsg(dgram), 0) == []
    assert peer.stats.dropped == {"UnknownNextHop": 1} and kept_depths(peer) == []
    directory[RELAYS[1].address] = "r1"
    assert peer.handle("sender", DatagramMsg(dgram), 0) == [("r1", DatagramMsg(peel_once(dgram)))]
    assert peer.stats.dropped == {"UnknownNextHop": 1} and kept_depths(peer) == [1]


def peel_once(dgram: Datagram) -> Datagram:
    return Datagram(dgram.token, dgram.identity, peel(RELAYS[0], dgram.onion).inner)


def test_a_relaying_participant_forgets_a_pool_reclaimed_on_its_next_tick(net: Actors) -> None:
    (dgram,) = stream(net, 1)
    peer = relay(net, NAMES)
    peer.add_peer("r1")
    assert len(peer.handle("sender", DatagramMsg(dgram), 0)) == 1 and kept_depths(peer) == [1]
    peer.tick(0)  # the pool is on chain: kept
    assert kept_depths(peer) == [1] and POOL in peer._relay.seen
    while net.chain.head.header.height < 50 + POOL_EXPIRY_MARGIN:
        net.mine()
    net.mine(net.tx(SENDER, ReclaimPool(POOL)))
    peer.tick(relay_peer.PRUNE_EVERY_MS)
    assert kept_depths(peer) == [] and POOL not in peer._relay.seen and POOL not in peer._relay.anchors


def test_a_receiver_keeps_its_deliveries_within_a_byte_bound_and_without_their_onions(
    net: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Datagrams of 60 KiB straight to the receiver: it keeps the latest that fit in
    MAX_RECEIVED_BYTES (the oldest go first), each without the receiver's layer it opened."""
    monkeypatch.setattr(relay_peer, "MAX_RECEIVED_BYTES", 200_000)
    identity = find_identity_proof(SENDER.address, net.chain.params.identity_target_int)
    receiver = (RECEIVER.address, RECEIVER.public_key)
    book = HopBook(os.urandom(32))
    peer = RelayPeer("receiver", RECEIVER, lambda: ChainRelayView.of(net.chain), NAMES.get)
    for depth in range(1, 6):
        body = bytes([depth]) * 60_000
        dgram = originate(
            SENDER,
            CHAIN,
            POOL,
            depth,
            750_000,
            identity,
            [],
            receiver,
            body,
            os.urandom(16),
            book=book,
            chain_id=net.chain.chain_id,
        )
        peer.handle("sender", DatagramMsg(dgram), 0)
    assert peer.stats.delivered == 5
    assert [d.envelope.body[0] for d in peer.received] == [3, 4, 5]  # 3 x ~60.4 kB fit in 200 kB
    assert all(d.datagram.onion == b"" for d in peer.received)
    assert peer.received.bytes <= 200_000
    peer.received.clear()
    assert len(peer.received) == 0 and peer.received.bytes == 0


def test_a_sender_is_told_its_pool_expires_too_soon_and_sends_nothing(net: Actors) -> None:
    """A datagram of a pool every relay would refuse (``PoolExpiring``: claims on it can be
    mined in fewer than ``POOL_EXPIRY_MARGIN`` more blocks) is not sent: the sender's
    participant drops and counts it (the node's API answers 422 with the rule), so its sender
    learns it must pay from a new pool; one of a pool with life enough goes."""
    hashes = HashChain(os.urandom(32), 100)
    expiry = net.chain.height + 1 + POOL_EXPIRY_MARGIN  # one block short, once mined
    net.mine(net.tx(SENDER, CreateTokenPool(hashes.final, hashes.length, 100_000, expiry_height=expiry)))
    identity = find_identity_proof(SENDER.address, net.chain.params.identity_target_int)
    path = [(r.address, r.public_key) for r in RELAYS]
    receiver = (RECEIVER.address, RECEIVER.public_key)
    short = originate(
        SENDER,
        hashes,
        pool_id(SENDER.address, hashes.final),
        1,
        750_000,
        identity,
        path,
        receiver,
        b"x",
        os.urandom(16),
        chain_id=net.chain.chain_id,
    )
    sender = RelayPeer("sender", SENDER, lambda: ChainRelayView.of(net.chain), NAMES.get)
    sender.add_peer("r0")
    assert sender.send(RELAYS[0].address, short) == [] and sender.held == []
    assert sender.stats.dropped == {"PoolExpiring": 1}
    (fresh,) = stream(net, 1)  # the fixture's pool: life enough
    assert sender.send(RELAYS[0].address, fresh) == [("r0", DatagramMsg(fresh))]
    assert sender.stats.dropped == {"PoolExpiring": 1}
