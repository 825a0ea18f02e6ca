"""What a peer can make a node hold over its links is bounded: peers that dialled it
(``MAX_INBOUND``, ``MAX_INBOUND_PER_HOST`` of one host: an IPv4 address, an IPv6 /64), the
bytes waiting for a peer that does not read (``MAX_SEND_BUFFER``), a frame's bytes left
unfinished (``FRAME_TIMEOUT_S``, and the idle timeout for a small one), a link that sends
nothing (the idle timeout), and the places of connections in their
handshake (``MAX_HANDSHAKES``: a new one evicts the oldest of the host holding the most, so
a host that keeps them filled does not lock honest peers out).

Real transports on 127.0.0.1; the limits are lowered so that each test reaches them quickly."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey
from gridnet.net import tcp
from gridnet.net.hosts import host_group
from gridnet.net.tcp import READ_BUFFER, TcpTransport, dial, read_frame
from gridnet.node.node import Node, NodeConfig
from tests.helpers import GENESIS_TIME, new_chain, test_params, wait_until
from tests.net.rogue import closes

LOCAL = "127.0.0.1"
WAIT_S = 60.0
"""Ceiling for the transport to act [s] (far above a busy machine's need)."""


def transport(root: Path, idle_timeout_s: float = tcp.IDLE_TIMEOUT_S) -> TcpTransport:
    node = Node("a", new_chain(root, test_params([])), NodeConfig())
    clock = iter(range(GENESIS_TIME + 1_000, GENESIS_TIME + 10**9, 50))
    return TcpTransport(
        node,
        PrivateKey.from_label("bounds-a"),
        (LOCAL, 0),
        [],
        tick_ms=20,
        clock=lambda: next(clock),
        idle_timeout_s=idle_timeout_s,
    )


async def until(condition: Callable[[], bool]) -> bool:
    return await wait_until(condition, WAIT_S)


def name(label: str) -> str:
    return address_to_text(PrivateKey.from_label(label).address)


def test_a_peer_that_does_not_read_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp, "MAX_SEND_BUFFER", 256 * 1024)

    async def scenario() -> None:
        a = transport(tmp_path / "a")
        await a.start()
        try:
            _, writer, _ = await dial(
                LOCAL, a.port, PrivateKey.from_label("bounds-deaf"), a.node.chain.chain_id
            )
            deaf = name("bounds-deaf")
            assert await until(lambda: deaf in a.links)
            status = a.node.status()
            sent = 0
            # What the node sends it piles up once the kernel's buffers are full (bounded: far
            # more than those buffers and the limit together).
            while deaf in a.links and sent < 512 * 1024 * 1024:
                a.dispatch([(deaf, status)] * 1000)
                sent += 1000 * 150
                await asyncio.sleep(0)
            assert await until(lambda: deaf not in a.links)
            assert a.stats.disconnected[deaf] == "SendBufferFull"
            assert deaf in a.banned
            writer.close()
        finally:
            await a.stop()

    asyncio.run(scenario())


def test_a_frame_not_whole_in_time_ends_the_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp, "FRAME_TIMEOUT_S", 0.5)

    async def scenario() -> None:
        a = transport(tmp_path / "a")
        await a.start()
        try:
            reader, writer, _ = await dial(
                LOCAL, a.port, PrivateKey.from_label("bounds-slow"), a.node.chain.chain_id
            )
            writer.write(struct.pack(">I", 4 * READ_BUFFER) + bytes(READ_BUFFER))  # a quarter of it
            assert await closes(reader, WAIT_S)
            assert a.stats.disconnected[name("bounds-slow")] == "FrameTimeout"
        finally:
            await a.stop()

    asyncio.run(scenario())


def test_a_small_frame_is_read_without_a_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame no longer than ``READ_BUFFER`` holds no more than the reader's own buffer: it
    has no ``FRAME_TIMEOUT_S`` (on a link, the idle timeout bounds it)."""
    monkeypatch.setattr(tcp, "FRAME_TIMEOUT_S", 0.0)

    async def scenario() -> bytes:
        server_side: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            server_side.set_result(await read_frame(reader))
            writer.close()

        server = await asyncio.start_server(serve, LOCAL, 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection(LOCAL, port)
        writer.write(struct.pack(">I", READ_BUFFER) + bytes(READ_BUFFER - 1))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"!")
        got = await asyncio.wait_for(server_side, WAIT_S)
        writer.close()
        server.close()
        return got

    assert asyncio.run(scenario()) == bytes(READ_BUFFER - 1) + b"!"


@pytest.mark.parametrize(
    ("bound", "said"),
    [
        ("MAX_INBOUND", "3 peers that dialled this node are linked"),
        ("MAX_INBOUND_PER_HOST", f"3 peers that dialled this node from {LOCAL} are linked"),
    ],
)
def test_peers_that_dialled_in_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, bound: str, said: str
) -> None:
    """Beyond the bound on all the peers that dialled in, or on those from one address (the
    tests' all come from 127.0.0.1; the other bound is left far above), a connection is closed
    before its handshake, the refusal logged with the bound; a place is free once one leaves."""
    monkeypatch.setattr(tcp, bound, 3)

    async def scenario() -> None:
        a = transport(tmp_path / "a")
        await a.start()
        chain_id = a.node.chain.chain_id
        try:
            links = [
                await dial(LOCAL, a.port, PrivateKey.from_label(f"bounds-in-{i}"), chain_id) for i in range(3)
            ]
            assert await until(lambda: len(a.links) == 3)
            reader, _ = await asyncio.open_connection(LOCAL, a.port)
            assert await closes(reader, WAIT_S)  # closed before its handshake: no hello came
            assert reader.at_eof()
            assert any(f"TooManyPeers: {said}" in r.getMessage() for r in caplog.records)
            links[0][1].close()  # one leaves: a place is free again
            assert await until(lambda: len(a.links) == 2)
            await dial(LOCAL, a.port, PrivateKey.from_label("bounds-in-late"), chain_id)
            assert await until(lambda: name("bounds-in-late") in a.links)
        finally:
            await a.stop()

    asyncio.run(scenario())


def test_a_new_handshake_evicts_the_oldest_of_the_busiest_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tcp, "MAX_HANDSHAKES", 4)
    monkeypatch.setattr(tcp, "HANDSHAKE_TIMEOUT_S", WAIT_S)  # the silent ones stay until evicted

    async def scenario() -> None:
        a = transport(tmp_path / "a")
        await a.start()
        try:
            held = []
            for _ in range(4):
                reader, writer = await asyncio.open_connection(LOCAL, a.port)
                await read_frame(reader, tcp.HANDSHAKE_FRAME)  # its hello: in its handshake now
                held.append((reader, writer))
            assert await until(lambda: len(a._handshakes) == 4)
            # The three newest come from one host (as the transport sees them), the oldest
            # from another: the host holding the most loses its oldest, not the oldest of all.
            for w in list(a._handshakes)[1:]:
                a._handshakes[w] = "crowded-host"
            # An honest peer links while the places are full.
            await dial(LOCAL, a.port, PrivateKey.from_label("bounds-honest"), a.node.chain.chain_id)
            assert await until(lambda: name("bounds-honest") in a.links)
            assert await closes(held[1][0], WAIT_S)
            assert list(a._handshakes.values()) == ["127.0.0.1", "crowded-host", "crowded-host"]
        finally:
            await a.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("203.0.113.7", "203.0.113.7"),  # IPv4: the address itself
        ("203.0.113.8", "203.0.113.8"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4 mapped into IPv6: the same host
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),  # IPv6: its /64
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),  # (another address of that /64)
        ("2001:DB8:1:2:0:0:0:9", "2001:db8:1:2::/64"),  # (however it is written)
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # the next /64: another host
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_the_host_of_an_address_is_its_ipv4_address_or_its_ipv6_64(address: str, host: str) -> None:
    """One machine is given a whole IPv6 /64 and may dial from any address in it: the serving
    budget and ``MAX_INBOUND_PER_HOST`` count its /64 as one host (an IPv4 address as itself)."""
    assert host_group(address) == host


def test_the_inbound_places_of_one_host_count_an_ipv6_64_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three peers linked from three addresses of one /64 fill its places (the bound lowered
    to 3); an address of another /64 still finds one."""
    monkeypatch.setattr(tcp, "MAX_INBOUND_PER_HOST", 3)
    a = transport(tmp_path / "a")
    for i in range(3):
        address = f"2001:db8:1:2::{i + 1}"
        link = tcp.Link(f"p{i}", None, None, False, f"[{address}]:9330", host_group(address))  # type: ignore[arg-type]
        a.links[link.name] = link
    assert a._inbound_full(host_group("2001:db8:1:2:ffff::9")) is not None
    assert a._inbound_full(host_group("2001:db8:1:3::1")) is None
    a.node.close()


IDLE_S = 0.5
"""The idle timeout of the tests' links that should be closed [s] (30 s by default)."""
HONEST_IDLE_S = 2.0
"""The idle timeout of the honest link that should stay up [s]: 40 status intervals of 50 ms,
so a busy machine's stalls of a second do not close it."""


def test_silent_and_half_frame_links_are_closed_and_their_places_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host fills its inbound places (lowered to 2) with links that never send a frame, or
    send half of a small one: each held its place for ever. Now the silent one is closed once
    it has sent nothing for the idle timeout (``LinkIdle``, not refused), the other once its
    frame is not whole as long (``FrameTimeout``), and a peer of that host links again (the
    places are free)."""
    monkeypatch.setattr(tcp, "MAX_INBOUND_PER_HOST", 2)

    async def scenario() -> None:
        a = transport(tmp_path / "a", idle_timeout_s=IDLE_S)
        await a.start()
        chain_id = a.node.chain.chain_id
        try:
            silent, kept, _ = await dial(LOCAL, a.port, PrivateKey.from_label("bounds-silent"), chain_id)
            halfway, writer, _ = await dial(LOCAL, a.port, PrivateKey.from_label("bounds-half"), chain_id)
            writer.write(struct.pack(">I", 100) + bytes(50))  # half a small frame, then nothing
            assert await until(lambda: a.stats.connected == 2)  # (the host's places, both taken)
            assert await closes(silent, WAIT_S) and await closes(halfway, WAIT_S)
            assert a.stats.disconnected == {
                name("bounds-silent"): "LinkIdle",
                name("bounds-half"): "FrameTimeout",
            }
            assert name("bounds-silent") not in a.banned  # (a crashed peer leaves such a link too)
            assert await until(lambda: not a.links)
            _, after, _ = await dial(LOCAL, a.port, PrivateKey.from_label("bounds-after"), chain_id)
            assert await until(lambda: a.stats.connected == 3)  # linked: its host's places are free
            for held in (kept, writer, after):  # (held open until now: a writer let go closes)
                held.close()
        finally:
            await a.stop()
            a.node.close()

    asyncio.run(scenario())


def test_an_honest_idle_link_stays_up(tmp_path: Path) -> None:
    """Two nodes with nothing to say (no transactions, no blocks) stay linked for three idle
    timeouts: each sends the other its status every status interval (here 50 ms)."""

    async def scenario() -> None:
        params = test_params([])
        config = NodeConfig(status_interval_ms=50)
        a = TcpTransport(
            Node("a", new_chain(tmp_path / "a", params), config),
            PrivateKey.from_label("idle-a"),
            (LOCAL, 0),
            [],
            tick_ms=20,
            idle_timeout_s=HONEST_IDLE_S,
        )
        await a.start()
        b = TcpTransport(
            Node("b", new_chain(tmp_path / "b", params), config),
            PrivateKey.from_label("idle-b"),
            (LOCAL, 0),
            [(LOCAL, a.port)],
            tick_ms=20,
            idle_timeout_s=HONEST_IDLE_S,
        )
        await b.start()
        try:
            assert await until(lambda: name("idle-b") in a.links and name("idle-a") in b.links)
            link = a.links[name("idle-b")]
            assert await until(
                lambda: time.time() - link.since >= 3 * HONEST_IDLE_S or a.links.get(link.name) is not link
            )
            assert a.links.get(link.name) is link and b.stats.connected == a.stats.connected == 1
            assert a.stats.disconnected == b.stats.disconnected == {}
        finally:
            await b.stop()
            await a.stop()
            a.node.close()
            b.node.close()

    asyncio.run(scenario())
