"""The gate every request passes before FastAPI reads it: the API token of the routes that
need one, and the size of the body, checked from the headers alone.

FastAPI parses a request's body before it runs a route's dependencies, so without this gate a
client with no token could make the node read and parse a body of any size before being told
401. Here a body declared larger than its route's limit (``body_limits``, else ``max_body``) is
refused with 413 ``PayloadTooLarge``, one sent with a ``Transfer-Encoding`` (chunked: its length
is not declared, and with a ``Content-Length`` too the server would follow the chunks past it)
with 411 ``LengthRequired``, and a protected route without the right token with 401 ``Unauthorized`` —
none of it reading a byte of the body. The server reads no more than the declared length.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridnet.node.auth import tokens_match
from gridnet.units import is_decimal

UNAUTHORIZED = (
    "this endpoint needs the node's API token: send 'Authorization: Bearer TOKEN' with the token "
    "from the node's DATA_DIR/.cookie (or its configured api_token_file)"
)


class RequestGuard:
    """ASGI middleware: size and token checks before the app reads the body."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        protected: Sequence[BaseRoute],
        max_body: int,
        body_limits: Sequence[tuple[BaseRoute, int]] = (),
    ) -> None:
        self.app = app
        self.token = token
        self.protected = protected
        self.max_body = max_body
        self.body_limits = body_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("headers") or []
        headers = dict(raw)
        length = headers.get(b"content-length")
        refusal: JSONResponse | None = None
        if sum(name == b"authorization" for name, _ in raw) > 1:  # (which would count?)
            refusal = _refuse(400, "BadRequest", "send one Authorization header, not several")
        elif b"transfer-encoding" in headers:  # (with a Content-Length too, the server would read past it)
            refusal = _refuse(411, "LengthRequired", "send the body with a Content-Length, not chunked")
        elif length is not None and (not is_decimal(length) or int(length) > (most := self._limit(scope))):
            refusal = _refuse(413, "PayloadTooLarge", f"this request's body has at most {most:,} bytes")
        elif self.token is not None and not self._authorized(headers) and self._is_protected(scope):
            refusal = _refuse(401, "Unauthorized", UNAUTHORIZED)
            refusal.headers["www-authenticate"] = "Bearer"
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _limit(self, scope: Scope) -> int:
        for route, most in self.body_limits:
            if route.matches(scope)[0] is Match.FULL:
                return most
        return self.max_body

    def _is_protected(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self.protected)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return (
            self.token is not None and scheme.lower() == "bearer" and tokens_match(given.strip(), self.token)
        )


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"code": code, "message": message})


class HeadAsGet:
    """ASGI middleware: ``HEAD`` is answered as ``GET`` without the body (the same status and
    headers, ``content-length`` included), on every route that answers GET (``curl -I
    /health``); on one that does not, it is 405 as GET would be."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headless(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headless)
