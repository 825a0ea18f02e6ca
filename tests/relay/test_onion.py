"""Onion routing: each hop learns only its successor and its own hop ticket, the payload only
the receiver reads, and tampering with any byte of any layer is caught by the hop that
opens it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.boxes import SEAL_OVERHEAD, seal
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import (
    DecodeError,
    InvalidBoxKey,
    InvalidDatagram,
    InvalidOnionPath,
    Malformed,
    NonCanonicalEncoding,
    OnionPathTooLong,
    OnionTampered,
    OnionTooLarge,
    TrailingBytes,
    UnknownField,
    WrongType,
)
from gridnet.ledger.merkle import MerkleStep
from gridnet.relay.hops import MAX_PROOF_STEPS, HopBook, HopEntry, HopTicket
from gridnet.relay.onion import (
    LAYER_OVERHEAD,
    MAX_ONION_BYTES,
    MAX_ONION_HOPS,
    MAX_PAYLOAD_BYTES,
    MAX_TICKET_BYTES,
    RECEIVER,
    Layer,
    Peeled,
    build_onion,
    onion_size,
    peel,
)
from gridnet.units import Address, PublicKey

KEYS = [PrivateKey.from_label(f"onion-hop-{i}") for i in range(MAX_ONION_HOPS + 2)]
Hop = tuple[Address, PublicKey]


def hop(key: PrivateKey) -> Hop:
    return (key.address, key.public_key)


def ticket(steps: int, credit: int = 1) -> HopTicket:
    """A hop ticket with ``steps`` Merkle steps (its size: what the onion's layer carries)."""
    return HopTicket(HopEntry(bytes(20), credit, bytes(16)), (MerkleStep(bytes(32), True),) * steps)


def layers_of(keys: list[PrivateKey], payload: bytes) -> tuple[list[bytes], bytes]:
    """Build an onion through keys[:-1] to keys[-1]; peel it all the way. Returns the
    onion each hop received, and what the receiver got."""
    onion = build_onion([hop(k) for k in keys[:-1]], hop(keys[-1]), payload)
    received = []
    for i, key in enumerate(keys):
        received.append(onion)
        peeled = peel(key, onion)
        if i < len(keys) - 1:
            assert peeled.next_hop == keys[i + 1].address
        else:
            assert peeled.next_hop is None
        onion = peeled.inner
    return received, onion


# --- round trips ------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    order=st.permutations(range(8)),
    hops=st.integers(min_value=1, max_value=6),
    payload=st.binary(min_size=16, max_size=400),
)
def test_every_hop_learns_only_its_successor_and_the_receiver_the_payload(
    order: list[int], hops: int, payload: bytes
) -> None:
    keys = [KEYS[i] for i in order[: hops + 1]]
    path, receiver = keys[:-1], keys[-1]
    tickets = HopBook(bytes(32)).plan(1, [k.address for k in path], 750_000).tickets
    onion = build_onion([hop(k) for k in path], hop(receiver), payload, tickets)
    addresses = [k.address for k in keys]
    for i, key in enumerate(keys):
        # No other key opens this hop's layer.
        for other in keys:
            if other is not key:
                with pytest.raises(OnionTampered):
                    peel(other, onion)
        peeled = peel(key, onion)
        assert isinstance(peeled, Peeled)
        if key is receiver:
            assert peeled == Peeled(None, None, payload)
            break
        successor = keys[i + 1]
        assert peeled.next_hop == successor.address
        assert peeled.hop == tickets[i]  # its own hop entry, and no other
        assert all(address not in encode(peeled.hop) for address in addresses if address != key.address)
        # What the hop sees (the onion it got, the one it forwards) names no other hop and
        # shows no payload: its predecessor is known only as whoever handed it the frame.
        for seen in (onion, peeled.inner):
            assert payload not in seen
            for address in addresses:
                if address != successor.address:
                    assert address not in seen
        onion = peeled.inner


def test_an_onion_without_relays_goes_straight_to_the_receiver() -> None:
    receiver = KEYS[0]
    onion = build_onion([], hop(receiver), b"order 42")
    assert len(onion) == onion_size(0, 8) == 8 + LAYER_OVERHEAD + 2
    assert peel(receiver, onion) == Peeled(None, None, b"order 42")


def test_an_empty_payload_is_delivered() -> None:
    _, payload = layers_of(KEYS[:3], b"")
    assert payload == b""


def test_the_longest_path_is_allowed() -> None:
    keys = KEYS[: MAX_ONION_HOPS + 1]
    received, payload = layers_of(keys, b"far")
    assert payload == b"far"
    assert len(received[0]) == onion_size(MAX_ONION_HOPS, 3)


def test_onions_for_the_same_path_are_unlinkable() -> None:
    path, receiver = [hop(KEYS[0]), hop(KEYS[1])], hop(KEYS[2])
    a, b = build_onion(path, receiver, b"same"), build_onion(path, receiver, b"same")
    assert a != b and len(a) == len(b)


@pytest.mark.parametrize("steps", [None, 0, MAX_PROOF_STEPS])
@pytest.mark.parametrize("payload_bytes", [0, 1, 180, 181, 182, 255, 256, 65_300, MAX_PAYLOAD_BYTES])
@pytest.mark.parametrize("hops", [0, 1, 2])
def test_onion_size_is_exact_across_length_headers(hops: int, payload_bytes: int, steps: int | None) -> None:
    tickets = [] if steps is None else [ticket(steps)] * hops
    ticket_bytes = len(encode(tickets[0])) if tickets else 0
    onion = build_onion([hop(k) for k in KEYS[:hops]], hop(KEYS[hops]), bytes(payload_bytes), tickets)
    assert len(onion) == onion_size(hops, payload_bytes, ticket_bytes)
    # each layer adds the sealed-box overhead, an address, its ticket and 1-5 header bytes
    if hops:
        step = onion_size(hops, payload_bytes, ticket_bytes) - onion_size(
            hops - 1, payload_bytes, ticket_bytes
        )
        assert SEAL_OVERHEAD < step <= LAYER_OVERHEAD + max(0, ticket_bytes - 1) + 5


def test_the_largest_onion_is_accepted() -> None:
    keys = KEYS[: MAX_ONION_HOPS + 1]
    largest = ticket(MAX_PROOF_STEPS, credit=2**63 - 1)
    assert len(encode(largest)) == MAX_TICKET_BYTES
    tickets = [largest] * MAX_ONION_HOPS
    onion = build_onion([hop(k) for k in keys[:-1]], hop(keys[-1]), bytes(MAX_PAYLOAD_BYTES), tickets)
    assert len(onion) == MAX_ONION_BYTES
    assert peel(keys[0], onion) == Peeled(keys[1].address, largest, peel(keys[0], onion).inner)


# --- tampering --------------------------------------------------------------------------


def test_every_byte_of_every_layer_is_authenticated() -> None:
    keys = KEYS[:3]
    received, _ = layers_of(keys, b"8 bytes!")
    for key, layer in zip(keys, received, strict=True):
        for i in range(len(layer)):
            for mask in (0x01, 0x80):
                bad = bytearray(layer)
                bad[i] ^= mask
                with pytest.raises(OnionTampered):
                    peel(key, bytes(bad))


@settings(max_examples=80, deadline=None)
@given(
    hops=st.integers(min_value=1, max_value=4),
    payload=st.binary(max_size=120),
    data=st.data(),
)
def test_a_byte_changed_anywhere_in_any_layer_is_caught(
    hops: int, payload: bytes, data: st.DataObject
) -> None:
    keys = KEYS[: hops + 1]
    received, _ = layers_of(keys, payload)
    at = data.draw(st.integers(min_value=0, max_value=hops), label="layer")
    layer = received[at]
    position = data.draw(st.integers(min_value=0, max_value=len(layer) - 1), label="position")
    mask = data.draw(st.integers(min_value=1, max_value=255), label="mask")
    bad = bytearray(layer)
    bad[position] ^= mask
    with pytest.raises(OnionTampered) as info:
        peel(keys[at], bytes(bad))
    assert isinstance(info.value, InvalidDatagram)


def test_a_relay_tampering_with_what_it_forwards_is_caught_by_the_next_hop() -> None:
    keys = KEYS[:4]
    onion = build_onion([hop(k) for k in keys[:-1]], hop(keys[-1]), b"contract state 9")
    first = peel(keys[0], onion)
    assert first.next_hop == keys[1].address
    bad = bytearray(first.inner)
    bad[len(bad) // 2] ^= 0x01
    with pytest.raises(OnionTampered):
        peel(keys[1], bytes(bad))


@pytest.mark.parametrize("cut", [0, 1, SEAL_OVERHEAD - 1, SEAL_OVERHEAD, -1])
def test_a_truncated_layer_is_caught(cut: int) -> None:
    received, _ = layers_of(KEYS[:3], b"payload")
    with pytest.raises(OnionTampered):
        peel(KEYS[1], received[1][:cut])


def test_an_extended_layer_is_caught() -> None:
    received, _ = layers_of(KEYS[:3], b"payload")
    with pytest.raises(OnionTampered):
        peel(KEYS[1], received[1] + b"\x00")


def test_an_oversized_onion_is_refused_before_decrypting() -> None:
    with pytest.raises(OnionTooLarge):
        peel(KEYS[0], bytes(MAX_ONION_BYTES + 1))


# --- malformed layers (only a sealer can make them: they pass authentication) -------------


@pytest.mark.parametrize(
    ("plaintext", "error"),
    [
        (b"\xc1", Malformed),
        (b"", Malformed),
        (encode([b"short", None, b"inner"]), WrongType),
        (encode([RECEIVER, None]), WrongType),
        (encode([RECEIVER, b"not a ticket", b"x"]), WrongType),
        (encode([RECEIVER, None, b"x", 1]), UnknownField),
        (encode(Layer(RECEIVER, None, b"x")) + b"\x00", TrailingBytes),
        (b"\x93\xc4\x14" + RECEIVER + b"\xc0\xc5\x00\x01x", NonCanonicalEncoding),
    ],
)
def test_a_sealed_but_malformed_layer_raises_a_named_decode_error(
    plaintext: bytes, error: type[DecodeError]
) -> None:
    with pytest.raises(error):
        peel(KEYS[0], seal(KEYS[0].public_key, plaintext))


# --- building ---------------------------------------------------------------------------


def test_a_path_longer_than_the_limit_is_refused() -> None:
    keys = KEYS[: MAX_ONION_HOPS + 2]
    with pytest.raises(OnionPathTooLong):
        build_onion([hop(k) for k in keys[:-1]], hop(keys[-1]), b"x")


def test_a_ticket_for_each_relay_or_none() -> None:
    with pytest.raises(InvalidOnionPath):
        build_onion([hop(KEYS[0]), hop(KEYS[1])], hop(KEYS[2]), b"x", [ticket(1)])


def test_a_payload_larger_than_the_limit_is_refused() -> None:
    with pytest.raises(OnionTooLarge):
        build_onion([hop(KEYS[0])], hop(KEYS[1]), bytes(MAX_PAYLOAD_BYTES + 1))


def test_an_address_that_is_not_its_keys_is_refused() -> None:
    with pytest.raises(InvalidOnionPath):
        build_onion([(KEYS[0].address, KEYS[1].public_key)], hop(KEYS[2]), b"x")
    with pytest.raises(InvalidOnionPath):
        build_onion([hop(KEYS[0])], (KEYS[1].address, KEYS[2].public_key), b"x")
    with pytest.raises(InvalidOnionPath):
        build_onion([(KEYS[0].address, KEYS[0].public_key[:31])], hop(KEYS[2]), b"x")


def test_a_key_that_is_no_valid_point_is_refused() -> None:
    small_order = bytes(32)
    with pytest.raises(InvalidBoxKey):
        build_onion([(address_from_public_key(small_order), small_order)], hop(KEYS[0]), b"x")
