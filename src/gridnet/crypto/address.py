"""Addresses: 20-byte digests of public keys, with a checksummed text form.

Text form: ``gn`` followed by the lowercase base32 (no padding) of
``address || checksum4(address)``. A mistyped character changes the checksum
and is rejected with :class:`~gridnet.errors.InvalidAddress`.
"""

from __future__ import annotations

import base64
import binascii

from gridnet.crypto.hashing import address_digest, checksum4
from gridnet.errors import InvalidAddress
from gridnet.units import ADDRESS_BYTES, PUBLIC_KEY_BYTES, Address

PREFIX = "gn"
_TEXT_LEN = len(PREFIX) + 39  # base32 of 24 bytes, unpadded


def address_from_public_key(public_key: bytes) -> Address:
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return address_digest(public_key)


def address_to_text(address: Address) -> str:
    if len(address) != ADDRESS_BYTES:
        raise ValueError("an address is 20 bytes")
    raw = address + checksum4(address)
    return PREFIX + base64.b32encode(raw).decode().rstrip("=").lower()


def address_from_text(text: str) -> Address:
    """Parse a text address, raising :class:`InvalidAddress` naming what is wrong."""
    s = text.strip().lower()
    named = repr(text[:60]) + ("..." if len(text) > 60 else "")  # (a long input is not quoted whole)
    if not s.startswith(PREFIX):
        raise InvalidAddress(f"address {named} does not start with {PREFIX!r}")
    if len(s) != _TEXT_LEN:
        raise InvalidAddress(
            f"address {named} has {len(s)} characters, expected {_TEXT_LEN}; check for a typo"
        )
    body = s[len(PREFIX) :].upper() + "=" * 1
    try:
        raw = base64.b32decode(body)
    except (binascii.Error, ValueError):
        raise InvalidAddress(
            f"address {named} contains characters outside base32 (a-z, 2-7); check for a typo"
        ) from None
    address, check = raw[:ADDRESS_BYTES], raw[ADDRESS_BYTES:]
    if checksum4(address) != check:
        raise InvalidAddress(f"address {named} fails its checksum; check for a typo")
    if address_to_text(address) != s:
        raise InvalidAddress(f"address {named} is not in canonical form; check for a typo")
    return address


def short(address: Address) -> str:
    """Abbreviated text form for tables and logs."""
    t = address_to_text(address)
    return t[:10] + "…" + t[-4:]
