"""A pool owner's hash chain: every preimage it reveals is the chain's, in any order, though
it keeps only checkpoints and one expanded segment."""

from __future__ import annotations

import random

import pytest

from gridnet.crypto.hashing import token_chain_step
from gridnet.relay.tokens import CHECKPOINT_EVERY, HashChain


def full_chain(seed: bytes, length: int) -> list[bytes]:
    chain = [seed]
    for _ in range(length):
        chain.append(token_chain_step(chain[-1]))
    return chain


@pytest.mark.parametrize(
    "length", [1, 2, CHECKPOINT_EVERY - 1, CHECKPOINT_EVERY, CHECKPOINT_EVERY + 1, 2 * CHECKPOINT_EVERY, 3136]
)
def test_every_preimage_is_the_chains_at_its_depth_in_any_order(length: int) -> None:
    seed = bytes([length % 256]) * 32
    full = full_chain(seed, length)
    chain = HashChain(seed, length)
    assert chain.final == full[-1]
    depths = list(range(length + 1))
    assert [chain.preimage(d) for d in depths] == [full[length - d] for d in depths]
    random.Random(length).shuffle(depths)
    assert [chain.preimage(d) for d in depths] == [full[length - d] for d in depths]


def test_a_depth_outside_the_pool_is_refused() -> None:
    chain = HashChain(b"s" * 32, 10)
    for depth in (-1, 11):
        with pytest.raises(ValueError, match="outside the pool"):
            chain.preimage(depth)
    with pytest.raises(ValueError):
        HashChain(b"s" * 32, 0)


def test_the_chain_keeps_checkpoints_not_every_hash() -> None:
    chain = HashChain(b"s" * 32, 3136)
    chain.preimage(5)
    kept = len(chain._checkpoints) + len(chain._expanded)
    assert kept <= 3136 // CHECKPOINT_EVERY + 1 + CHECKPOINT_EVERY
