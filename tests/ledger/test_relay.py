"""Token pools and transit claims on chain: relays are paid their shares once per depth,
only with the receiver's signature; every rule broken asserts its named rejection."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.hashing import datagram_digest, pool_id
from gridnet.crypto.keys import Domain, PrivateKey
from gridnet.encoding import encode
from gridnet.errors import (
    ClaimSignatureInvalid,
    HopListBroken,
    PoolAlreadyRedeemed,
    PoolExpired,
    PoolNotExpired,
    TokenPreimageInvalid,
    TokenSignatureInvalid,
)
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.relay import POOLS, ClaimTransit, CreateTokenPool, ReclaimPool
from gridnet.relay.claims import SignedClaim, TransitClaim, sign_claim, token_digest
from gridnet.relay.hops import HopEntry, append_hop, hop_shares
from gridnet.relay.tokens import HashChain, SignedToken, issue_token
from tests.helpers import Actors, new_chain, test_params

OWNER, RECEIVER, STRANGER = (PrivateKey.from_label(f"relay-test-{n}") for n in ("owner", "receiver", "x"))
RELAYS = [PrivateKey.from_label(f"relay-test-hop-{i}") for i in range(3)]
CHAIN = HashChain(b"seed" * 8, 1_000)
POOL = pool_id(OWNER.address, CHAIN.final)
AMOUNT = 1_000 * 1_000  # 1,000 base units per hash
PAYRATE = 750_000  # p = 0.75


def token(depth: int, datagram: bytes = b"d") -> SignedToken:
    return issue_token(OWNER, CHAIN, POOL, depth, datagram_digest(datagram), PAYRATE)


def route(t: SignedToken, relays: list[PrivateKey] = RELAYS) -> tuple[HopEntry, ...]:
    hops: tuple[HopEntry, ...] = ()
    for here, nxt in itertools.pairwise([*relays, RECEIVER]):
        hops = append_hop(hops, here, nxt.address, token_digest(t))
    return hops


def claim(
    t: SignedToken, hops: tuple[HopEntry, ...] | None = None, signer: PrivateKey = RECEIVER
) -> SignedClaim:
    body = TransitClaim(t, route(t) if hops is None else hops, RECEIVER.public_key, datagrams=10)
    return sign_claim(signer, body)


@pytest.fixture
def net(tmp_path: Path) -> Actors:
    actors = Actors(
        new_chain(tmp_path / "c", test_params([OWNER, RECEIVER, STRANGER])), [OWNER, RECEIVER, STRANGER]
    )
    actors.mine(actors.tx(OWNER, CreateTokenPool(CHAIN.final, CHAIN.length, AMOUNT, expiry_height=20)))
    return actors


def balances(net: Actors) -> list[int]:
    return [net.chain.account(r.address).balance for r in RELAYS]


def test_a_claim_pays_each_relay_its_share_on_chain(net: Actors) -> None:
    before = balances(net)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(token(40)))))
    paid = [b - a for a, b in zip(before, balances(net), strict=True)]
    reward = 40 * 1_000
    expected = [s for _, s in hop_shares(reward, [r.address for r in RELAYS], PAYRATE)]
    assert paid == expected == [10_000, 7_500, 22_500]  # (1-p), p(1-p), p^2 of 40,000
    pool = net.chain.view().get(POOLS, POOL)
    assert pool is not None and pool.redeemed_depth == 40 and pool.paid == reward


def test_a_pool_redeemed_twice_for_the_same_depth_pays_only_new_depth(net: Actors) -> None:
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(token(40)))))
    assert isinstance(net.refused(RECEIVER, ClaimTransit(claim(token(40, b"again")))), PoolAlreadyRedeemed)
    before = balances(net)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(token(50)))))
    assert sum(balances(net)) - sum(before) == 10 * 1_000


def test_a_preimage_that_does_not_hash_to_the_pool(net: Actors) -> None:
    t = token(40)
    # Signed by the owner, but the preimage is one step short of the depth it claims.
    forged_token = msgspec.structs.replace(t.token, preimage=CHAIN.preimage(39))
    forged = SignedToken(forged_token, OWNER.sign(Domain.TOKEN, encode(forged_token)))
    assert isinstance(net.refused(RECEIVER, ClaimTransit(claim(forged))), TokenPreimageInvalid)


def test_a_token_not_signed_by_the_pool_owner(net: Actors) -> None:
    stolen = issue_token(STRANGER, CHAIN, POOL, 40, datagram_digest(b"d"), PAYRATE)
    assert isinstance(net.refused(RECEIVER, ClaimTransit(claim(stolen))), TokenSignatureInvalid)


def test_a_claim_without_the_receivers_signature(net: Actors) -> None:
    for forged in (
        claim(token(40), signer=STRANGER),
        msgspec.structs.replace(claim(token(40)), signature=bytes(64)),
    ):
        with pytest.raises(ClaimSignatureInvalid):
            validate_transaction(
                net.pending(STRANGER, ClaimTransit(forged)), net.chain.params, net.chain.chain_id
            )


def test_a_claim_with_a_hop_removed(net: Actors) -> None:
    t = token(40)
    hops = route(t)
    with pytest.raises(HopListBroken):
        tx = net.pending(RECEIVER, ClaimTransit(claim(t, (hops[0], hops[2]))))
        validate_transaction(tx, net.chain.params, net.chain.chain_id)


def test_reclaim_after_expiry_returns_what_was_not_paid(net: Actors) -> None:
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(token(100)))))
    assert isinstance(net.refused(OWNER, ReclaimPool(POOL)), PoolNotExpired)
    while net.chain.height < 20:
        net.mine()
    assert isinstance(net.refused(RECEIVER, ClaimTransit(claim(token(200)))), PoolExpired)
    before = net.chain.account(OWNER.address).balance
    reclaim = net.tx(OWNER, ReclaimPool(POOL))
    net.mine(reclaim)
    assert net.chain.account(OWNER.address).balance == before + AMOUNT - 100 * 1_000 - reclaim.fee
    assert net.chain.view().get(POOLS, POOL) is None
