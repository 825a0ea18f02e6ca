"""Encryption to a participant's identity key: libsodium sealed boxes (``crypto_box_seal``).
(Peer links are encrypted by the Noise protocol instead: ``crypto/noise.py``.)

A node has one key. Its Ed25519 identity key doubles as its encryption key through
libsodium's birational map to Curve25519 (``crypto_sign_ed25519_pk_to_curve25519`` and
``crypto_sign_ed25519_sk_to_curve25519``), so whoever knows a node's public key (its
address's preimage) can seal a box to it, and only the node opens it.

A sealed box is anonymous: ``ephemeral public key (32) || XSalsa20-Poly1305 box (16-byte
tag + message)``, :data:`SEAL_OVERHEAD` = 48 bytes more than the plaintext, the nonce
derived from both public keys. Any change to any byte of it, a cut or an extension, or
opening it with another key fails authentication: :class:`~gridnet.errors.SealedBoxError`.
It does *not* say who sealed it (anyone can seal to anyone); authenticity of the sender
comes from signatures (``crypto/keys.py``), not from here.

Key conversions are memoised per process (public: ~47 µs, private: ~18 µs each, against
~35 µs for opening a 300-byte box), so a relay opening many boxes pays them once. The
cache holds the derived Curve25519 secret of each private key used to open boxes, as
the key objects themselves hold the seed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import nacl.bindings
import nacl.exceptions

from gridnet.crypto.keys import PrivateKey
from gridnet.crypto.ops import OPS
from gridnet.errors import InvalidBoxKey, SealedBoxError
from gridnet.units import PUBLIC_KEY_BYTES

SEAL_OVERHEAD: Final[int] = nacl.bindings.crypto_box_SEALBYTES
"""Bytes a sealed box adds to its plaintext (48: ephemeral key 32 + tag 16)."""

_KEY_CACHE: Final = 4096

_pk_to_curve = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519
_sk_to_curve = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519
_scalarmult_base = nacl.bindings.crypto_scalarmult_base
_box_seal = nacl.bindings.crypto_box_seal
_box_seal_open = nacl.bindings.crypto_box_seal_open
_CryptoError = nacl.exceptions.CryptoError


@lru_cache(maxsize=_KEY_CACHE)
def box_public_key(ed25519_public_key: bytes) -> bytes:
    """The 32-byte Curve25519 public key that ``ed25519_public_key`` receives boxes on.

    Raises :class:`~gridnet.errors.InvalidBoxKey` for a key that is not 32 bytes or not a
    valid, canonical Ed25519 point of large order.
    """
    if not isinstance(ed25519_public_key, bytes) or len(ed25519_public_key) != PUBLIC_KEY_BYTES:
        raise InvalidBoxKey(f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes")
    try:
        return bytes(_pk_to_curve(ed25519_public_key))
    except (RuntimeError, ValueError, TypeError):
        raise InvalidBoxKey(
            f"public key {ed25519_public_key.hex()} is not a valid Ed25519 point; it cannot receive boxes"
        ) from None


@lru_cache(maxsize=_KEY_CACHE)
def _box_keypair(seed: bytes, ed25519_public_key: bytes) -> tuple[bytes, bytes]:
    """(Curve25519 public, Curve25519 secret) of the Ed25519 key with this seed."""
    secret = bytes(_sk_to_curve(seed + ed25519_public_key))
    # X25519 base-point multiplication (~17 µs) is cheaper than converting the Ed25519
    # public key (~47 µs) and gives the same bytes.
    return bytes(_scalarmult_base(secret)), secret


def seal(recipient_ed25519_public_key: bytes, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` so that only the holder of the recipient's private key can read
    it; the result is :data:`SEAL_OVERHEAD` bytes longer. Each call uses a fresh ephemeral
    key, so sealing the same plaintext twice gives unlinkable boxes."""
    public = box_public_key(recipient_ed25519_public_key)
    OPS.seals += 1
    return bytes(_box_seal(plaintext, public))


def open_sealed(private_key: PrivateKey, ciphertext: bytes) -> bytes:
    """The plaintext of a box sealed to ``private_key``.

    Raises :class:`~gridnet.errors.SealedBoxError` when it does not open: a byte altered,
    shorter than :data:`SEAL_OVERHEAD`, cut or extended, or sealed to another key.
    """
    public, secret = _box_keypair(private_key.seed, private_key.public_key)
    OPS.opens += 1
    try:
        return bytes(_box_seal_open(ciphertext, public, secret))
    except (_CryptoError, TypeError, ValueError):
        raise SealedBoxError(
            f"a sealed box of {len(ciphertext)} bytes does not open with this key "
            "(altered, truncated, or sealed to another key)"
        ) from None
