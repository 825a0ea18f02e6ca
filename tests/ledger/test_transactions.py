"""The transaction envelope: ids, signing for one chain, and the minimum fee."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.errors import FeeTooLow, MalformedTransaction, MisplacedCoinbase
from gridnet.identity import IdentityProof
from gridnet.ledger.chain import Chain
from gridnet.ledger.registry import Payload
from gridnet.ledger.transactions import min_fee, sign_transaction, tx_body, tx_id, tx_size
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.bond import Bond, Unbond
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.transfer import Transfer
from tests.helpers import new_chain, sign, test_keys, test_params
from tests.ledger.forge import coinbase_tx

KEYS = test_keys(2)
A, B = KEYS

payloads = st.one_of(
    st.builds(Transfer, to=st.just(B.address), amount=st.integers(1, 2**63 - 1)),
    st.builds(Bond, amount=st.integers(1, 2**63 - 1)),
    st.builds(Unbond, amount=st.integers(1, 2**63 - 1)),
    st.builds(
        RegisterIdentity,
        proof=st.builds(IdentityProof, rounds=st.integers(1, 64), nonce=st.integers(0, 2**32 - 1)),
    ),
)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    c = new_chain(tmp_path_factory.mktemp("tx") / "chain", test_params(KEYS))
    yield c
    c.close()


def test_signed_transaction_verifies_and_has_a_stable_id(chain: Chain) -> None:
    tx = sign(chain, A, Transfer(B.address, 5), 0)
    vtx = validate_transaction(tx, chain.params, chain.chain_id)
    assert vtx.sender == A.address
    assert vtx.txid == tx_id(tx)
    assert vtx.size == tx_size(tx_body(tx))
    # Any change to the body or the signature changes the id.
    assert tx_id(msgspec.structs.replace(tx, nonce=1)) != tx_id(tx)
    assert tx_id(msgspec.structs.replace(tx, fee=tx.fee + 1)) != tx_id(tx)
    assert tx_id(msgspec.structs.replace(tx, signature=bytes(64))) != tx_id(tx)


def test_coinbase_is_not_a_signed_transaction(chain: Chain) -> None:
    with pytest.raises(MisplacedCoinbase):
        validate_transaction(coinbase_tx(1, 0, 0), chain.params, chain.chain_id)


def test_missing_key_or_signature_is_malformed(chain: Chain) -> None:
    tx = sign(chain, A, Transfer(B.address, 5), 0)
    with pytest.raises(MalformedTransaction):
        validate_transaction(msgspec.structs.replace(tx, sender=b""), chain.params, chain.chain_id)
    with pytest.raises(MalformedTransaction):
        validate_transaction(
            msgspec.structs.replace(tx, signature=tx.signature[:63]), chain.params, chain.chain_id
        )


@pytest.mark.parametrize("payload", [Bond(0), Unbond(0), Transfer(B.address, 0)])
def test_zero_amounts_are_malformed(chain: Chain, payload: Payload) -> None:
    with pytest.raises(MalformedTransaction):
        validate_transaction(sign(chain, A, payload, 0), chain.params, chain.chain_id)


@settings(max_examples=40, deadline=None)
@given(payload=payloads, nonce=st.integers(0, 2**63 - 1), per_byte=st.integers(1, 1000))
def test_min_fee_for_a_nonce_is_the_least_fee_accepted(payload: Payload, nonce: int, per_byte: int) -> None:
    params = msgspec.structs.replace(test_params(KEYS), min_fee_per_byte=per_byte)
    chain_id = bytes(32)
    fee = min_fee(per_byte, payload, nonce)
    validate_transaction(sign_transaction(A, chain_id, payload, nonce, fee), params, chain_id)
    with pytest.raises(FeeTooLow):
        validate_transaction(sign_transaction(A, chain_id, payload, nonce, fee - 1), params, chain_id)


@settings(max_examples=40, deadline=None)
@given(payload=payloads, nonce=st.integers(0, 2**63 - 1))
def test_min_fee_without_a_nonce_suffices_at_every_nonce(payload: Payload, nonce: int) -> None:
    """A nonce >= 128 encodes in more bytes and the fee is charged per byte: a fee sized
    for nonce 0 was refused with FeeTooLow from an account's 129th transaction on."""
    params = test_params(KEYS)
    chain_id = bytes(32)
    fee = min_fee(params.min_fee_per_byte, payload)
    validate_transaction(sign_transaction(A, chain_id, payload, nonce, fee), params, chain_id)


def test_default_fee_is_accepted_past_nonce_127(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    payload = Transfer(B.address, 5)
    for nonce in (127, 128, 2**16, 2**32):
        validate_transaction(sign(chain, A, payload, nonce), chain.params, chain.chain_id)
    chain.close()
