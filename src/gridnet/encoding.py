"""Canonical encoding: all bytes that are hashed, signed, stored or sent come from here.

Objects are frozen msgspec Structs encoded as MessagePack arrays (field order is
the declaration order). Decoding is strict: it rejects oversize input, trailing
bytes, extra (unknown) fields, wrong types and values out of range, each with a
named :class:`~gridnet.errors.DecodeError`; ``decode`` also rejects any encoding
that is not the single canonical one (re-encoding must give the same bytes).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated, Any, Final, TypeVar

import msgspec

from gridnet.errors import (
    DecodeError,
    Malformed,
    NonCanonicalEncoding,
    Oversize,
    TrailingBytes,
    UnknownField,
    WrongType,
)
from gridnet.units import ADDRESS_BYTES, HASH_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES

T = TypeVar("T")

# Constrained field types shared by every wire object.
U8 = Annotated[int, msgspec.Meta(ge=0, le=2**8 - 1)]
U32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
U63 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
"""Non-negative integer that fits a signed 64-bit word (msgspec range checks stop there)."""
AddressBytes = Annotated[bytes, msgspec.Meta(min_length=ADDRESS_BYTES, max_length=ADDRESS_BYTES)]
HashBytes = Annotated[bytes, msgspec.Meta(min_length=HASH_BYTES, max_length=HASH_BYTES)]
PublicKeyBytes = Annotated[bytes, msgspec.Meta(min_length=PUBLIC_KEY_BYTES, max_length=PUBLIC_KEY_BYTES)]
SignatureBytes = Annotated[bytes, msgspec.Meta(min_length=SIGNATURE_BYTES, max_length=SIGNATURE_BYTES)]
OptionalKeyBytes = Annotated[bytes, msgspec.Meta(max_length=PUBLIC_KEY_BYTES)]
OptionalSignatureBytes = Annotated[bytes, msgspec.Meta(max_length=SIGNATURE_BYTES)]
AREA_MAX_CHARS: Final = 32
Area = Annotated[str, msgspec.Meta(min_length=1, max_length=AREA_MAX_CHARS)]
"""A market and grid area (a neighbourhood, a feeder); the rules a name follows are
``area_problem``'s."""
_AREA_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def area_problem(area: str) -> str | None:
    """What is wrong with ``area`` as an area's name (None: nothing). A name has 1 to 32
    characters, ASCII letters, digits, '.', '_' and '-', and starts with a letter or a digit:
    it is part of topics ("market/AREA/INTERVAL") and of API paths, so no '/', space, control
    character or look-alike letter."""
    if not 1 <= len(area) <= AREA_MAX_CHARS:
        return f"an area has 1 to {AREA_MAX_CHARS} characters"
    if _AREA_NAME.fullmatch(area) is None:
        return "an area has only ASCII letters, digits, '.', '_' and '-', and starts with a letter or a digit"
    return None


DEFAULT_MAX_BYTES: Final = 4 * 1024 * 1024


class Wire(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Base of every canonical object: frozen, encoded as an array, no unknown fields."""


_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode
"""Canonical bytes of a Wire object (or of plain lists/ints/bytes)."""


@cache
def _decoder(type_: Any) -> msgspec.msgpack.Decoder[Any]:
    return msgspec.msgpack.Decoder(type_)


def _name(type_: Any) -> str:
    """A readable name for a decode target (a class, a union, a generic alias)."""
    return getattr(type_, "__name__", None) or str(type_).replace("gridnet.", "")


def _classify(exc: Exception, what: str) -> DecodeError:
    msg = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        if "of at most length" in msg:
            return UnknownField(f"{what}: unknown extra field(s): {msg}")
        return WrongType(f"{what}: {msg}")
    if "trailing characters" in msg:
        return TrailingBytes(f"{what}: {msg}")
    return Malformed(f"{what}: {msg}")


def decode_lenient(
    data: bytes, type_: type[T], *, max_bytes: int = DEFAULT_MAX_BYTES, what: str | None = None
) -> T:
    """Strict decode without the canonical re-encoding check (for callers that check it
    once over a larger enclosing object)."""
    if len(data) > max_bytes:
        raise Oversize(f"{what or _name(type_)}: {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        return _decoder(type_).decode(data)  # type: ignore[no-any-return,arg-type]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _classify(exc, what or _name(type_)) from None


def decode(data: bytes, type_: type[T], *, max_bytes: int = DEFAULT_MAX_BYTES, what: str | None = None) -> T:
    """Decode ``data`` as ``type_``, accepting only its canonical encoding; ``what``
    names the object in error messages (default: the type's name)."""
    obj = decode_lenient(data, type_, max_bytes=max_bytes, what=what)
    if _encoder.encode(obj) != data:
        raise NonCanonicalEncoding(f"{what or _name(type_)}: bytes are not the canonical encoding")
    return obj
