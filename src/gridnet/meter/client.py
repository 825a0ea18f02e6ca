"""A client of a ``gridnet meter`` process: the same calls as an in-process
:class:`~gridnet.meter.device.Meter` (:class:`~gridnet.meter.device.MeterDevice`), over HTTP.

Every answer it returns is checked: a read is the meter key's signature of exactly what was
asked, newer than the last answer this client saw (an old answer replayed is refused); the
key is the one given, else the one the meter announces at ``GET /meter``.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any, Final, TypeVar

import msgspec

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.encoding import decode, encode
from gridnet.errors import DecodeError, GridnetError
from gridnet.meter.device import (
    Kind,
    Quantity,
    RelayLogEntry,
    RelayState,
    SignedMeterAnswer,
    SignedRelayCommand,
    is_answer_signed_by,
    is_relay_command_signed,
)
from gridnet.net.http import AnswerTooLarge, BoundedConnection, read_answer, shown_size
from gridnet.node.config import base_url
from gridnet.units import Address, Millis, PublicKey, Wh

T = TypeVar("T")

MAX_ANSWER_BYTES: Final = 2 * 1024 * 1024
"""The longest answer a client reads from a meter [bytes]; a longer one is not a meter's. The
longest a meter gives is ``GET /relays``: its 64 relays at most and the last ``MAX_LOG``
(1,000) accepted commands, each a signed command of about 250 bytes in hex (500), under
600 KiB in all; a signed read is under 1 KiB."""


class MeterUnavailable(GridnetError):
    """The meter did not answer, or its answer is not a meter's."""


class MeterRefused(GridnetError):
    """The meter refused the request; ``rule`` is the rule it named."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status

    @property
    def rule(self) -> str:
        return self.code


class MeterAnswerInvalid(GridnetError):
    """An answer the meter key did not sign, for another read than asked, or replayed."""


class MeterIdentity(msgspec.Struct, frozen=True):
    """``GET /meter``."""

    meter: str
    public_key: str
    owner: str
    dso: list[str]
    ac: int
    dc: int
    clock: str
    now_ms: int
    relays: list[RelayState]


class MeterClient:
    """JSON over one kept-alive HTTP connection to a meter (reconnects once)."""

    def __init__(self, url: str, meter_key: PublicKey | None = None, *, timeout_s: float = 10.0) -> None:
        """``url``: ``http://127.0.0.1:PORT``; ``meter_key``: the key its answers must be signed
        with (None: the key the meter announces); ``timeout_s``: the most one request may take,
        its whole answer read (an answer is read up to MAX_ANSWER_BYTES)."""
        where = base_url(url)
        if where is None:
            shown = "".join(c if c.isprintable() else "?" for c in url[:80])
            raise MeterUnavailable(
                f"meter URL {shown!r} must be http://HOST:PORT and nothing more (e.g. http://127.0.0.1:9440)"
            )
        host, port = where
        self.url = f"http://{host}:{port}"
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self._key = meter_key
        self._sequence = 0
        self._conn: BoundedConnection | None = None

    @property
    def meter_key(self) -> PublicKey:
        if self._key is None:
            identity = self.identity()
            key = _hex(identity.public_key, "public key")
            if address_to_text(address_from_public_key(key)) != identity.meter:
                raise MeterAnswerInvalid(f"the meter at {self.url} announces a key that is not its address's")
            self._key = key
        return self._key

    @property
    def address(self) -> Address:
        return address_from_public_key(self.meter_key)

    def identity(self) -> MeterIdentity:
        return _convert(self._request("GET", "/meter"), MeterIdentity, "GET /meter")

    def read(self, kind: Kind, index: int, quantity: Quantity) -> SignedMeterAnswer:
        """The meter's signed answer, verified against its key."""
        path = f"/{kind}/{index}/{quantity}"
        answer = _convert(self._request("GET", path), _Signed, f"GET {path}")
        signed = _decode(answer.hex, SignedMeterAnswer)
        a = signed.answer
        if not is_answer_signed_by(signed, self.meter_key):
            raise MeterAnswerInvalid(f"the answer to GET {path} is not signed by the meter's key")
        if (a.kind, a.index, a.quantity) != (kind, index, quantity):
            raise MeterAnswerInvalid(f"the answer to GET {path} is for {a.kind}/{a.index}/{a.quantity}")
        if a.sequence <= self._sequence:
            raise MeterAnswerInvalid(
                f"the answer to GET {path} has sequence {a.sequence}, not above {self._sequence} (replayed?)"
            )
        self._sequence = a.sequence
        return signed

    def command(self, signed: SignedRelayCommand) -> RelayState:
        c = signed.command
        body = {"hex": encode(signed).hex()}
        answer = self._request("POST", f"/relay/{c.relay}/{c.action}", body)
        return _convert(answer.get("relay") if isinstance(answer, dict) else None, RelayState, "a command")

    def relays(self) -> tuple[RelayState, ...]:
        return tuple(_convert(self._request("GET", "/relays"), _Relays, "GET /relays").relays)

    def log(self) -> tuple[RelayLogEntry, ...]:
        """The accepted commands the meter keeps, each checked to be signed by its issuer."""
        entries = tuple(
            _decode(e.hex, RelayLogEntry)
            for e in _convert(self._request("GET", "/relays"), _Relays, "GET /relays").log
        )
        if not all(is_relay_command_signed(e.signed) for e in entries):
            raise MeterAnswerInvalid(
                f"the log of the meter at {self.url} holds a command its issuer did not sign"
            )
        return entries

    def feed(self, kind: Kind, index: int, power_w: int, duration_ms: Millis) -> Wh:
        body = {"kind": kind, "index": index, "power_w": power_w, "duration_ms": duration_ms}
        return _convert(self._request("POST", "/feed", body), _Fed, "POST /feed").delivered_wh

    def set_clock(self, now_ms: Millis) -> None:
        self._request("POST", "/clock", {"now_ms": now_ms})

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The decoded JSON of a 2xx answer; MeterRefused with the meter's rule otherwise."""
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"content-type": "application/json"}
        deadline = time.monotonic() + self.timeout_s  # (for all of it: a slow drip is no answer)
        for attempt in range(2):
            if self._conn is None:
                self._conn = BoundedConnection(self.host, self.port)
            self._conn.start(deadline - time.monotonic())
            try:
                self._conn.request(method, path, body=data, headers=headers)
                response = self._conn.getresponse()
                raw = read_answer(response, MAX_ANSWER_BYTES)
                status, answer = response.status, json.loads(raw or b"null")
                break
            except AnswerTooLarge as exc:
                self.close()
                raise MeterUnavailable(
                    f"the meter at {self.url} answered {method} {path} with more than "
                    f"{shown_size(exc.limit)}, more than a meter's answer holds: is it a GRIDNET meter?"
                ) from None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.close()
                # Sent again only when the meter cannot have acted on it: a read (not after a
                # timeout: its time is spent), or a kept-alive connection it had closed (a command
                # or a step sent twice is refused anyway).
                again = (method == "GET" and not isinstance(exc, TimeoutError)) or isinstance(
                    exc, http.client.RemoteDisconnected | BrokenPipeError
                )
                if attempt or not again:
                    if isinstance(exc, TimeoutError):
                        reason = f"timed out: no whole answer within {self.timeout_s:g} s"
                    else:
                        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                    raise MeterUnavailable(
                        f"the meter at {self.url} did not answer {method} {path} ({reason}); is it running?"
                    ) from None
        if 200 <= status < 300:
            return answer
        if isinstance(answer, dict) and "code" in answer:
            raise MeterRefused(str(answer["code"]), str(answer.get("message", "")), status)
        raise MeterRefused("HTTPError", f"{method} {path} answered {status}", status)


class _Signed(msgspec.Struct):
    hex: str


class _Relays(msgspec.Struct):
    relays: list[RelayState]
    log: list[_Signed]


class _Fed(msgspec.Struct):
    delivered_wh: int


def _convert(answer: Any, kind: type[T], what: str) -> T:
    try:
        return msgspec.convert(answer, kind)
    except msgspec.ValidationError as exc:
        raise MeterUnavailable(f"unexpected answer to {what} (is it a GRIDNET meter?): {exc}") from None


def _hex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise MeterUnavailable(f"the meter's {what} is not hexadecimal") from None


def _decode(text: str, kind: type[T]) -> T:
    try:
        return decode(_hex(text, "answer"), kind)
    except DecodeError as exc:
        raise MeterAnswerInvalid(f"the meter's answer does not decode: {exc}") from None
