"""Onion routing with end-to-end encryption (PROTOCOL.md section 6).

The sender picks a path of relays and wraps it in layers, innermost first:

    receiver's layer = seal(receiver, Layer(next_hop = 0^20, hop = nil, inner = payload))
    relay i's layer  = seal(relay i, Layer(next_hop = relay i+1 (or the receiver),
                            hop = relay i's hop ticket, inner = the next layer's ciphertext))

and hands the outermost ciphertext to the first relay. Each hop opens its layer with its
own key (:func:`peel`) and learns only its successor (``next_hop``) and its own hop ticket
(``relay.hops``: what the sender credits it); its predecessor is whoever handed it the
frame, which the layer does not name. The receiver's layer says "you are the receiver" (an
all-zero next hop) and carries the payload, so the payload is readable only by the
receiver.

Integrity: each layer is a sealed box (``crypto/boxes.py``), so changing any byte of any
layer, cutting or extending it, or handing a hop another hop's layer fails libsodium's
authentication at the hop that opens it: :class:`~gridnet.errors.OnionTampered`. A layer
that opens but does not decode canonically (only its sealer can make one) raises a named
:class:`~gridnet.errors.DecodeError`. Sealed boxes do not authenticate the *sender*: a
relay can always drop the rest of the onion and seal a new one of its own, which is the
same as dropping the datagram and sending another; the transmission token's signature
over the datagram's digest is what tells the receiver whose datagram it is (and a
replayed onion is the token's concern, not the layers').

Size: each layer adds :data:`LAYER_OVERHEAD` = 72 bytes plus the MessagePack length
header of what it wraps (2 bytes below 256, 3 below 65 536, else 5): the sealed-box
overhead of 48 bytes (ephemeral key and tag), 1 byte of array header, 22 of next-hop
address and 1 of an absent hop ticket; a relay's layer adds its ticket's length less 1
(a ticket is at most :data:`MAX_TICKET_BYTES`). An onion through ``h`` relays without
tickets is ``payload + (h + 1) * (72 + 2 or 3)`` bytes (:func:`onion_size` gives the exact
figure), e.g. 525 bytes for a 300-byte payload through 2 relays. Layers are not padded: the
onion shrinks at every hop, so a relay learns from the size it forwards how many relays can
still follow it (the receiver's layer takes at least 95 bytes, a relay's with its ticket at
least 117), exactly how many if it knows the payload's size. A constant size would take a
Sphinx-like header (a filler each hop extends under a stream cipher), which sealed boxes
alone do not give; GRIDNET does not build one. At most :data:`MAX_ONION_HOPS` relays and
:data:`MAX_PAYLOAD_BYTES` of payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.boxes import SEAL_OVERHEAD, open_sealed, seal
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import AddressBytes, Wire, decode, encode
from gridnet.errors import (
    InvalidOnionPath,
    OnionPathTooLong,
    OnionTampered,
    OnionTooLarge,
    SealedBoxError,
)
from gridnet.ledger.merkle import MerkleStep
from gridnet.relay.hops import MAX_PROOF_STEPS, SALT_BYTES, HopEntry, HopTicket
from gridnet.units import ADDRESS_BYTES, PUBLIC_KEY_BYTES, Address, PublicKey

MAX_ONION_HOPS: Final = 16
"""Most relays an onion may pass through (the receiver not counted)."""
MAX_PAYLOAD_BYTES: Final = 64 * 1024
"""Largest end-to-end payload an onion carries."""
RECEIVER: Final = bytes(ADDRESS_BYTES)
"""The next hop that means "you are the receiver" (all zero: no key hashes to it)."""
LAYER_OVERHEAD: Final = SEAL_OVERHEAD + 1 + 2 + ADDRESS_BYTES + 1
"""Bytes a layer without a hop ticket adds besides its inner's length header: seal 48,
array 1, address 2 + 20, absent ticket 1."""
MAX_TICKET_BYTES: Final = len(
    encode(
        HopTicket(
            HopEntry(RECEIVER, 2**63 - 1, bytes(SALT_BYTES)),
            (MerkleStep(bytes(32), True),) * MAX_PROOF_STEPS,
        )
    )
)
"""Longest encoded hop ticket (268 bytes)."""


class Layer(Wire, frozen=True):
    """The plaintext of one onion layer, sealed to the hop that peels it."""

    next_hop: AddressBytes
    """Where to forward ``inner``; :data:`RECEIVER` (all zero) at the receiver."""
    hop: HopTicket | None
    """A relay's hop ticket: its own entry of the connection's accounts (None at the
    receiver)."""
    inner: bytes
    """The next hop's layer (a sealed box), or at the receiver the payload."""


class Peeled(NamedTuple):
    """What a hop learns from its layer."""

    next_hop: Address | None
    """The successor to forward ``inner`` to; None when this hop is the receiver."""
    hop: HopTicket | None
    """This relay's hop ticket, if the sender gave it one."""
    inner: bytes
    """The onion to forward, or (at the receiver) the decrypted payload."""


def _bin_header(n: int) -> int:
    """Bytes of MessagePack's bin header for ``n`` bytes."""
    return 2 if n < 2**8 else 3 if n < 2**16 else 5


def onion_size(hops: int, payload_bytes: int, ticket_bytes: int = 0) -> int:
    """Exact length of an onion through ``hops`` relays carrying ``payload_bytes``, each
    relay's layer with a hop ticket of ``ticket_bytes`` encoded bytes (0: without)."""
    size = payload_bytes + LAYER_OVERHEAD + _bin_header(payload_bytes)
    for _ in range(hops):
        size += LAYER_OVERHEAD + max(0, ticket_bytes - 1) + _bin_header(size)
    return size


MAX_ONION_BYTES: Final = onion_size(MAX_ONION_HOPS, MAX_PAYLOAD_BYTES, MAX_TICKET_BYTES)
"""Largest onion a hop accepts (checked before decrypting)."""


def build_onion(
    path: Sequence[tuple[Address, PublicKey]],
    receiver: tuple[Address, PublicKey],
    payload: bytes,
    tickets: Sequence[HopTicket] = (),
) -> bytes:
    """The onion to hand to ``path[0]`` (or, with an empty path, to the receiver).

    ``path`` lists the relays in order as (address, Ed25519 public key); each address must
    be its key's. ``tickets`` gives each relay its hop ticket, in path order (or none at
    all). Every call seals with fresh ephemeral keys, so two onions for the same path and
    payload are unlinkable. Raises :class:`~gridnet.errors.OnionPathTooLong`,
    :class:`~gridnet.errors.InvalidOnionPath`, :class:`~gridnet.errors.OnionTooLarge` or
    (for a key that is not a valid point) :class:`~gridnet.errors.InvalidBoxKey`.
    """
    if tickets and len(tickets) != len(path):
        raise InvalidOnionPath(f"{len(tickets)} hop tickets for {len(path)} relays: one each, or none")
    if len(path) > MAX_ONION_HOPS:
        raise OnionPathTooLong(f"an onion passes through at most {MAX_ONION_HOPS} relays, not {len(path)}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise OnionTooLarge(f"an onion's payload is at most {MAX_PAYLOAD_BYTES} bytes, not {len(payload)}")
    hops = [*path, receiver]
    for i, (address, public_key) in enumerate(hops):
        if len(public_key) != PUBLIC_KEY_BYTES or address_from_public_key(public_key) != address:
            where = "the receiver" if i == len(path) else f"relay {i}"
            raise InvalidOnionPath(
                f"{where}: address {address.hex()} is not the address of the public key given with it"
            )
    onion = seal(receiver[1], encode(Layer(RECEIVER, None, payload)))
    for i in range(len(path) - 1, -1, -1):
        onion = seal(path[i][1], encode(Layer(hops[i + 1][0], tickets[i] if tickets else None, onion)))
    return onion


def peel(key: PrivateKey, onion: bytes) -> Peeled:
    """Open this hop's layer of ``onion`` with its ``key``.

    Returns the next hop, this hop's ticket and the onion to forward, or (``next_hop``
    None) the payload when ``key`` is the receiver's. Raises :class:`~gridnet.errors.OnionTampered`
    when the layer does not open with ``key`` (altered, truncated, or not this hop's),
    :class:`~gridnet.errors.OnionTooLarge` above :data:`MAX_ONION_BYTES`, and a named
    :class:`~gridnet.errors.DecodeError` for a layer that opens but is not a canonical
    :class:`Layer`.
    """
    if len(onion) > MAX_ONION_BYTES:
        raise OnionTooLarge(f"an onion of {len(onion)} bytes exceeds the limit of {MAX_ONION_BYTES}")
    try:
        plain = open_sealed(key, onion)
    except SealedBoxError:
        raise OnionTampered(
            f"an onion layer of {len(onion)} bytes does not open with {key!r}: "
            "tampered, truncated, or sealed to another hop"
        ) from None
    layer = decode(plain, Layer, max_bytes=MAX_ONION_BYTES, what="onion layer")
    if layer.next_hop == RECEIVER:
        return Peeled(None, layer.hop, layer.inner)
    return Peeled(layer.next_hop, layer.hop, layer.inner)
