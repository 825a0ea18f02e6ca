"""Identity proof-of-work (PROTOCOL.md 2): the puzzle, its overflow rule, and the ledger
rules of RegisterIdentity and Bond (each rejection written as a consensus vector)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.crypto.hashing import digest_int, identity_digest
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import (
    BlockTransactionInvalid,
    IdentityAlreadyRegistered,
    IdentityProofInsufficient,
    InvalidTransaction,
    UnknownIdentity,
    WorkNotFound,
)
from gridnet.identity import (
    MAX_ROUNDS,
    NONCE_LIMIT,
    IdentityProof,
    find_identity_proof,
    identity_work_digest,
    is_valid_identity_proof,
)
from gridnet.ledger.chain import Chain
from gridnet.ledger.state import IDENTITIES, Identity
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.txs.bond import Bond
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.units import UNITS_PER_GNC
from gridnet.work import target_from_bits, target_to_bytes
from tests.helpers import extend, new_chain, sign, test_keys, test_params
from tests.ledger.forge import forge_block
from tests.ledger.vectors import record_rejection, record_valid, snapshot

KEYS = test_keys(3)
A, B, C = KEYS


def first_solution(address: bytes, target: int, rounds: int, nonce: int = 0) -> int:
    """Brute force: the first nonce >= ``nonce`` that solves the puzzle at ``rounds``."""
    while digest_int(identity_work_digest(address, rounds, nonce)) >= target:
        nonce += 1
    return nonce


# --- the puzzle ---------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(address=st.binary(min_size=20, max_size=20), bits=st.integers(0, 8))
def test_found_proof_is_below_target_and_the_first_one(address: bytes, bits: int) -> None:
    target = target_from_bits(bits)
    proof = find_identity_proof(address, target)
    assert proof.rounds == 1
    assert is_valid_identity_proof(address, proof, target)
    assert digest_int(identity_work_digest(address, 1, proof.nonce)) < target
    assert proof.nonce == first_solution(address, target, 1)


def test_validity_is_strictly_below_the_target() -> None:
    address = A.address
    proof = IdentityProof(rounds=1, nonce=7)
    value = digest_int(identity_work_digest(address, 1, 7))
    assert not is_valid_identity_proof(address, proof, value)  # equal is not below
    assert is_valid_identity_proof(address, proof, value + 1)


def test_proof_is_bound_to_its_address() -> None:
    target = target_from_bits(8)
    proof = find_identity_proof(A.address, target)
    # Find (deterministically) an address for which A's proof does not work.
    others = [k.address for k in test_keys(20)[1:]]
    foreign = next(a for a in others if not is_valid_identity_proof(a, proof, target))
    assert is_valid_identity_proof(A.address, proof, target)
    assert not is_valid_identity_proof(foreign, proof, target)


def test_rounds_concatenate_the_address() -> None:
    assert identity_work_digest(A.address, 2, 5) != identity_work_digest(A.address, 1, 5)
    assert identity_work_digest(A.address, 3, 5) == identity_digest(A.address * 3 + (5).to_bytes(4, "big"))


def overflow_case(k: int, bits: int) -> tuple[PrivateKey, int]:
    """A labelled key whose last ``k`` nonces of round 1 all miss ``bits`` (deterministic)."""
    target = target_from_bits(bits)
    for i in range(100):
        key = PrivateKey.from_label(f"identity-overflow-{i}")
        if all(
            digest_int(identity_work_digest(key.address, 1, n)) >= target
            for n in range(NONCE_LIMIT - k, NONCE_LIMIT)
        ):
            return key, target
    raise AssertionError("no overflow case among 100 labels")


def test_nonce_overflow_concatenates_the_address_once_more(tmp_path: Path) -> None:
    k = 64
    key, target = overflow_case(k, bits=8)
    proof = find_identity_proof(key.address, target, start=IdentityProof(rounds=1, nonce=NONCE_LIMIT - k))
    assert proof.rounds == 2
    assert proof.nonce == first_solution(key.address, target, 2)
    assert is_valid_identity_proof(key.address, proof, target)
    # The overflow proof is accepted on chain like any other.
    params = test_params([key], identity_target=target_to_bytes(target))
    chain = new_chain(tmp_path / "c", params)
    extend(chain, [sign(chain, key, RegisterIdentity(proof), 0)])
    assert chain.view().get(IDENTITIES, key.address) == Identity(proof=proof, registered_at=1)
    chain.close()


def test_search_gives_up_after_max_attempts_and_after_max_rounds() -> None:
    with pytest.raises(WorkNotFound, match="no identity proof found in 100 attempts"):
        find_identity_proof(A.address, 0, max_attempts=100)
    with pytest.raises(WorkNotFound, match=f"found in 3 attempts: every nonce of the {MAX_ROUNDS} rounds"):
        find_identity_proof(A.address, 0, start=IdentityProof(rounds=MAX_ROUNDS, nonce=NONCE_LIMIT - 3))


# --- on chain ---------------------------------------------------------------------------------------


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    c = new_chain(tmp_path / "chain", test_params(KEYS))
    yield c
    c.close()


def reject_tx(
    chain: Chain,
    txs: list[Transaction],
    error: type[InvalidTransaction],
    name: str,
    description: str,
    index: int = 1,
) -> None:
    block = forge_block(chain, txs)
    pre = snapshot(chain)
    head = chain.head.hash
    now = block.header.timestamp
    with pytest.raises(BlockTransactionInvalid) as info:
        chain.add_block(block, now=now)
    assert info.value.rule == error.__name__
    assert type(info.value.error) is error
    assert info.value.index == index
    assert chain.head.hash == head
    record_rejection(name, description, pre, block, now, info.value)


def proof_for(chain: Chain, key: PrivateKey) -> IdentityProof:
    return find_identity_proof(key.address, chain.params.identity_target_int)


def failing_proof(chain: Chain, key: PrivateKey) -> IdentityProof:
    """The first nonce (round 1) whose digest does NOT reach the chain's identity target."""
    target = chain.params.identity_target_int
    nonce = 0
    while digest_int(identity_work_digest(key.address, 1, nonce)) < target:
        nonce += 1
    proof = IdentityProof(rounds=1, nonce=nonce)
    assert not is_valid_identity_proof(key.address, proof, target)
    return proof


def test_registration_stores_the_proof(chain: Chain) -> None:
    proof = proof_for(chain, A)
    tx = sign(chain, A, RegisterIdentity(proof), 0)
    pre = snapshot(chain)
    block = forge_block(chain, [tx])
    chain.add_block(block, now=block.header.timestamp)
    record_valid(
        "register_identity",
        "A registers its identity proof-of-work",
        pre,
        block,
        block.header.timestamp,
        chain,
    )
    assert chain.view().get(IDENTITIES, A.address) == Identity(proof=proof, registered_at=1)


def test_proof_below_target_is_rejected(chain: Chain) -> None:
    tx = sign(chain, A, RegisterIdentity(failing_proof(chain, A)), 0)
    reject_tx(
        chain,
        [tx],
        IdentityProofInsufficient,
        "identity_proof_insufficient",
        "RegisterIdentity with a nonce whose digest is not below the identity target",
    )
    assert chain.view().get(IDENTITIES, A.address) is None


def test_proof_of_another_address_is_rejected(chain: Chain) -> None:
    target = chain.params.identity_target_int
    stolen = next(
        proof
        for proof in (proof_for(chain, k) for k in test_keys(20)[1:])
        if not is_valid_identity_proof(A.address, proof, target)
    )
    reject_tx(
        chain,
        [sign(chain, A, RegisterIdentity(stolen), 0)],
        IdentityProofInsufficient,
        "identity_proof_stolen",
        "A registers a proof solved for another address",
    )


def test_registering_twice_is_rejected(chain: Chain) -> None:
    extend(chain, [sign(chain, A, RegisterIdentity(proof_for(chain, A)), 0)])
    again = sign(chain, A, RegisterIdentity(proof_for(chain, A)), 1)
    reject_tx(
        chain,
        [again],
        IdentityAlreadyRegistered,
        "identity_already_registered",
        "A registers again after its identity is on chain",
    )


def test_registering_twice_in_one_block_is_rejected(chain: Chain) -> None:
    proof = proof_for(chain, B)
    first, second = sign(chain, B, RegisterIdentity(proof), 0), sign(chain, B, RegisterIdentity(proof), 1)
    reject_tx(
        chain,
        [first, second],
        IdentityAlreadyRegistered,
        "identity_registered_twice_in_block",
        "B registers twice in the same block",
        index=2,
    )


def test_bond_without_identity_is_rejected(chain: Chain) -> None:
    reject_tx(
        chain,
        [sign(chain, C, Bond(5 * UNITS_PER_GNC), 0)],
        UnknownIdentity,
        "bond_without_identity",
        "C bonds coin without a registered identity",
    )
    extend(
        chain,
        [
            sign(chain, C, RegisterIdentity(proof_for(chain, C)), 0),
            sign(chain, C, Bond(5 * UNITS_PER_GNC), 1),
        ],
    )
    assert chain.account(C.address).bonded == 5 * UNITS_PER_GNC
