"""Sealed boxes: only the recipient's Ed25519 identity key opens them; any change is caught."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.crypto.boxes import SEAL_OVERHEAD, box_public_key, open_sealed, seal
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import InvalidBoxKey, SealedBoxError

KEY = PrivateKey.from_label("box-test")
OTHER = PrivateKey.from_label("box-test-other")


def test_seal_and_open_round_trip() -> None:
    box = seal(KEY.public_key, b"meter 7: 1234 Wh")
    assert len(box) == SEAL_OVERHEAD + 16 == 64
    assert open_sealed(KEY, box) == b"meter 7: 1234 Wh"


def test_empty_plaintext_round_trips() -> None:
    box = seal(KEY.public_key, b"")
    assert len(box) == SEAL_OVERHEAD
    assert open_sealed(KEY, box) == b""


def test_sealing_twice_gives_unlinkable_boxes() -> None:
    a, b = seal(KEY.public_key, b"same"), seal(KEY.public_key, b"same")
    assert a != b
    assert a[:32] != b[:32]  # fresh ephemeral key each time


def test_box_public_key_is_the_curve_key_of_the_identity_key() -> None:
    import nacl.signing  # tests may look behind the one home to check it

    expected = bytes(nacl.signing.SigningKey(KEY.seed).to_curve25519_private_key().public_key)
    assert box_public_key(KEY.public_key) == expected
    assert len(expected) == 32
    assert box_public_key(OTHER.public_key) != expected


def test_another_key_cannot_open() -> None:
    box = seal(KEY.public_key, b"for KEY only")
    with pytest.raises(SealedBoxError):
        open_sealed(OTHER, box)


@pytest.mark.parametrize("cut", [0, 1, 16, SEAL_OVERHEAD - 1, SEAL_OVERHEAD, SEAL_OVERHEAD + 4])
def test_truncated_box_is_rejected(cut: int) -> None:
    box = seal(KEY.public_key, b"twenty bytes of text")
    with pytest.raises(SealedBoxError):
        open_sealed(KEY, box[:cut])


def test_extended_box_is_rejected() -> None:
    box = seal(KEY.public_key, b"payload")
    with pytest.raises(SealedBoxError):
        open_sealed(KEY, box + b"\x00")


def test_every_byte_of_a_box_is_authenticated() -> None:
    box = seal(KEY.public_key, b"0123456789")
    for i in range(len(box)):
        for mask in (0x01, 0x80):
            bad = bytearray(box)
            bad[i] ^= mask
            with pytest.raises(SealedBoxError):
                open_sealed(KEY, bytes(bad))


@settings(max_examples=60, deadline=None)
@given(
    plaintext=st.binary(max_size=300),
    position=st.integers(min_value=0),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_flip_is_rejected(plaintext: bytes, position: int, mask: int) -> None:
    box = seal(KEY.public_key, plaintext)
    assert open_sealed(KEY, box) == plaintext
    bad = bytearray(box)
    bad[position % len(bad)] ^= mask
    with pytest.raises(SealedBoxError):
        open_sealed(KEY, bytes(bad))


@pytest.mark.parametrize(
    "public_key",
    [
        b"",
        bytes(31),
        bytes(33),
        bytes(32),  # small-order point (y = 0 has order 4)
        bytes([1]) + bytes(31),  # the identity point
        b"\xff" * 32,  # non-canonical encoding
    ],
)
def test_invalid_recipient_keys_are_named(public_key: bytes) -> None:
    with pytest.raises(InvalidBoxKey):
        seal(public_key, b"x")
    with pytest.raises(InvalidBoxKey):
        box_public_key(public_key)
