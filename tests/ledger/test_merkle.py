"""Merkle inclusion proofs: what a light client (a meter owner's device) checks."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.ledger.merkle import EMPTY_ROOT, MerkleStep, merkle_proof, merkle_root, verify_merkle_proof
from gridnet.ledger.transactions import tx_id
from gridnet.ledger.txs.transfer import Transfer
from tests.helpers import extend, new_chain, sign, test_keys, test_params

ids = st.binary(min_size=32, max_size=32)
id_lists = st.lists(ids, min_size=1, max_size=40, unique=True)
SETTINGS = settings(max_examples=30, deadline=None)


@SETTINGS
@given(id_lists)
def test_every_index_has_a_proof_that_verifies(items: list[bytes]) -> None:
    root = merkle_root(items)
    for i, item in enumerate(items):
        proof = merkle_proof(items, i)
        assert len(proof) <= max(1, len(items) - 1).bit_length()
        assert verify_merkle_proof(root, item, proof)


@SETTINGS
@given(items=id_lists, data=st.data())
def test_proof_for_one_id_fails_for_another(items: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(items) - 1), label="index")
    other = data.draw(ids.filter(lambda x: x != items[i]), label="other")
    proof = merkle_proof(items, i)
    assert not verify_merkle_proof(merkle_root(items), other, proof)
    for j, item in enumerate(items):
        if j != i:
            assert not verify_merkle_proof(merkle_root(items), item, proof)


@SETTINGS
@given(items=id_lists.filter(lambda x: len(x) >= 2), data=st.data())
def test_tampered_proof_fails(items: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(items) - 1), label="index")
    proof = list(merkle_proof(items, i))
    root = merkle_root(items)
    step = data.draw(st.integers(0, len(proof) - 1), label="step")
    byte = data.draw(st.integers(0, 31), label="byte")
    flip = data.draw(st.integers(1, 255), label="flip")
    sibling = bytearray(proof[step].sibling)
    sibling[byte] ^= flip
    tampered = [*proof]
    tampered[step] = MerkleStep(bytes(sibling), proof[step].sibling_is_left)
    assert not verify_merkle_proof(root, items[i], tampered)
    # Swapping the side of a step also fails, as does dropping or adding a step.
    swapped = [*proof]
    swapped[step] = msgspec.structs.replace(proof[step], sibling_is_left=not proof[step].sibling_is_left)
    assert not verify_merkle_proof(root, items[i], swapped)
    assert not verify_merkle_proof(root, items[i], proof[:-1])
    assert not verify_merkle_proof(root, items[i], [*proof, proof[-1]])


@SETTINGS
@given(a=id_lists, b=id_lists)
def test_different_lists_have_different_roots(a: list[bytes], b: list[bytes]) -> None:
    if a != b:
        assert merkle_root(a) != merkle_root(b)


def test_odd_leaf_is_promoted_not_duplicated() -> None:
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])
    assert merkle_root([a]) != a  # leaves are hashed
    assert merkle_root([]) == EMPTY_ROOT
    assert merkle_proof([a], 0) == ()
    assert verify_merkle_proof(merkle_root([a]), a, ())


def test_index_out_of_range_is_an_error() -> None:
    with pytest.raises(IndexError):
        merkle_proof([bytes(32)], 1)
    with pytest.raises(IndexError):
        merkle_proof([], 0)


def test_light_client_checks_a_transaction_against_a_mined_header(tmp_path: Path) -> None:
    keys = test_keys(3)
    chain = new_chain(tmp_path / "c", test_params(keys))
    txs = [sign(chain, keys[n % 3], Transfer(keys[(n + 1) % 3].address, 10 + n), n // 3) for n in range(7)]
    block = extend(chain, txs)
    tids = [tx_id(t) for t in block.txs]
    # The light client holds only the header (and trusts its proof-of-work).
    header = chain.block_at(1).header  # type: ignore[union-attr]
    for i, t in enumerate(block.txs):
        assert verify_merkle_proof(header.tx_root, tx_id(t), merkle_proof(tids, i))
    foreign = sign(chain, keys[0], Transfer(keys[1].address, 999), 5)
    assert not verify_merkle_proof(header.tx_root, tx_id(foreign), merkle_proof(tids, 1))
    chain.close()
