"""Onion routing with end-to-end encryption (PROTOCOL.md section 6).

The sender picks a path of relays and wraps it in layers, innermost first:

    receiver's layer = seal(receiver, Layer(next_hop = 0^20, inner = payload))
    relay i's layer  = seal(relay i, Layer(next_hop = relay i+1 (or the receiver), inner =
                            the next layer's ciphertext))

and hands the outermost ciphertext to the first relay. Each hop opens its layer with its
own key (:func:`peel`) and learns only its successor (``next_hop``); its predecessor is whoever
handed it the frame, which the layer does not name. The receiver's layer says "you are
the receiver" (an all-zero next hop) and carries the payload, so the payload is readable
only by the receiver.

Integrity: each layer is a sealed box (``crypto/boxes.py``), so changing any byte of any
layer, cutting or extending it, or handing a hop another hop's layer fails libsodium's
authentication at the hop that opens it: :class:`~gridnet.errors.OnionTampered`. A layer
that opens but does not decode canonically (only its sealer can make one) raises a named
:class:`~gridnet.errors.DecodeError`. Sealed boxes do not authenticate the *sender*: a
relay can always drop the rest of the onion and seal a new one of its own, which is the
same as dropping the datagram and sending another; the transmission token's signature
over the datagram's digest is what tells the receiver whose datagram it is (and a
replayed onion is the token's concern, not the layers').

Size: each layer adds :data:`LAYER_OVERHEAD` = 71 bytes plus the MessagePack length
header of what it wraps (2 bytes below 256, 3 below 65 536, else 5): the sealed-box
overhead of 48 bytes (ephemeral key and tag), 1 byte of array header and 22 of next-hop
address. An onion through ``h`` relays is ``payload + (h + 1) * (71 + 2 or 3)`` bytes
(:func:`onion_size` gives the exact figure), e.g. 522 bytes for a 300-byte payload
through 2 relays; each hop forwards 73-74 bytes less than it received. Layers are not
padded, so a relay can estimate its distance from the receiver from the size it sees.
At most :data:`MAX_ONION_HOPS` relays and :data:`MAX_PAYLOAD_BYTES` of payload.
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
from gridnet.units import ADDRESS_BYTES, PUBLIC_KEY_BYTES, Address, PublicKey

MAX_ONION_HOPS: Final = 16
"""Most relays an onion may pass through (the receiver not counted)."""
MAX_PAYLOAD_BYTES: Final = 64 * 1024
"""Largest end-to-end payload an onion carries."""
RECEIVER: Final = bytes(ADDRESS_BYTES)
"""The next hop that means "you are the receiver" (all zero: no key hashes to it)."""
LAYER_OVERHEAD: Final = SEAL_OVERHEAD + 1 + 2 + ADDRESS_BYTES
"""Bytes a layer adds besides its inner's length header: seal 48, array 1, address 2 + 20."""


class Layer(Wire, frozen=True):
    """The plaintext of one onion layer, sealed to the hop that peels it."""

    next_hop: AddressBytes
    """Where to forward ``inner``; :data:`RECEIVER` (all zero) at the receiver."""
    inner: bytes
    """The next hop's layer (a sealed box), or at the receiver the payload."""


class Peeled(NamedTuple):
    """What a hop learns from its layer."""

    next_hop: Address | None
    """The successor to forward ``inner`` to; None when this hop is the receiver."""
    inner: bytes
    """The onion to forward, or (at the receiver) the decrypted payload."""


def _bin_header(n: int) -> int:
    """Bytes of MessagePack's bin header for ``n`` bytes."""
    return 2 if n < 2**8 else 3 if n < 2**16 else 5


def onion_size(hops: int, payload_bytes: int) -> int:
    """Exact length of an onion through ``hops`` relays carrying ``payload_bytes``."""
    size = payload_bytes
    for _ in range(hops + 1):
        size += LAYER_OVERHEAD + _bin_header(size)
    return size


MAX_ONION_BYTES: Final = onion_size(MAX_ONION_HOPS, MAX_PAYLOAD_BYTES)
"""Largest onion a hop accepts (checked before decrypting)."""


def build_onion(
    path: Sequence[tuple[Address, PublicKey]], receiver: tuple[Address, PublicKey], payload: bytes
) -> bytes:
    """The onion to hand to ``path[0]`` (or, with an empty path, to the receiver).

    ``path`` lists the relays in order as (address, Ed25519 public key); each address must
    be its key's. Every call seals with fresh ephemeral keys, so two onions for the same
    path and payload are unlinkable. Raises :class:`~gridnet.errors.OnionPathTooLong`,
    :class:`~gridnet.errors.InvalidOnionPath`, :class:`~gridnet.errors.OnionTooLarge` or
    (for a key that is not a valid point) :class:`~gridnet.errors.InvalidBoxKey`.
    """
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
    onion = seal(receiver[1], encode(Layer(RECEIVER, payload)))
    for i in range(len(path) - 1, -1, -1):
        onion = seal(path[i][1], encode(Layer(hops[i + 1][0], onion)))
    return onion


def peel(key: PrivateKey, onion: bytes) -> Peeled:
    """Open this hop's layer of ``onion`` with its ``key``.

    Returns the next hop and the onion to forward to it, or (``next_hop`` None) the
    payload when ``key`` is the receiver's. Raises :class:`~gridnet.errors.OnionTampered`
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
        return Peeled(None, layer.inner)
    return Peeled(layer.next_hop, layer.inner)
