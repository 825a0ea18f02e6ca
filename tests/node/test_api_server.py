"""The API's HTTP server on 127.0.0.1 (``node/api/server.py``): a connection that does not send
a whole request in time is closed, connections beyond either bound (all, or from one host)
are answered 503, and what
uvicorn refuses before the app runs is the API's JSON error. The bounds are lowered so that
each test reaches them quickly."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gridnet.node.api import server
from gridnet.node.api.server import api_config

LOCAL = "127.0.0.1"
ESTABLISHED = 1
"""Linux's TCP state of an open connection (``tcp_states.h``)."""
WAIT_S = 60.0
"""Ceiling for the server to answer or close [s] (far above a busy machine's need)."""


BIG = 16 << 20
"""Bytes of ``/big``'s answer: far more than the sockets' buffers hold."""


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"read": len(await request.body())})


async def big(request: Request) -> Response:
    return Response(bytes(BIG), media_type="application/octet-stream")


@asynccontextmanager
async def serving(*also: socket.socket) -> AsyncIterator[int]:
    """The guarded server on 127.0.0.1, and on the listening sockets ``also``: its port."""
    app = Starlette(routes=[Route("/echo", echo, methods=["GET", "POST"]), Route("/big", big)])
    sock = socket.socket()
    sock.bind((LOCAL, 0))
    sock.listen(64)
    srv = uvicorn.Server(api_config(app))
    task = asyncio.create_task(srv.serve(sockets=[sock, *also]))
    while not srv.started:
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, WAIT_S)


async def reply(reader: asyncio.StreamReader) -> tuple[int, dict[str, object]]:
    """Read until the server closes: the status and the JSON body of its answer."""
    raw = await asyncio.wait_for(reader.read(), WAIT_S)
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), WAIT_S) == b""
    except ConnectionError:
        return True


def run(scenario: Callable[[int], object]) -> None:
    async def main() -> None:
        async with serving() as port:
            await scenario(port)  # type: ignore[misc]

    asyncio.run(main())


def test_a_request_not_whole_in_time_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "REQUEST_TIMEOUT_S", 0.5)

    async def scenario(port: int) -> None:
        silent = await asyncio.open_connection(LOCAL, port)
        headers = await asyncio.open_connection(LOCAL, port)
        headers[1].write(b"GET /echo HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        body = await asyncio.open_connection(LOCAL, port)
        body[1].write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        assert await closed(silent[0]) and await closed(headers[0]) and await closed(body[0])

    run(scenario)


def test_each_request_on_a_kept_alive_connection_has_its_own_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three requests 0.6 deadlines apart: the third comes after the first deadline, but within
    the one its predecessor's answer set; then a request left unfinished is closed."""
    monkeypatch.setattr(server, "REQUEST_TIMEOUT_S", 4.0)

    async def scenario(port: int) -> None:
        reader, writer = await asyncio.open_connection(LOCAL, port)
        for n in range(3):
            if n:
                await asyncio.sleep(0.6 * server.REQUEST_TIMEOUT_S)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            line = await asyncio.wait_for(reader.readline(), WAIT_S)
            assert line.startswith(b"HTTP/1.1 200"), n
            await asyncio.wait_for(reader.readuntil(b'{"read":3}'), WAIT_S)
        writer.write(b"GET /echo HTTP/1.1\r\n")
        assert await closed(reader)

    run(scenario)


def test_a_client_that_reads_nothing_of_its_answer_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that asks for a large answer and never reads it does not hold the connection
    (and the answer) for ever: it is cut off once a deadline passes with nothing read. One that
    reads, however slowly, gets the whole answer, past any number of deadlines."""
    monkeypatch.setattr(server, "REQUEST_TIMEOUT_S", 1.0)

    async def scenario(port: int) -> None:
        idle = socket.socket()
        idle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        idle.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(idle, (LOCAL, port))
            await asyncio.get_running_loop().sock_sendall(idle, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            reader, writer = await asyncio.open_connection(LOCAL, port)
            writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = 0
            while chunk := await asyncio.wait_for(reader.read(1 << 16), WAIT_S):
                got += len(chunk)
                await asyncio.sleep(0.01)  # a slow reader: 16 MiB take several deadlines
            assert got > BIG
            for _ in range(int(WAIT_S / 0.05)):  # (TCP_INFO's first byte: the socket's state)
                if idle.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != ESTABLISHED:
                    break
                await asyncio.sleep(0.05)
            assert idle.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != ESTABLISHED
        finally:
            idle.close()

    run(scenario)


@pytest.mark.parametrize(
    ("bound", "said"),
    [
        ("MAX_CONNECTIONS", "3 connections are open"),
        ("MAX_CONNECTIONS_PER_HOST", f"3 connections from {LOCAL}"),
    ],
)
def test_connections_beyond_the_bound_are_answered_503(
    monkeypatch: pytest.MonkeyPatch, bound: str, said: str
) -> None:
    """Beyond the bound on all connections, or on those from one host (the tests' all come
    from 127.0.0.1; the other bound is left far above), a connection is answered 503 and closed,
    and is taken again once one of the others has gone."""
    monkeypatch.setattr(server, bound, 3)

    async def scenario(port: int) -> None:
        held = [await asyncio.open_connection(LOCAL, port) for _ in range(3)]
        reader, _ = await asyncio.open_connection(LOCAL, port)
        status, body = await reply(reader)
        assert status == 503 and body["code"] == "TooManyConnections"
        assert str(body["message"]).startswith(said)
        held[0][1].close()
        await held[0][1].wait_closed()
        for _ in range(int(WAIT_S / 0.05)):  # until the server has seen it go
            r, w = await asyncio.open_connection(LOCAL, port)
            w.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, body = await reply(r)
            if status == 200:
                break
            await asyncio.sleep(0.05)
        assert (status, body) == (200, {"read": 0})

    run(scenario)


def test_a_host_is_counted_once_whatever_address_family_it_comes_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound per host counts an IPv4 client once whether a socket shows it as 127.0.0.1
    or, listening in IPv6, as ``::ffff:127.0.0.1`` (the server here listens both ways, on
    127.0.0.1 only); another IPv4 address (127.0.0.2) is another host. (An IPv6 host counted
    per /64 is ``host_group``'s, tests/net/test_hosts.py: a test has one IPv6 address, ::1.)"""
    monkeypatch.setattr(server, "MAX_CONNECTIONS_PER_HOST", 3)
    mapped = socket.socket(socket.AF_INET6)
    mapped.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    mapped.bind((f"::ffff:{LOCAL}", 0))
    mapped.listen(64)
    mapped_port = mapped.getsockname()[1]

    async def scenario(port: int) -> None:
        held = [await asyncio.open_connection(LOCAL, p) for p in (port, port, mapped_port)]
        reader, _ = await asyncio.open_connection(LOCAL, mapped_port)
        status, body = await reply(reader)
        assert status == 503 and body["code"] == "TooManyConnections"
        assert str(body["message"]).startswith(f"3 connections from {LOCAL} ")
        other, writer = await asyncio.open_connection(LOCAL, port, local_addr=("127.0.0.2", 0))
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert await reply(other) == (200, {"read": 0})
        for _, w in held:
            w.close()

    async def main() -> None:
        async with serving(mapped) as port:
            await scenario(port)

    try:
        asyncio.run(main())
    finally:
        mapped.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"\x16\x03\x01 not http\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
)
def test_what_is_not_http_gets_the_json_error(request_bytes: bytes) -> None:
    async def scenario(port: int) -> None:
        reader, writer = await asyncio.open_connection(LOCAL, port)
        writer.write(request_bytes)
        status, body = await reply(reader)
        assert status == 400 and body["code"] == "BadRequest" and "HTTP/1.1" in str(body["message"])

    run(scenario)


def test_what_a_client_sends_wrong_is_answered_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A malformed request or an upgrade request is the client's business (it gets its answer):
    uvicorn's warnings about them do not reach the log, which no client may fill at will."""

    async def scenario(port: int) -> None:
        for sent in (
            b"\x16\x03\x01 not http\r\n\r\n",
            b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection(LOCAL, port)
            writer.write(sent)
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
            writer.close()

    with caplog.at_level("DEBUG"):
        run(scenario)
    warned = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error" and r.levelname != "INFO"]
    assert warned == []  # (its own news, starting and stopping, stays)
