"""Addresses: digests of public keys with a checksummed text form that catches typos."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gridnet.crypto import hashing
from gridnet.crypto.address import PREFIX, address_from_public_key, address_from_text, address_to_text, short
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import InvalidAddress

addresses = st.binary(min_size=20, max_size=20)
TEXT = address_to_text(PrivateKey.from_label("address-test").address)
# Characters a person might type instead of the right one: base32, digits outside it,
# other letters' look-alikes, punctuation and spaces.
TYPED = st.sampled_from(sorted(set("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_.: ")))


@settings(max_examples=50, deadline=None)
@given(addresses)
def test_text_round_trip(address: bytes) -> None:
    text = address_to_text(address)
    assert text.startswith(PREFIX)
    assert text == text.lower()
    assert address_from_text(text) == address
    # Case and surrounding whitespace are not typos.
    assert address_from_text(f"  {text.upper()}\n") == address


@settings(max_examples=200, deadline=None)
@given(address=addresses, data=st.data())
def test_one_mistyped_character_is_rejected(address: bytes, data: st.DataObject) -> None:
    text = address_to_text(address)
    position = data.draw(st.integers(0, len(text) - 1), label="position")
    typed = data.draw(TYPED, label="typed")
    assume(typed.lower() != text[position])
    mistyped = text[:position] + typed + text[position + 1 :]
    with pytest.raises(InvalidAddress):
        address_from_text(mistyped)


def test_every_single_substitution_of_one_address_is_rejected() -> None:
    """Exhaustive over one address: every position, every base32 character."""
    for position in range(len(TEXT)):
        for typed in "abcdefghijklmnopqrstuvwxyz234567":
            if typed == TEXT[position]:
                continue
            with pytest.raises(InvalidAddress):
                address_from_text(TEXT[:position] + typed + TEXT[position + 1 :])


@pytest.mark.parametrize(
    "text",
    [
        "",
        TEXT[2:],  # no prefix
        "xx" + TEXT[2:],
        TEXT[:-1],  # one character dropped
        TEXT + "a",  # one character added
        TEXT[:5] + TEXT[6] + TEXT[5] + TEXT[7:],  # two neighbours swapped
    ],
)
def test_malformed_text_is_rejected(text: str) -> None:
    assert text != TEXT
    with pytest.raises(InvalidAddress):
        address_from_text(text)


def test_wrong_sizes_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        address_to_text(bytes(19))
    with pytest.raises(ValueError):
        address_from_public_key(bytes(31))


def test_short_form_abbreviates_the_text_form() -> None:
    s = short(PrivateKey.from_label("address-test").address)
    assert s.startswith(TEXT[:10]) and s.endswith(TEXT[-4:])


def test_hash_personalisations_are_distinct() -> None:
    persons = [v for k, v in vars(hashing).items() if k.startswith("P_")]
    assert len(persons) == len(set(persons)) >= 10
    assert all(len(p) <= 16 for p in persons)
    assert hashing.hash32(b"x", hashing.P_TXID) != hashing.hash32(b"x", hashing.P_HEADER)
