"""Canonical encoding: round trips, and each way bytes can be wrong rejected by name."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.encoding import decode, decode_lenient, encode
from gridnet.errors import (
    DecodeError,
    Malformed,
    NonCanonicalEncoding,
    Oversize,
    TrailingBytes,
    UnknownField,
    WrongType,
)
from gridnet.identity import MAX_ROUNDS, IdentityProof
from gridnet.ledger.blocks import Block, Header
from gridnet.ledger.params import ChainParams
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.txs.bond import Bond, Unbond
from gridnet.ledger.txs.coinbase import Coinbase
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.transfer import Transfer
from tests.helpers import test_keys, test_params

U63_MAX = 2**63 - 1
u63 = st.integers(0, U63_MAX)
u32 = st.integers(0, 2**32 - 1)
addresses = st.binary(min_size=20, max_size=20)
hashes = st.binary(min_size=32, max_size=32)
proofs = st.builds(IdentityProof, rounds=st.integers(1, MAX_ROUNDS), nonce=u32)
payloads = st.one_of(
    st.builds(Coinbase, height=u63, reward=u63, fees=u63),
    st.builds(Transfer, to=addresses, amount=u63),
    st.builds(RegisterIdentity, proof=proofs),
    st.builds(Bond, amount=u63),
    st.builds(Unbond, amount=u63),
)
transactions = st.builds(
    Transaction,
    payload=payloads,
    sender=st.binary(max_size=32),
    nonce=u63,
    fee=u63,
    signature=st.binary(max_size=64),
)
headers = st.builds(
    Header,
    version=u32,
    height=u63,
    prev_hash=hashes,
    tx_root=hashes,
    state_root=hashes,
    timestamp=u63,
    target=hashes,
    nonce=u63,
    miner=addresses,
)
blocks = st.builds(Block, header=headers, txs=st.lists(transactions, max_size=4).map(tuple))

SETTINGS = settings(max_examples=60, deadline=None)


def fields_of(tx: Transaction) -> list[bytes]:
    """The encoded elements of a transaction's array, in order."""
    return [encode(tx.payload), encode(tx.sender), encode(tx.nonce), encode(tx.fee), encode(tx.signature)]


def array(elements: list[bytes], header: bytes | None = None) -> bytes:
    assert len(elements) < 16
    return (bytes([0x90 | len(elements)]) if header is None else header) + b"".join(elements)


def wider_uints(n: int) -> list[bytes]:
    """Every MessagePack encoding of the non-negative ``n`` except the canonical one."""
    forms = []
    if n < 2**8:
        forms.append(b"\xcc" + struct.pack(">B", n))
    if n < 2**16:
        forms.append(b"\xcd" + struct.pack(">H", n))
    if n < 2**32:
        forms.append(b"\xce" + struct.pack(">I", n))
    forms.append(b"\xcf" + struct.pack(">Q", n))
    if n < 2**7:
        forms.append(b"\xd0" + struct.pack(">b", n))
    if n < 2**15:
        forms.append(b"\xd1" + struct.pack(">h", n))
    if n < 2**31:
        forms.append(b"\xd2" + struct.pack(">i", n))
    forms.append(b"\xd3" + struct.pack(">q", n))
    return [f for f in forms if f != encode(n)]


# --- round trips --------------------------------------------------------------------------------


@SETTINGS
@given(transactions)
def test_transaction_round_trip(tx: Transaction) -> None:
    data = encode(tx)
    assert decode(data, Transaction) == tx
    assert data == array(fields_of(tx))


@SETTINGS
@given(headers)
def test_header_round_trip(header: Header) -> None:
    assert decode(encode(header), Header) == header


@settings(max_examples=30, deadline=None)
@given(blocks)
def test_block_round_trip(block: Block) -> None:
    data = encode(block)
    assert decode(data, Block) == block
    assert encode(decode(data, Block)) == data


def test_chain_params_round_trip() -> None:
    params = test_params(test_keys(3))
    assert decode(encode(params), ChainParams) == params


# --- rejections -----------------------------------------------------------------------------------


@SETTINGS
@given(tx=transactions, extra=st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(tx: Transaction, extra: bytes) -> None:
    with pytest.raises(TrailingBytes):
        decode(encode(tx) + extra, Transaction)


@SETTINGS
@given(
    tx=transactions,
    extra=st.one_of(st.integers(0, 10), st.binary(max_size=4), st.none(), st.text(max_size=3)),
)
def test_extra_array_element_is_an_unknown_field(tx: Transaction, extra: object) -> None:
    with pytest.raises(UnknownField):
        decode(array([*fields_of(tx), encode(extra)]), Transaction)


@SETTINGS
@given(header=headers)
def test_extra_header_field_is_an_unknown_field(header: Header) -> None:
    data = encode(header)
    n = len(Header.__struct_fields__)
    assert data[0] == 0x90 + n  # fixarray of every field
    with pytest.raises(UnknownField):
        decode(bytes([0x90 + n + 1]) + data[1:] + encode(0), Header)


def test_extra_payload_field_is_an_unknown_field() -> None:
    tx = Transaction(Transfer(bytes(20), 5), bytes(32), 0, 1, bytes(64))
    fields = fields_of(tx)
    fields[0] = encode([1, bytes(20), 5, 0])
    with pytest.raises(UnknownField):
        decode(array(fields), Transaction)


BASE_TX = Transaction(Transfer(bytes(20), 5), bytes(32), 1, 200, bytes(64))


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (2, "one"),  # nonce as a string
        (2, -1),  # negative nonce
        (2, 2**63),  # nonce beyond the 63-bit range
        (2, 1.0),  # float
        (2, True),  # bool is not an int
        (1, bytes(33)),  # sender key too long
        (4, bytes(65)),  # signature too long
        (0, [9, bytes(20), 5]),  # unknown payload tag
        (0, [1, bytes(19), 5]),  # transfer to a 19-byte address
        (0, [2, [0, 0]]),  # identity proof with rounds 0
        (0, [2, [MAX_ROUNDS + 1, 0]]),  # identity proof with too many rounds
        (0, [2, [1, 2**32]]),  # identity nonce beyond 32 bits
        (3, None),  # missing fee
    ],
)
def test_wrong_type_or_range_is_rejected(index: int, value: object) -> None:
    fields = fields_of(BASE_TX)
    fields[index] = encode(value)
    with pytest.raises(WrongType):
        decode(array(fields), Transaction)


def test_too_few_fields_and_wrong_container_are_wrong_types() -> None:
    with pytest.raises(WrongType):
        decode(array(fields_of(BASE_TX)[:4]), Transaction)
    with pytest.raises(WrongType):
        decode(encode({"payload": 1}), Transaction)


@SETTINGS
@given(transactions)
def test_oversize_input_is_rejected_before_decoding(tx: Transaction) -> None:
    data = encode(tx)
    assert decode(data, Transaction, max_bytes=len(data)) == tx
    with pytest.raises(Oversize):
        decode(data, Transaction, max_bytes=len(data) - 1)


@SETTINGS
@given(tx=transactions, data=st.data())
def test_truncated_input_is_malformed(tx: Transaction, data: st.DataObject) -> None:
    raw = encode(tx)
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    with pytest.raises(Malformed):
        decode(raw[:cut], Transaction)


@pytest.mark.parametrize("raw", [b"\xc1", b"\x95\xc1", b"", b"\xdc\x00"])
def test_invalid_messagepack_is_malformed(raw: bytes) -> None:
    with pytest.raises(Malformed):
        decode(raw, Transaction)


def test_wide_int_inside_a_valid_transaction_is_non_canonical() -> None:
    """The brief's example: nonce 1 written as 0xcc 0x01 instead of 0x01."""
    fields = fields_of(BASE_TX)
    assert fields[2] == b"\x01"
    fields[2] = b"\xcc\x01"
    data = array(fields)
    assert decode_lenient(data, Transaction) == BASE_TX  # the same value...
    with pytest.raises(NonCanonicalEncoding):  # ...in bytes that are not its encoding
        decode(data, Transaction)


@SETTINGS
@given(tx=transactions, data=st.data())
def test_every_wider_int_encoding_is_non_canonical(tx: Transaction, data: st.DataObject) -> None:
    forms = wider_uints(tx.nonce)
    form = data.draw(st.sampled_from(forms), label="form")
    fields = fields_of(tx)
    fields[2] = form
    raw = array(fields)
    assert decode_lenient(raw, Transaction) == tx
    with pytest.raises(NonCanonicalEncoding):
        decode(raw, Transaction)


@SETTINGS
@given(tx=transactions, wide=st.sampled_from(["bin16", "bin32"]))
def test_wider_bytes_length_is_non_canonical(tx: Transaction, wide: str) -> None:
    fields = fields_of(tx)
    n = len(tx.sender)
    fields[1] = (
        b"\xc5" + struct.pack(">H", n) if wide == "bin16" else b"\xc6" + struct.pack(">I", n)
    ) + tx.sender
    raw = array(fields)
    assert decode_lenient(raw, Transaction) == tx
    with pytest.raises(NonCanonicalEncoding):
        decode(raw, Transaction)


@SETTINGS
@given(transactions)
def test_wider_array_header_is_non_canonical(tx: Transaction) -> None:
    raw = array(fields_of(tx), header=b"\xdc\x00\x05")  # array16 of 5
    assert decode_lenient(raw, Transaction) == tx
    with pytest.raises(NonCanonicalEncoding):
        decode(raw, Transaction)


@SETTINGS
@given(header=headers)
def test_non_canonical_header_timestamp_is_rejected(header: Header) -> None:
    form = wider_uints(header.timestamp)[-1]  # int64 form, never canonical for a u63
    data = bytes([0x90 + len(Header.__struct_fields__)]) + b"".join(
        form if name == "timestamp" else encode(getattr(header, name)) for name in Header.__struct_fields__
    )
    assert decode_lenient(data, Header) == header
    with pytest.raises(NonCanonicalEncoding):
        decode(data, Header)


def test_every_rejection_is_a_decode_error() -> None:
    for cls in (Malformed, NonCanonicalEncoding, Oversize, TrailingBytes, UnknownField, WrongType):
        assert issubclass(cls, DecodeError)
