"""A relay carries no datagram of a pool that has expired, or that expires before the claims
paying for carrying it can be mined (``PoolExpiring``, ``POOL_EXPIRY_MARGIN``).

The red team's attack: a pool created to expire at the block after next (the earliest
``CreateTokenPool`` takes) stays on chain until its owner reclaims it, and relays carried its
tokens; yet neither the receiver nor any relay could claim on it (``PoolExpired``), and the
owner reclaimed the whole amount: its datagrams were carried for nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gridnet.crypto.hashing import pool_id
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import PoolExpired, PoolExpiring, PoolNotExpired
from gridnet.identity import find_identity_proof
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.txs.relay import POOLS, ChainRelayView, ClaimTransit, CreateTokenPool, ReclaimPool
from gridnet.relay.claims import TransitClaim, sign_claim
from gridnet.relay.datagram import (
    POOL_EXPIRY_MARGIN,
    Datagram,
    Delivered,
    Envelope,
    Forwarded,
    Inbox,
    Relay,
    envelope_receipt,
    originate,
)
from gridnet.relay.hops import HopBook, hop_shares
from gridnet.relay.tokens import HashChain
from gridnet.units import Hash32
from tests.helpers import Actors, new_chain, register_identity, test_params

SENDER, RECEIVER = (PrivateKey.from_label(f"expiry-{n}") for n in ("s", "r"))
RELAYS = [PrivateKey.from_label(f"expiry-relay-{i}") for i in range(2)]
PAYRATE = 750_000
LENGTH = 100
AMOUNT = 100_000
"""Base units locked in each pool: 1,000 per hash."""


@pytest.fixture
def net(tmp_path: Path) -> Actors:
    people = [SENDER, RECEIVER, *RELAYS]
    a = Actors(new_chain(tmp_path / "c", test_params(people)), people)
    a.mine(*(a.tx(k, register_identity(a.chain, k).payload) for k in people))
    return a


def pool_tx(net: Actors, expiry: int) -> tuple[HashChain, Hash32, Transaction]:
    """A new pool of ``SENDER``'s expiring at height ``expiry``: its hashes, id and transaction."""
    hashes = HashChain(os.urandom(32), LENGTH)
    tx = net.tx(SENDER, CreateTokenPool(hashes.final, LENGTH, AMOUNT, expiry_height=expiry))
    return hashes, pool_id(SENDER.address, hashes.final), tx


def datagram(
    net: Actors,
    hashes: HashChain,
    pool: Hash32,
    depth: int,
    relays: list[PrivateKey] = RELAYS,
    book: HopBook | None = None,
    nonce: bytes | None = None,
) -> Datagram:
    identity = find_identity_proof(SENDER.address, net.chain.params.identity_target_int)
    path = [(r.address, r.public_key) for r in relays]
    receiver = (RECEIVER.address, RECEIVER.public_key)
    return originate(
        SENDER,
        hashes,
        pool,
        depth,
        PAYRATE,
        identity,
        path,
        receiver,
        b"an order",
        nonce or os.urandom(16),
        book=book,
        chain_id=net.chain.chain_id,
    )


def view(net: Actors) -> ChainRelayView:
    return ChainRelayView.of(net.chain)


def carry(net: Actors, dgram: Datagram, relays: list[Relay]) -> Delivered:
    by_address = {r.key.address: r for r in relays} | {RECEIVER.address: Relay(RECEIVER, view(net))}
    outcome = relays[0].handle(dgram)
    while isinstance(outcome, Forwarded):
        outcome = by_address[outcome.next_hop].handle(outcome.datagram)
    return outcome


def mine_until(net: Actors, height: int) -> None:
    while net.chain.height < height:
        net.mine()


def test_relays_carry_no_datagram_of_an_expired_pool(net: Actors) -> None:
    """The red team's pool: created in the next block to expire at the one after. Expired, it
    is still on chain, and no claim on it can be mined: the first relay refuses its datagram,
    and so does a receiver it is sent to directly. Nothing of it is kept."""
    h = net.chain.height
    hashes, pool, tx = pool_tx(net, h + 2)
    net.mine(tx)
    net.mine()  # the head is at its expiry: expired, on chain until reclaimed
    assert net.chain.view().get(POOLS, pool) is not None
    first = Relay(RELAYS[0], view(net))
    with pytest.raises(PoolExpiring, match=f"expired at height {h + 2}"):
        first.handle(datagram(net, hashes, pool, 50))
    receiver = Relay(RECEIVER, view(net))
    with pytest.raises(PoolExpiring, match="expired"):
        receiver.handle(datagram(net, hashes, pool, 50, relays=[]))
    assert (first.anchors, first.seen, first.hop_claims, receiver.anchors) == ({}, {}, {}, {})
    # (why: a receiver that had delivered it could not claim, and its owner takes it all back)
    nonce = os.urandom(16)
    token = datagram(net, hashes, pool, 50, relays=[], nonce=nonce).token
    receipt = envelope_receipt(encode(Envelope(nonce, b"an order")))
    claim = sign_claim(RECEIVER, net.chain.chain_id, TransitClaim(token, receipt, RECEIVER.public_key, 1))
    assert isinstance(net.refused(RECEIVER, ClaimTransit(claim)), PoolExpired)


def test_relays_carry_no_datagram_of_a_pool_about_to_expire(net: Actors) -> None:
    """A pool whose last block to take claims is the next one: not expired yet (its owner
    cannot reclaim it), but no second round of claims (the relays', after the receiver's)
    could be mined: refused, as the earliest expiry ``CreateTokenPool`` takes leaves it."""
    h = net.chain.height
    hashes, pool, tx = pool_tx(net, h + 3)
    net.mine(tx)  # head h + 1: block h + 2 is the last that takes claims
    assert isinstance(net.refused(SENDER, ReclaimPool(pool)), PoolNotExpired)
    with pytest.raises(PoolExpiring, match="in 1 more block"):
        Relay(RELAYS[0], view(net)).handle(datagram(net, hashes, pool, 1))


def test_the_margin_boundary_and_claims_that_land_within_it(net: Actors) -> None:
    """At a head of height H a relay carries a pool expiring above H + ``POOL_EXPIRY_MARGIN``
    (claims can be mined in the margin's every block after H), and refuses one expiring at
    H + margin; a block later the first is refused too. What was carried at the boundary is
    paid: the receiver's claim mined in the last block but one that takes claims, the hop
    claims in the last; the owner reclaims only what the relays were not paid."""
    h = net.chain.height
    head = h + 1
    short_hashes, short, short_tx = pool_tx(net, head + POOL_EXPIRY_MARGIN)
    hashes, pool, tx = pool_tx(net, head + POOL_EXPIRY_MARGIN + 1)
    net.mine(short_tx, tx)
    assert net.chain.height == head
    relays = [Relay(k, view(net)) for k in RELAYS]
    with pytest.raises(PoolExpiring, match=f"in {POOL_EXPIRY_MARGIN - 1} more block"):
        relays[0].check(datagram(net, short_hashes, short, 1))
    book, inbox = HopBook(os.urandom(32)), Inbox(RECEIVER, net.chain.chain_id)
    inbox.record(carry(net, datagram(net, hashes, pool, 40, book=book), relays))
    net.mine()
    relays[0].view = view(net)
    with pytest.raises(PoolExpiring, match=f"in {POOL_EXPIRY_MARGIN - 1} more block"):
        relays[0].check(datagram(net, hashes, pool, 41, book=book))
    expiry = head + POOL_EXPIRY_MARGIN + 1
    mine_until(net, expiry - 3)
    (claim,) = inbox.close()
    net.mine(net.tx(RECEIVER, ClaimTransit(claim)))  # block expiry - 2
    hop_txs = []
    for r in relays:
        r.view = view(net)
        (hop_claim,) = r.collectable()
        hop_txs.append(net.tx(r.key, ClaimTransit(None, (hop_claim,))))
    before = [net.chain.account(k.address).balance for k in RELAYS]
    net.mine(*hop_txs)  # block expiry - 1: the last that takes claims
    assert net.chain.height == expiry - 1
    paid = [
        net.chain.account(k.address).balance - b + t.fee
        for k, b, t in zip(RELAYS, before, hop_txs, strict=True)
    ]
    assert paid == [s for _, s in hop_shares(40 * AMOUNT // LENGTH, [k.address for k in RELAYS], PAYRATE)]
    reclaim = net.tx(SENDER, ReclaimPool(pool))
    owner = net.chain.account(SENDER.address).balance
    net.mine(reclaim)
    assert net.chain.account(SENDER.address).balance - owner + reclaim.fee == AMOUNT - sum(paid)
