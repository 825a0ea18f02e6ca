"""Noise XX for peer links: both ends agree only with the same prologue; frames open once,
in order, unaltered, whole."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.crypto.noise import CHUNK_BYTES, TAG_BYTES, Handshake, Session, sealed_size
from gridnet.errors import HandshakeFailed, SealedBoxError

PROLOGUE = b"hello of chain A"


def pair(
    initiator_prologue: bytes = PROLOGUE, responder_prologue: bytes = PROLOGUE
) -> tuple[Session, Session]:
    """Run the three XX messages between two fresh ends; (initiator's, responder's) session."""
    i = Handshake(initiator=True, prologue=initiator_prologue)
    r = Handshake(initiator=False, prologue=responder_prologue)
    r.read(i.write())  # -> e
    i.read(r.write())  # <- e, ee, s, es
    r.read(i.write())  # -> s, se
    assert i.finished and r.finished
    return i.session(), r.session()


def test_both_ends_agree_on_the_handshake_hash_and_carry_frames_both_ways() -> None:
    a, b = pair()
    assert a.handshake_hash == b.handshake_hash and len(a.handshake_hash) == 64
    for n in range(3):
        assert b.decrypt(a.encrypt(b"a->b %d" % n)) == b"a->b %d" % n
        assert a.decrypt(b.encrypt(b"b->a %d" % n)) == b"b->a %d" % n
    c, _ = pair()
    assert c.handshake_hash != a.handshake_hash  # fresh keys: every link has its own


def test_another_prologue_cannot_complete_the_handshake() -> None:
    i = Handshake(initiator=True, prologue=PROLOGUE)
    r = Handshake(initiator=False, prologue=b"hello of chain B")
    r.read(i.write())  # (the first message is plain: nothing to check yet)
    with pytest.raises(HandshakeFailed):
        i.read(r.write())  # the responder's static key is encrypted under another hash


@pytest.mark.parametrize("message", [0, 1, 2])
def test_a_tampered_handshake_message_is_refused(message: int) -> None:
    i = Handshake(initiator=True, prologue=PROLOGUE)
    r = Handshake(initiator=False, prologue=PROLOGUE)
    ends = [(i, r), (r, i), (i, r)]
    for n, (writer, reader) in enumerate(ends):
        data = bytearray(writer.write())
        if n == message:
            data[-1] ^= 0x01
            if n == 0:  # the plain ephemeral key: the next message no longer authenticates
                reader.read(bytes(data))
                with pytest.raises(HandshakeFailed):
                    writer.read(reader.write())
            else:
                with pytest.raises(HandshakeFailed):
                    reader.read(bytes(data))
            return
        reader.read(bytes(data))


@pytest.mark.parametrize("cut", [0, 1, 31, 40])
def test_a_truncated_handshake_message_is_refused(cut: int) -> None:
    i = Handshake(initiator=True, prologue=PROLOGUE)
    r = Handshake(initiator=False, prologue=PROLOGUE)
    r.read(i.write())
    with pytest.raises(HandshakeFailed):
        i.read(r.write()[:cut])


def test_a_low_order_ephemeral_key_is_refused() -> None:
    r = Handshake(initiator=False, prologue=PROLOGUE)
    r.read(bytes(32))  # -> e: the all-zero point (no shared secret with anyone)
    with pytest.raises(HandshakeFailed, match="unusable"):
        r.write()


def test_a_replayed_frame_fails() -> None:
    a, b = pair()
    sealed = a.encrypt(b"status")
    assert b.decrypt(sealed) == b"status"
    with pytest.raises(SealedBoxError):
        b.decrypt(sealed)


def test_reordered_frames_fail() -> None:
    a, b = pair()
    first, second = a.encrypt(b"one"), a.encrypt(b"two")
    with pytest.raises(SealedBoxError):
        b.decrypt(second)
    assert first != second


def test_a_frame_sent_the_other_way_does_not_open() -> None:
    a, _ = pair()
    with pytest.raises(SealedBoxError):
        a.decrypt(a.encrypt(b"reflected"))  # each direction has its own key


@settings(max_examples=60, deadline=None)
@given(
    plaintext=st.binary(max_size=300),
    position=st.integers(min_value=0),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_flip_is_rejected(plaintext: bytes, position: int, mask: int) -> None:
    a, b = pair()
    sealed = bytearray(a.encrypt(plaintext))
    sealed[position % len(sealed)] ^= mask
    with pytest.raises(SealedBoxError):
        b.decrypt(bytes(sealed))


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 4, CHUNK_BYTES - 3, 3 * CHUNK_BYTES, 4 * 1024 * 1024])
def test_frames_of_any_size_round_trip_with_the_stated_overhead(size: int) -> None:
    a, b = pair()
    plaintext = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sealed = a.encrypt(plaintext)
    assert len(sealed) == sealed_size(size)
    assert b.decrypt(sealed) == plaintext


def test_sealed_size_counts_one_tag_per_piece() -> None:
    assert sealed_size(0) == 4 + TAG_BYTES
    assert sealed_size(CHUNK_BYTES - 4) == CHUNK_BYTES + TAG_BYTES  # exactly one piece
    assert sealed_size(CHUNK_BYTES - 3) == CHUNK_BYTES + 1 + 2 * TAG_BYTES


@pytest.mark.parametrize("change", ["drop last piece", "drop first piece", "swap pieces", "extend"])
def test_a_frame_of_many_pieces_cut_or_rearranged_fails(change: str) -> None:
    a, b = pair()
    sealed = a.encrypt(b"x" * (2 * CHUNK_BYTES + 10))
    piece = CHUNK_BYTES + TAG_BYTES
    pieces = [sealed[i : i + piece] for i in range(0, len(sealed), piece)]
    assert len(pieces) == 3
    changed = {
        "drop last piece": pieces[:2],
        "drop first piece": pieces[1:],
        "swap pieces": [pieces[1], pieces[0], pieces[2]],
        "extend": [*pieces, a.encrypt(b"more")],
    }[change]
    with pytest.raises(SealedBoxError):
        b.decrypt(b"".join(changed))


def test_an_empty_frame_fails() -> None:
    _, b = pair()
    with pytest.raises(SealedBoxError):
        b.decrypt(b"")
