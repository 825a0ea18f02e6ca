"""Token pools, transmission tokens, hop lists and payrate shares (pure rules)."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.crypto.hashing import datagram_digest, pool_id
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import HopListBroken, HopSignatureInvalid, TokenPreimageInvalid, TokenSignatureInvalid
from gridnet.relay.claims import token_digest
from gridnet.relay.hops import HopEntry, append_hop, hop_shares, verify_hops
from gridnet.relay.tokens import (
    PPM,
    HashChain,
    SignedToken,
    check_preimage,
    check_token_signature,
    issue_token,
)

OWNER = PrivateKey.from_label("pool-owner")
RELAYS = [PrivateKey.from_label(f"relay-{i}") for i in range(4)]
RECEIVER = PrivateKey.from_label("receiver")
CHAIN = HashChain(b"s" * 32, 50)
POOL = pool_id(OWNER.address, CHAIN.final)


def token(depth: int = 3, datagram: bytes = b"payload") -> SignedToken:
    return issue_token(OWNER, CHAIN, POOL, depth, datagram_digest(datagram), 750_000)


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


def test_a_token_moved_to_another_datagram() -> None:
    t = token(3)
    moved = msgspec.structs.replace(
        t,
        token=msgspec.structs.replace(t.token, datagram=datagram_digest(b"another")),
    )
    with pytest.raises(TokenSignatureInvalid):
        check_token_signature(moved, OWNER.address)
    with pytest.raises(TokenSignatureInvalid):  # a valid token, but not the pool owner's
        check_token_signature(t, RELAYS[0].address)


def hop_list(n: int = 3) -> tuple[HopEntry, ...]:
    digest = token_digest(token())
    hops: tuple[HopEntry, ...] = ()
    path = [*RELAYS[:n], RECEIVER]
    for here, nxt in itertools.pairwise(path):
        hops = append_hop(hops, here, nxt.address, digest)
    return hops


def test_an_intact_hop_list_names_every_hop() -> None:
    hops = hop_list(3)
    assert verify_hops(hops, token_digest(token())) == [r.address for r in RELAYS[:3]]


def test_a_hop_removed() -> None:
    hops = hop_list(3)
    with pytest.raises(HopListBroken):
        verify_hops((hops[0], hops[2]), token_digest(token()))


def test_a_hop_inserted_before_oneself() -> None:
    """Relay 2 rewrites the list to add its sock puppet before itself; relay 1's signed
    entry still names relay 2 as its next hop, and relay 2's entry chains to relay 1's."""
    digest = token_digest(token())
    honest = hop_list(3)
    puppet = PrivateKey.from_label("puppet")
    # The puppet's entry after relay 1, then relay 2 re-signs its own entry to chain to it.
    with_puppet = append_hop(honest[:1], puppet, RELAYS[1].address, digest)
    forged = append_hop(with_puppet, RELAYS[1], RELAYS[2].address, digest) + honest[2:]
    with pytest.raises(HopListBroken):
        verify_hops(forged, digest)


def test_a_forged_hop_signature() -> None:
    hops = hop_list(2)
    bad = msgspec.structs.replace(hops[1], signature=bytes(64))
    with pytest.raises(HopSignatureInvalid):
        verify_hops((hops[0], bad), token_digest(token()))


addresses = st.lists(st.sampled_from([bytes([i]) * 20 for i in range(6)]), min_size=1, max_size=10)
payrates = st.integers(0, PPM)
rewards = st.integers(0, 10**12)


@settings(max_examples=300, deadline=None)
@given(rewards, addresses, payrates)
def test_shares_always_sum_to_the_reward(reward: int, hops: list[bytes], p: int) -> None:
    assert sum(s for _, s in hop_shares(reward, hops, p)) == reward


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
