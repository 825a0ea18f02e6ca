"""Real peer links: asyncio TCP, authenticated and encrypted, around the sans-IO node.

Link protocol. Each side sends a ``Hello`` frame: protocol version, chain id, its node key,
a fresh X25519 key, and its node key's signature (PEER domain) of ``chain_id || X25519
key``: the link is authenticated by the node keys and bound to one chain. Then every frame
is encrypted and authenticated with the agreed session key (``crypto.boxes.Session``: counter
nonces, so replayed or reordered frames fail). A frame is a 4-byte big-endian length and
its bytes, at most ``MAX_FRAME`` long. A peer that sends a bad hello, an oversized or
undecodable frame, or keeps sending invalid data (the node counts faults) is disconnected
and refused for a while; the other links keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.crypto.boxes import SESSION_OVERHEAD, Session, ephemeral_keypair
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import U32, HashBytes, PublicKeyBytes, SignatureBytes, Wire, decode, encode
from gridnet.errors import FrameTooLarge, GridnetError, HandshakeFailed, WrongChain
from gridnet.ledger.chain import now_ms
from gridnet.ledger.transactions import Transaction
from gridnet.node.messages import (
    MAX_MESSAGE_BYTES,
    DatagramMsg,
    Message,
    TxsMsg,
    decode_message,
    encode_message,
)
from gridnet.node.node import Node, Outgoing
from gridnet.node.relay_peer import RelayPeer

PROTOCOL_VERSION: Final = 1
MAX_FRAME: Final = MAX_MESSAGE_BYTES + SESSION_OVERHEAD
HANDSHAKE_TIMEOUT_S: Final = 5.0
MAX_FAULTS: Final = 3
"""Invalid data a peer may send before it is disconnected."""
BAN_S: Final = 60.0
_log = logging.getLogger(__name__)


class Hello(Wire, frozen=True):
    version: U32
    chain_id: HashBytes
    node_key: PublicKeyBytes
    ephemeral: HashBytes
    """X25519 public key for this link only."""
    signature: SignatureBytes
    """The node key's signature (PEER domain) of chain_id || ephemeral."""


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(4)
    (length,) = struct.unpack(">I", header)
    if length > MAX_FRAME:
        raise FrameTooLarge(f"frame of {length} bytes; the limit is {MAX_FRAME}")
    return await reader.readexactly(length)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


@dataclass
class Link:
    name: str
    """The peer's node address (gn...)."""
    writer: asyncio.StreamWriter
    session: Session

    def send(self, msg: Message) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame(self.session.encrypt(encode_message(msg))))


@dataclass
class TransportStats:
    connected: int = 0
    disconnected: dict[str, str] = field(default_factory=dict)
    """Peer -> the rule it broke when we dropped it."""


class TcpTransport:
    def __init__(
        self,
        node: Node,
        key: PrivateKey,
        listen: tuple[str, int],
        peers: list[tuple[str, int]],
        *,
        tick_ms: int = 100,
        clock: Callable[[], int] = now_ms,
        relay: RelayPeer | None = None,
    ) -> None:
        """``relay``: the participant of this key that relays and receives datagrams on the
        same links (without one, datagrams are ignored)."""
        self.node = node
        self.relay = relay
        self.key = key
        self.name = address_to_text(key.address)
        self.listen = listen
        self.peer_addresses = peers
        self.tick_ms = tick_ms
        self.clock = clock
        self.links: dict[str, Link] = {}
        self.banned: dict[str, float] = {}
        self.stats = TransportStats()
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        host, port = self.listen
        self._server = await asyncio.start_server(self._accept, host, port, limit=MAX_FRAME + 4)
        self._tasks.append(asyncio.create_task(self._tick_loop()))
        for address in self.peer_addresses:
            self._tasks.append(asyncio.create_task(self._connect_loop(address)))

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._running = False
        if self._server is not None:
            self._server.close()
        for link in list(self.links.values()):
            link.writer.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    # --- traffic -----------------------------------------------------------------------------

    def dispatch(self, out: list[Outgoing]) -> None:
        """Send the node's outgoing messages on their links (a gone peer's are dropped)."""
        for name, msg in out:
            link = self.links.get(name)
            if link is not None:
                link.send(msg)

    async def _tick_loop(self) -> None:
        while self._running:
            now = self.clock()
            self.dispatch(self.node.tick(now))
            if self.relay is not None:
                self.dispatch(self.relay.tick(now))
            await asyncio.sleep(self.tick_ms / 1000)

    async def _connect_loop(self, address: tuple[str, int]) -> None:
        delay = 0.2
        while self._running:
            try:
                reader, writer = await asyncio.open_connection(*address, limit=MAX_FRAME + 4)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            await self._run_link(reader, writer)
            await asyncio.sleep(delay)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._run_link(reader, writer)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Link:
        theirs, session = await handshake(reader, writer, self.key, self.node.chain.chain_id)
        name = address_to_text(address_from_public_key(theirs.node_key))
        if name == self.name:
            raise HandshakeFailed("connected to itself")
        return Link(name, writer, session)

    async def _run_link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link: Link | None = None
        try:
            link = await self._handshake(reader, writer)
            if link.name in self.links or self.banned.get(link.name, 0) > time.monotonic():
                return  # already linked (both dialled each other), or banned for a while
            self.links[link.name] = link
            self.stats.connected += 1
            self.node.add_peer(link.name)
            if self.relay is not None:
                self.relay.add_peer(link.name)
            self.dispatch([(link.name, self.node.status())])
            await self._serve(link, reader)
        except (TimeoutError, GridnetError, asyncio.IncompleteReadError, OSError) as exc:
            if link is not None and isinstance(exc, GridnetError):
                self._ban(link.name, exc.rule)
        finally:
            if link is not None and self.links.get(link.name) is link:
                del self.links[link.name]
                self.node.remove_peer(link.name)
                if self.relay is not None:
                    self.relay.remove_peer(link.name)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, link: Link, reader: asyncio.StreamReader) -> None:
        while self._running:
            payload = link.session.decrypt(await read_frame(reader))
            msg = decode_message(payload)
            if isinstance(msg, DatagramMsg):
                if self.relay is not None:  # (a bad datagram is dropped by its rule, not a fault)
                    self.dispatch(self.relay.handle(link.name, msg, self.clock()))
            else:
                self.dispatch(self.node.handle(link.name, msg, self.clock()))
            if self.node.stats.peer_faults.get(link.name, 0) >= MAX_FAULTS:
                self._ban(link.name, "TooManyFaults")
                return
            await link.writer.drain()
            await asyncio.sleep(0)  # a busy link must not starve the others and the API

    def _ban(self, name: str, rule: str) -> None:
        self.stats.disconnected[name] = rule
        self.banned[name] = time.monotonic() + BAN_S
        self.node.stats.peer_faults.pop(name, None)
        _log.warning("disconnected %s: %s", name, rule)


async def handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: PrivateKey, chain_id: bytes
) -> tuple[Hello, Session]:
    """Exchange hellos; return the peer's (checked) and the link's session."""
    private, public = ephemeral_keypair()
    writer.write(
        frame(
            encode(
                Hello(
                    PROTOCOL_VERSION,
                    chain_id,
                    key.public_key,
                    public,
                    key.sign(Domain.PEER, chain_id + public),
                )
            )
        )
    )
    raw = await asyncio.wait_for(read_frame(reader), HANDSHAKE_TIMEOUT_S)
    try:
        theirs = decode(raw, Hello, max_bytes=512, what="hello")
    except GridnetError as exc:
        raise HandshakeFailed(f"malformed hello: {exc}") from None
    if theirs.chain_id != chain_id:
        raise WrongChain("the peer follows another chain")
    if theirs.version != PROTOCOL_VERSION or not verify_signature(
        Domain.PEER, theirs.node_key, theirs.chain_id + theirs.ephemeral, theirs.signature
    ):
        raise HandshakeFailed("the peer's hello is not signed by its node key")
    return theirs, Session(private, public, theirs.ephemeral)


async def dial(
    host: str, port: int, key: PrivateKey, chain_id: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Session]:
    """Open a link to a node as a peer would (for tools, tests and benchmarks)."""
    reader, writer = await asyncio.open_connection(host, port, limit=MAX_FRAME + 4)
    _, session = await handshake(reader, writer, key, chain_id)
    return reader, writer, session


async def flood(
    port: int, chain_id: bytes, txs: list[Transaction], host: str = "127.0.0.1", batch: int = 256
) -> None:
    """Send every transaction to the node at ``host:port`` over one link, in messages of
    ``batch`` as a peer relays them, as fast as it takes them; return once the node has read
    them all (it closes the link after our end of stream)."""
    reader, writer, session = await dial(host, port, PrivateKey.generate(), chain_id)
    for i in range(0, len(txs), batch):
        writer.write(frame(session.encrypt(encode_message(TxsMsg(tuple(txs[i : i + batch]))))))
        await writer.drain()
    await writer.drain()
    writer.write_eof()
    # Read what the node sends until it closes: closing with unread data would reset the
    # connection, and the node's kernel would discard what it has not read yet.
    while await asyncio.wait_for(reader.read(1 << 16), timeout=60):
        pass
    writer.close()
