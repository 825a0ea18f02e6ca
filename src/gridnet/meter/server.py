"""``gridnet meter run``: a :class:`~gridnet.meter.device.Meter` as a process, with the HTTP
commands of Helios (seed 002, section IV), on 127.0.0.1 only.

Routes (every refusal is a 4xx JSON ``{"code": RULE, "message": ...}``):

- ``GET /meter``: identity: address, public key, owner, DSO keys, channels, clock, relays.
- ``GET /ac/{n}/{quantity}``, ``GET /dc/{n}/{quantity}``: a signed answer (read command).
- ``POST /relay/{n}/open``, ``POST /relay/{n}/close``: body ``{"hex": SignedRelayCommand}``
  (write command).
- ``GET /relays``: every relay's state and the log of accepted commands.
- ``POST /feed``: body ``{"kind", "index", "power_w", "duration_ms"}``: the simulated world's
  wire to the meter's sensors (what flowed), not a command; answers ``delivered_wh``.
- ``POST /clock``: body ``{"now_ms"}``: moves a simulated clock forward.

Every POST must be ``Content-Type: application/json`` (415 ``UnsupportedMediaType``) and carry
no ``Origin`` but a loopback one (403 ``CrossOriginRefused``): no other site's page can post.

Signed objects travel as the hex of their canonical bytes (``"hex"``), next to their fields
in plain JSON for people; a client decodes and verifies the hex only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar, cast

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.encoding import U63, decode, encode
from gridnet.errors import ConfigError, GridnetError, shown
from gridnet.files import replace_file
from gridnet.meter.device import (
    KINDS,
    UNITS,
    ClockJumpTooFar,
    ClockNotSimulated,
    ClockWentBackwards,
    InvalidRelayCommand,
    Kind,
    Meter,
    NoSuchChannel,
    Quantity,
    RelayCommandMismatch,
    RelayCommandReplayed,
    RelayLogEntry,
    SignedMeterAnswer,
    SignedRelayCommand,
    SimClock,
    UnknownQuantity,
)
from gridnet.meter.state import MeterStateUnwritable
from gridnet.node.api.common import HTTP_CODES, error_response, exact_routes
from gridnet.node.api.guard import RequestGuard
from gridnet.node.config import format_host_port
from gridnet.units import is_decimal

T = TypeVar("T")

MAX_BODY_BYTES = 4 * 1024
"""Longest request body [bytes]: a signed relay command is about 500 bytes of hex."""


class UnsupportedMediaType(GridnetError):
    """A POST whose body is not declared ``Content-Type: application/json`` (a web page can send
    only a "simple" request, form or text, to another origin without a CORS preflight, which
    the meter does not answer: so no page a browser shows can command it)."""


class CrossOriginRefused(GridnetError):
    """A POST from a web page of another origin than this machine's loopback."""


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
"""Hosts of the origins whose POSTs are taken (with any port, over http)."""


STATUS: dict[type[GridnetError], int] = {
    NoSuchChannel: 404,
    UnknownQuantity: 404,
    InvalidRelayCommand: 403,
    RelayCommandMismatch: 400,
    RelayCommandReplayed: 409,
    UnsupportedMediaType: 415,
    CrossOriginRefused: 403,
    ClockNotSimulated: 409,
    ClockWentBackwards: 409,
    ClockJumpTooFar: 409,
    MeterStateUnwritable: 503,
}
"""HTTP status of each refusal (the first class of its MRO found; else 400)."""


class FeedIn(msgspec.Struct, forbid_unknown_fields=True):
    kind: Kind
    index: int
    power_w: int
    duration_ms: int


class ClockIn(msgspec.Struct, forbid_unknown_fields=True):
    now_ms: U63


class SignedIn(msgspec.Struct, forbid_unknown_fields=True):
    hex: str


class BadRequest(GridnetError):
    """A request body that is not the JSON its route takes."""


def create_app(meter: Meter) -> FastAPI:
    """The HTTP commands of ``meter`` (one event loop runs them, one at a time)."""
    app = FastAPI(title="GRIDNET meter", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(GridnetError)
    async def _refused(request: Request, exc: GridnetError) -> JSONResponse:
        status = next((STATUS[c] for c in type(exc).__mro__ if c in STATUS), 400)
        return error_response(status, exc.rule, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, "BadRequest", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "HTTPError")
        path = shown(request.scope.get("path", ""))  # (url.path drops newlines)
        message = f"no such command: {path}" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # (uvicorn prints the traceback on the meter's stderr; the client gets one line)
        return error_response(500, "InternalError", f"internal error ({type(exc).__name__})")

    @app.get("/meter")
    async def identity() -> dict[str, Any]:
        return {
            "meter": address_to_text(meter.address),
            "public_key": meter.key.public_key.hex(),
            "owner": address_to_text(meter.owner),
            "dso": sorted(k.hex() for k in meter.dso),
            "ac": meter.ac,
            "dc": meter.dc,
            "clock": "sim" if isinstance(meter.clock, SimClock) else "wall",
            "now_ms": meter.clock(),
            "relays": [msgspec.structs.asdict(s) for s in meter.relays()],
        }

    def read(kind: Kind) -> None:
        @app.get(f"/{kind}/{{index}}/{{quantity}}", name=f"read_{kind}")
        async def _read(index: int, quantity: str) -> dict[str, Any]:
            return _answer_json(meter.read(kind, index, cast(Quantity, quantity)))  # (read checks it)

    for kind in KINDS:
        read(kind)

    @app.post("/relay/{relay}/{action}")
    async def relay(relay: int, action: str, request: Request) -> dict[str, Any]:
        signed = decode(_hex((await _posted(request, SignedIn)).hex), SignedRelayCommand)
        state = meter.command(signed, sent_to=(relay, action))  # (the mismatch is its last rule)
        return {"relay": msgspec.structs.asdict(state), "log_total": meter.log_total}

    @app.get("/relays")
    async def relays() -> dict[str, Any]:
        return {
            "relays": [msgspec.structs.asdict(s) for s in meter.relays()],
            "log": [_entry_json(e) for e in meter.log()],
            "log_total": meter.log_total,
        }

    @app.post("/feed")
    async def feed(request: Request) -> dict[str, Any]:
        step = await _posted(request, FeedIn)
        delivered = meter.feed(step.kind, step.index, step.power_w, step.duration_ms)
        return {"delivered_wh": delivered}

    @app.post("/clock")
    async def clock(request: Request) -> dict[str, Any]:
        meter.set_clock((await _posted(request, ClockIn)).now_ms)
        return {"now_ms": meter.clock()}

    exact_routes(app)
    app.add_middleware(RequestGuard, token=None, protected=(), max_body=MAX_BODY_BYTES)
    return app


def _answer_json(signed: SignedMeterAnswer) -> dict[str, Any]:
    a = signed.answer
    return {
        "hex": encode(signed).hex(),
        "meter": address_to_text(a.meter),
        "kind": a.kind,
        "index": a.index,
        "quantity": a.quantity,
        "value": a.value,
        "unit": UNITS[a.quantity],
        "timestamp_ms": a.timestamp_ms,
        "sequence": a.sequence,
        "signature": signed.signature.hex(),
    }


def _entry_json(entry: RelayLogEntry) -> dict[str, Any]:
    c = entry.signed.command
    return {
        "hex": encode(entry).hex(),
        "at_ms": entry.at_ms,
        "role": entry.role,
        "issuer": address_to_text(address_from_public_key(c.issuer)),
        "relay": c.relay,
        "action": c.action,
        "nonce": c.nonce,
        "reason": c.reason,
    }


async def _posted(request: Request, kind: type[T]) -> T:
    """The body of a POST, once its headers show it comes from no other site's page: JSON
    declared as such, and no ``Origin`` but this machine's loopback."""
    origin = request.headers.get("origin")
    if origin is not None and not _is_loopback_origin(origin):
        raise CrossOriginRefused(
            f"the meter takes commands from this machine only, not from {origin[:100]!r}"
        )
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType(f"send the body as Content-Type: application/json, not {media[:100]!r}")
    return _body(await request.body(), kind)


def _is_loopback_origin(origin: str) -> bool:
    """True for ``http://127.0.0.1``, ``http://localhost`` or ``http://[::1]``, with any port."""
    scheme, _, rest = origin.partition("://")
    host, colon, port = rest.rpartition(":") if not rest.endswith("]") else (rest, "", "")
    if not colon:
        host = rest
    elif not is_decimal(port):
        return False
    return scheme.lower() == "http" and host.lower() in LOOPBACK_HOSTS


def _body(raw: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadRequest(f"the body is not {kind.__name__}'s JSON: {exc}") from None


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise BadRequest("'hex' is not hexadecimal") from None


def serve(meter: Meter, host: str, port: int, info_file: Path | None = None) -> None:
    """Serve ``meter`` on ``host:port`` (port 0: any free one) until SIGTERM or SIGINT; print
    one line with its URL, and write ``info_file`` (JSON: pid, url, meter, public_key) for a
    launcher, removed on exit."""
    import uvicorn

    from gridnet.node.api.server import api_config

    if host != "127.0.0.1":
        raise ConfigError(f"a meter listens on 127.0.0.1 only, not {host}")
    if info_file is not None:
        _check_info_file(info_file)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # (as the node's API: no 40 ms ACK waits)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {format_host_port(host, port)}: {exc.strerror or exc}") from None
    sock.listen(128)
    url = f"http://{format_host_port(host, sock.getsockname()[1])}"
    address = address_to_text(meter.address)
    config = api_config(create_app(meter), "this meter", bound=host)
    # uvicorn stops gracefully on SIGTERM, then raises it again for the handler it found: this
    # one, so that the info file is removed on the way out (also when it comes before uvicorn).
    signal.signal(signal.SIGTERM, _exit)
    try:
        if info_file is not None:
            public_key = meter.key.public_key.hex()
            info = {"pid": os.getpid(), "url": url, "meter": address, "public_key": public_key}
            replace_file(info_file, f"{json.dumps(info)}\n".encode())  # (a launcher never reads half a file)
        print(f"meter {address} listening on {url}", flush=True)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        if info_file is not None and _info_pid(info_file) == os.getpid():
            info_file.unlink(missing_ok=True)


INFO_KEYS = frozenset({"pid", "url", "meter", "public_key"})
"""What a meter's info file holds (nothing else; a PID at least)."""


def _info_pid(info_file: Path) -> int | None:
    """The PID an info file names (None: no file, or not one a meter wrote)."""
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError):
        return None
    pid = info.get("pid") if isinstance(info, dict) and info.keys() <= INFO_KEYS else None
    return pid if isinstance(pid, int) and pid > 0 else None


def _check_info_file(info_file: Path) -> None:
    """Refuse an info file that is not one: a path that is not a file, in no directory, or a
    file a meter did not write (it would be replaced, then deleted when the meter stops); and
    one a running meter owns (two meters writing one file would leave a launcher the wrong URL,
    and the first to stop would delete the other's)."""
    if not info_file.parent.is_dir():
        raise ConfigError(f"--info-file {info_file}: the directory {info_file.parent} does not exist")
    if info_file.exists() or info_file.is_symlink():
        if not info_file.is_file() or info_file.is_symlink():
            raise ConfigError(f"--info-file {info_file} is not a regular file: give the path of a new file")
        pid = _info_pid(info_file)
        if pid is None:
            raise ConfigError(
                f"--info-file {info_file} exists and is not a meter's info file (the meter would "
                "replace it, then delete it): give the path of a new file"
            )
    else:
        return
    if pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # a meter that died without removing it (SIGKILL): the file is stale
    except PermissionError:
        pass  # alive, another user's
    raise ConfigError(
        f"--info-file {info_file} belongs to the running meter process {pid}: give each meter its own file"
    )


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
