"""Errors, path values and the JSON form of ledger objects, shared by the API's routes."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
import msgspec.inspect as mi
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.convertors import Convertor, register_url_convertor

from gridnet.crypto.address import address_from_text, address_to_text
from gridnet.errors import DecodeError, GridnetError, InvalidAddress, StoreCorrupt
from gridnet.node.api.guard import UNAUTHORIZED
from gridnet.node.auth import tokens_match
from gridnet.units import ADDRESS_BYTES, PUBLIC_KEY_BYTES, is_decimal

MAX_BODY_HEX = 2 * 4 * 1024 * 1024
"""Longest hex accepted in a request body (a 4 MiB object)."""
MAX_BODY_BYTES = MAX_BODY_HEX + 64 * 1024
"""Longest request body read at all [bytes] (the hex plus its JSON): a transaction's."""
BODY_LIMITS = {
    "/orders": 64 * 1024,
    "/commands": 64 * 1024,
    "/datagrams": 4 * 1024 * 1024,
    "/datagrams/claims": 1024,
}
"""Longest body of the other POST routes [bytes]: a signed order or command is a few hundred
bytes of hex (a command naming many meters a few kB),
a datagram at most a 16-hop onion with its token and hops; closing the connections takes none."""
DEFAULT_READINGS = 8
MAX_READINGS = 96
READING_SCAN = 4 * 96 * 10
"""Intervals walked back from a meter's latest reading to find its recent ones (10 days)."""
DEFAULT_ORDERS_PAGE = 1_000
MAX_ORDERS_PAGE = 10_000
"""Orders one GET /orders answer carries by default, and at most."""
DEFAULT_LOST_PAGE = 1_000
MAX_LOST_PAGE = 10_000
"""Lost transactions one GET /mempool/lost answer carries by default, and at most."""
LOST_PAGE_BYTES = 1 << 20
"""Encoded transactions one GET /mempool/lost answer carries, at most [bytes] (twice as much
as hex), but for its first, which comes whatever its size: the log keeps up to 16 MiB, and an
answer is built whole in memory and held while its client reads it."""
HTTP_CODES = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed"}
"""The code of an HTTP error raised by the framework (a body it cannot parse is 400 BadRequest)."""
MAX_QUERY_INT = 2**63 - 1
"""Largest whole number an integer query parameter takes (sequence numbers, offsets): a
larger one is 400 BadRequest naming the parameter, as for a number in a path."""
MAX_STATE_KEY_BYTES = 64
"""Longer than any state table's key (the longest, a reading's, is 28 bytes)."""

# --- errors ------------------------------------------------------------------------------


class ApiError(Exception):
    """An HTTP error with the API's JSON body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFound", message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def store_unavailable(reason: str) -> ApiError:
    return ApiError(
        503,
        "StoreUnavailable",
        f"the node cannot write its store ({reason}); nothing was taken: send it again once "
        "GET /health answers 200",
    )


MAX_SHOWN_CHARS = 80
"""Characters of a client's input an error message quotes back, at most."""
MAX_MESSAGE_CHARS = 1_000
"""Characters of an error message, at most (a message quotes a client's input shortened, so
this only bounds what a rule's own message could carry)."""


def shown(text: str, most: int = MAX_SHOWN_CHARS) -> str:
    """A client's input as an error message quotes it: ``repr`` of at most ``most`` characters
    (marked when cut), so a 100 kB path or name is not sent back whole."""
    return repr(text[:most]) + ("..." if len(text) > most else "")


def one_line(text: str) -> str:
    return " ".join(text.split())


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The API's error body: ``{"code", "message"}``, the message on one line and at most
    ``MAX_MESSAGE_CHARS`` long."""
    line = one_line(message)
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[: MAX_MESSAGE_CHARS - 3] + "..."
    return JSONResponse(status_code=status, content={"code": code, "message": line})


def status_of(exc: GridnetError) -> int:
    """Malformed input is the client's 400; a store that does not read back is the node's
    500; any other named rule is a 422 refusal."""
    if isinstance(exc, StoreCorrupt):
        return 500
    return 400 if isinstance(exc, DecodeError | InvalidAddress) else 422


# --- paths ------------------------------------------------------------------------------


class NameConvertor(Convertor[str]):
    """The rest of a path taken whole, a group's name: the ledger allows any 1 to 64
    characters, a newline too. Starlette's ``path`` is ``.*``, whose '.' takes no newline, so
    "/credits/a%0Ab" was no route (404) and "/credits/x%0A" answered for the group "x"."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("name", NameConvertor())


def exact_routes(app: FastAPI) -> None:
    """Make each of ``app``'s routes match a path only whole: Starlette ends a route's pattern
    with '$', which also matches before a last newline, so "/head%0A" was "/head"."""
    for route in app.router.routes:
        pattern = getattr(route, "path_regex", None)
        if isinstance(pattern, re.Pattern) and pattern.pattern.endswith("$"):
            route.path_regex = re.compile(pattern.pattern[:-1] + r"\Z", pattern.flags)  # type: ignore[attr-defined]


# --- parsing path and body values --------------------------------------------------------


def parse_hex(text: str, what: str, length: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise bad_request(f"{what} is not hex") from None
    if length is not None and len(raw) != length:
        raise bad_request(f"{what} must be {length} bytes ({2 * length} hex digits), got {len(raw)}")
    return raw


def parse_number(text: str, what: str) -> int:
    """A non-negative whole number written in ASCII digits ('²' or '١' are not numbers here)."""
    if not is_decimal(text):
        raise bad_request(f"{what} {shown(text, 40)} is not a whole number (ASCII digits)")
    digits = text.lstrip("0")  # (leading zeros add nothing: 63 of them are 0, not too large)
    if len(digits) > 19 or int(digits or "0") > MAX_QUERY_INT:
        raise bad_request(f"{what} {shown(text, 40)} is too large (at most 2^63 - 1)")
    return int(digits or "0")


def parse_address(text: str) -> bytes:
    return address_from_text(text)  # raises InvalidAddress (400)


REGISTRANT_HELP = "The public key (hex) that registered it: each registrant's names are its own"


def parse_registrant(text: str) -> bytes:
    """The ``registrant`` query of a group read by name: the public key whose registration
    named it (a group's id is its registrant's key and its name, docs/protocol.md)."""
    return parse_hex(text, "registrant (a public key)", PUBLIC_KEY_BYTES)


# --- rendering ledger objects as JSON ----------------------------------------------------


_TYPE_INFO: dict[type, mi.Type] = {}


def _type_info(cls: type) -> mi.Type:
    info = _TYPE_INFO.get(cls)
    if info is None:
        info = _TYPE_INFO[cls] = mi.type_info(cls)
    return info


def _render(value: Any, t: mi.Type) -> Any:
    """JSON form of a decoded Wire value: 20-byte fields as text addresses, other bytes as
    hex, enums by lowercase name, structs as objects."""
    if isinstance(t, mi.StructType):
        return {f.name: _render(getattr(value, f.name), f.type) for f in t.fields}
    if isinstance(t, mi.BytesType):
        if t.min_length == t.max_length == ADDRESS_BYTES:
            return address_to_text(value)
        return bytes(value).hex()
    if isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        return [_render(v, t.item_type) for v in value]
    if isinstance(t, mi.TupleType):
        return [_render(v, it) for v, it in zip(value, t.item_types, strict=True)]
    if isinstance(t, mi.UnionType):
        for member in t.types:
            if isinstance(member, mi.StructType) and type(value) is member.cls:
                return _render(value, member)
        return _render_plain(value)
    if isinstance(t, mi.EnumType):
        return str(value.name).lower()
    return _render_plain(value)


def _render_plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [_render_plain(v) for v in value]
    if isinstance(value, msgspec.Struct):
        return _render(value, _type_info(type(value)))
    return value


def record(obj: Any) -> dict[str, Any]:
    """JSON object of a state record or payload (a msgspec Struct)."""
    rendered = _render(obj, _type_info(type(obj)))
    assert isinstance(rendered, dict)
    return rendered


# --- the API token ---------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False, description="The node's API token (DATA_DIR/.cookie or its token file)"
)


def bearer_auth(token: str | None) -> Callable[..., Awaitable[None]]:
    """A dependency that requires ``Authorization: Bearer TOKEN`` (none when ``token`` is
    None). A missing or wrong token is a 401 ``Unauthorized``."""

    async def require(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if token is None:
            return
        if credentials is None or not tokens_match(credentials.credentials, token):
            raise ApiError(401, "Unauthorized", UNAUTHORIZED)

    return require
