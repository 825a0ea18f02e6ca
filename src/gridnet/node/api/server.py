"""The HTTP server of a node's API (and of the dashboard and a meter process): uvicorn's
HTTP/1.1 protocol with the bounds a node needs.

uvicorn waits for a request's headers and body as long as the client keeps the connection
open, and takes as many connections as the process may open files. A node serves its API, its
peer links and its store from one process, so a client holding many slow connections would
starve all three. Here a connection has ``REQUEST_TIMEOUT_S`` to send each whole request (from
when it opens, or since the last answer), one that reads nothing of its answer for as long is
cut off (with what waited for it), at most ``MAX_CONNECTIONS`` are open at once and at
most ``MAX_CONNECTIONS_PER_HOST`` from one host (an IPv4 address, or an IPv6 /64:
``net/hosts.py``), so that one host cannot hold them all (one more is answered 503 and
closed), and what uvicorn refuses before the app runs (a malformed request line or header) is
answered with the same JSON error body as every other error and not logged (a client could
otherwise write the process's log at will).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import struct
from typing import Any, ClassVar, Final

import h11
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from gridnet.net.hosts import host_group
from gridnet.units import is_decimal

REQUEST_TIMEOUT_S: Final = 30.0
"""Time a connection has to send a whole request (headers and body) [s]; a request the node
has read whole and is answering is not cut short while its client reads the answer (one that
reads nothing of it for this long is cut off)."""
MAX_CONNECTIONS: Final = 512
"""Connections open at once, at most."""
MAX_CONNECTIONS_PER_HOST: Final = 64
"""Connections open at once from one host, at most: from one IPv4 address, or from one IPv6
/64 (``host_group``: an IPv6 host may hold all of its /64's addresses)."""
CLIENT_CAUSED: Final = (
    "Invalid HTTP request received.",
    "Unsupported upgrade request.",
    "No supported WebSocket library detected.",
)
"""uvicorn's warnings (their beginnings) about what a client sent: the client is answered,
the log is not told (``_ClientCaused``)."""


class _ClientCaused(logging.Filter):
    """Drops uvicorn's warnings about what a client sent (``CLIENT_CAUSED``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(CLIENT_CAUSED))


_QUIET = _ClientCaused()


def _json_error(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response carrying the API's error body; the connection closes after it."""
    body = json.dumps({"code": code, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline per request and a bound on connections."""

    served: ClassVar[str] = "this node's API"
    """What the connections are to (in a refusal's message)."""
    _deadline: asyncio.TimerHandle | None = None
    _host: str | None = None
    """The host the connection comes from (``host_group`` of its address; None: unknown)."""
    _unread: int | None = None
    """Bytes of the answer waiting, the client not reading, at the last deadline (None: it
    was reading)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._host = host_group(self.client[0]) if self.client else None
        refusal = self._over_bound()
        if refusal is not None:
            transport.write(_json_error(503, "Service Unavailable", "TooManyConnections", refusal))
            transport.close()
            return
        self._arm()

    def _over_bound(self) -> str | None:
        """Why this new connection is one too many (None when it is not)."""
        if len(self.connections) > MAX_CONNECTIONS:
            return f"{MAX_CONNECTIONS} connections are open to {self.served}; try again later"
        host = self._host
        if host is None:
            return None
        same = sum(1 for c in self.connections if isinstance(c, GuardedH11) and c._host == host)
        if same > MAX_CONNECTIONS_PER_HOST:
            return (
                f"{MAX_CONNECTIONS_PER_HOST} connections from {host} are open to {self.served}: "
                "close some, or try again later"
            )
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request on this connection has its own time

    def send_400_response(self, msg: str) -> None:
        message = "not a valid HTTP/1.1 request: check its request line, headers and Content-Length"
        self.transport.write(_json_error(400, "Bad Request", "BadRequest", message))
        self.transport.close()

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._unread = None
        self._deadline = self.loop.call_later(REQUEST_TIMEOUT_S, self._late)

    def _late(self) -> None:
        """A deadline passed. A request not whole by now closes the connection (what was
        answered before is still sent); one being answered stays. But a client that read
        nothing of what waits for it since the last deadline (as many bytes waiting, or more)
        is cut off and what waited dropped: else one that never reads would hold the
        connection, and the answers it asked for, for ever (closing waits for them to go)."""
        transport = self.transport
        waiting = transport.get_write_buffer_size()
        if waiting and self._unread is not None and waiting >= self._unread:
            sock = transport.get_extra_info("socket")
            if sock is not None:  # reset: the kernel drops what it holds for it too
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            return
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not transport.is_closing():
            transport.close()
        if transport.is_closing() and not waiting:
            return
        self._unread = waiting or None
        self._deadline = self.loop.call_later(REQUEST_TIMEOUT_S, self._late)


def host_is_loopback(value: str) -> bool:
    """Whether a ``Host`` header's value names this machine's loopback: ``localhost`` (or a
    name under ``.localhost``, which browsers resolve to loopback themselves), an address of
    127.0.0.0/8 or ``[::1]``, each with or without a port."""
    text = value.strip().lower()
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket:
            return False
    else:
        name, colon, port = text.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and is_decimal(rest[1:])):
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class LoopbackHosts:
    """ASGI middleware of a server bound to a loopback address: a request whose ``Host`` does
    not name the loopback is refused with 421 ``MisdirectedRequest``. A web page the user
    opens could otherwise read the server through a name of its own that it resolves to
    127.0.0.1 (DNS rebinding): the browser sends that name as the Host. A request without a
    Host (HTTP/1.0) is no browser's and is served."""

    def __init__(self, app: ASGIApp, served: str) -> None:
        self.app = app
        self.served = served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hosts = [v.decode("latin-1") for k, v in scope.get("headers") or [] if k == b"host"]
            if len(hosts) > 1 or (hosts and not host_is_loopback(hosts[0])):
                shown = "".join(c if c.isprintable() else "?" for c in hosts[0][:80]) if hosts else ""
                message = (
                    f"{self.served} answers requests addressed to this machine's loopback only "
                    f"(Host 127.0.0.1, localhost or [::1], with the port), not Host {shown!r}"
                )
                await _send_error(send, 421, "MisdirectedRequest", message)
                return
        await self.app(scope, receive, send)


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message}, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def api_config(
    app: ASGIApp, served: str = GuardedH11.served, *, bound: str | None = None, **options: Any
) -> uvicorn.Config:
    """A guarded server's configuration: ``GuardedH11`` (its refusals naming what is
    ``served``), no WebSocket upgrades (an upgrade request is an ordinary request: no route
    takes one), no access log, no lifespan; ``options``: uvicorn's others, or these
    overridden (``host`` and ``port`` when it is not given its socket, ``lifespan``).
    ``bound``: the address its socket is bound to (else ``host``): a loopback address makes
    it answer only requests whose Host names the loopback (:class:`LoopbackHosts`)."""
    bound = bound if bound is not None else options.get("host")
    if bound is not None and (bound == "localhost" or _is_loopback_address(bound)):
        app = LoopbackHosts(app, served)
    logger = logging.getLogger("uvicorn.error")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)
    protocol = (
        GuardedH11 if served == GuardedH11.served else type("GuardedH11", (GuardedH11,), {"served": served})
    )
    settings: dict[str, Any] = {
        "ws": "none",
        "log_config": None,
        "access_log": False,
        "lifespan": "off",
        "timeout_graceful_shutdown": 2,
        **options,
    }
    return uvicorn.Config(app, http=protocol, **settings)


def _is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
