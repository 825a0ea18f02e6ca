"""Real peer links: asyncio TCP, authenticated and encrypted, around the sans-IO node.

Link protocol (docs/protocol.md, section 19). A frame is a 4-byte big-endian length and its
bytes. Each side first sends a plain ``Hello`` frame (protocol version, chain id): a peer
on another chain is ``WrongChain`` on both sides. Then the dialler and the listener run a
Noise XX handshake (``crypto/noise.py``) whose prologue is the hello, so a hello altered on
the way fails it; each side's first encrypted frame is its ``Identity``, its node key's
signature (PEER domain) of ``chain_id || handshake hash``: the link is authenticated by the
node keys and bound to one chain. Until then a frame may be at most ``HANDSHAKE_FRAME``
long, at most ``MAX_HANDSHAKES`` connections that dialled us may be in their handshake at
once (one more closes the oldest of the host that holds the most), and each has
``HANDSHAKE_TIMEOUT_S`` to complete it; at most ``MAX_INBOUND`` peers that dialled us are
linked at once, ``MAX_INBOUND_PER_HOST`` of them from one host (an IPv4 address, an IPv6
/64). Every later frame is a Noise transport frame (counter nonces, so replayed or reordered
frames fail), at most ``MAX_FRAME`` long; one no longer than ``READ_BUFFER`` must arrive whole
within the link's idle timeout (``IDLE_TIMEOUT_S``, 15 status intervals), one longer must
announce its length within it and arrive whole within ``FRAME_TIMEOUT_S``. A link that sends
nothing for the idle timeout is closed (``LinkIdle``, not refused: an honest node sends its
status every 2 s). A peer that breaks the handshake, sends an oversized, late or
undecodable frame, does not read what is sent to it (``MAX_SEND_BUFFER``), or keeps sending
invalid data (the node counts faults) is disconnected and refused for a while; the other
links keep working. So what a peer can make the node hold is bounded: at most ``MAX_FRAME``
being read and ``MAX_SEND_BUFFER`` being sent per link, and a place only while it talks.

The tick loop drives the node (and its relay) every ``tick_ms``. A storage error there
(SQLite cannot write: a full disk) does not stop it: the node stops ticking, reports the
failure (``store_failure``, ``/health``), and retries with back-off until a write goes
through, then resumes; meanwhile it still sends its status (and serves waiting sync
requests: ``Node.keep_links``), so its peers keep its links. Any other error ends the tick
loop (``ticking``), and the process stops with it rather than serve a stale head.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sqlite3
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.crypto.noise import Handshake, Session, sealed_size
from gridnet.encoding import U32, HashBytes, PublicKeyBytes, SignatureBytes, Wire, decode, encode
from gridnet.errors import (
    Banned,
    ConfigError,
    FrameTimeout,
    FrameTooLarge,
    GridnetError,
    HandshakeFailed,
    HandshakeTimeout,
    LinkIdle,
    SendBufferFull,
    StoreError,
    TooManyHandshakes,
    TooManyPeers,
    WrongChain,
)
from gridnet.ledger.chain import Chain, now_ms
from gridnet.ledger.store import STORE_ERRORS
from gridnet.ledger.transactions import Transaction
from gridnet.net.hosts import host_group
from gridnet.node.config import bind_problem, format_host_port
from gridnet.node.logs import short
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

PROTOCOL_VERSION: Final = 3
"""Version 3: ``BusyMsg`` (tag 15) and finality checkpoints that carry their slot, which a
version-2 node cannot decode (it would cut the link off as a fault); version 2: the Noise XX
handshake (version 1 exchanged signed X25519 keys)."""
MAX_FRAME: Final = sealed_size(MAX_MESSAGE_BYTES)
"""The largest frame once linked: the largest message, encrypted [bytes]."""
HANDSHAKE_FRAME: Final = 256
"""The largest frame before the handshake completes [bytes]: a hello, a Noise handshake
message or an identity (each under 130 bytes). A longer announced length is refused before
any of it is read."""
HANDSHAKE_TIMEOUT_S: Final = 5.0
"""Time a connection has to complete its handshake [s]."""
MAX_HANDSHAKES: Final = 32
"""Connections that dialled us and are still in their handshake; one more closes the oldest
of the host that holds the most (an honest handshake takes milliseconds, so a host that keeps
the places filled with silent connections only evicts its own)."""
MAX_INBOUND: Final = 64
"""Peers that dialled us and are linked, at most: one more is closed before its handshake
(``TooManyPeers``). The peers this node dials are not counted."""
MAX_INBOUND_PER_HOST: Final = 16
"""Of those, peers that dialled us from one host (an IPv4 address, an IPv6 /64: ``host_group``),
at most: node keys cost nothing, so without it one host could take every inbound place (16:
the nodes of the largest devnet, all on one machine, still link)."""
FRAME_TIMEOUT_S: Final = 30.0
"""Time a frame longer than ``READ_BUFFER`` has to arrive whole once its length is read [s]
(4 MiB in 30 s is 1.1 Mbit/s): a peer cannot hold a frame's buffer by never finishing it."""
IDLE_TIMEOUT_S: Final = 30.0
"""Time a linked peer has to send its next whole frame no longer than ``READ_BUFFER`` [s]
(the node setting ``peer_idle_timeout_ms``): a link that sends nothing for longer is closed
(``LinkIdle``), one that leaves a frame half sent as long is ``FrameTimeout``. Every node
sends each peer its status every ``NodeConfig.status_interval_ms`` (2 s), so an honest link,
even with nothing else to say, is never idle for 15 of them; a silent link no longer holds
one of its host's ``MAX_INBOUND_PER_HOST`` places for ever."""
MAX_SEND_BUFFER: Final = 4 * MAX_FRAME
"""Bytes that may wait to be sent to one peer (what the kernel's socket buffer cannot take
yet); a peer with more waiting does not read what it is sent and is cut off
(``SendBufferFull``)."""
MAX_FAULTS: Final = 3
"""Invalid data a peer may send before it is disconnected."""
BAN_S: Final = 60.0
RETRY_MIN_S: Final = 0.2
RETRY_MAX_S: Final = 5.0
"""Back-off between attempts to reach a peer that does not answer."""
REFUSED_MAX_S: Final = 60.0
"""Back-off between attempts to link with a peer that refuses the link or breaks the
handshake (another chain, a bad hello): it will not change soon."""
STABLE_LINK_S: Final = 10.0
"""A link that lasted less than this counts as a failure for the back-off (a peer that drops
every link at once is not dialled again at once)."""
STILL_FAILING_S: Final = 60.0
"""A failing peer (or store) is logged once at first, then at most this often."""
MAX_REFUSALS_KEPT: Final = 1024
"""(host, rule) pairs whose last logged refusal is remembered (for the log's rate limit), and
cut-off peers whose rule is remembered (``TransportStats.disconnected``)."""
READ_BUFFER: Final = 1 << 16
"""Bytes a connection's reader takes ahead of what the link has read (asyncio pauses the
socket beyond twice this): a peer's bytes wait in the kernel's buffers, not the node's memory,
until a frame of an allowed size asks for them."""
STORE_RETRY_MIN_S: Final = 0.1
STORE_RETRY_MAX_S: Final = 5.0
"""Back-off between attempts to write a store that fails (a full disk) [s]."""
_log = logging.getLogger("gridnet.net")


class Hello(Wire, frozen=True):
    """The plain first frame of each side; it is also the Noise prologue."""

    version: U32
    chain_id: HashBytes


class Identity(Wire, frozen=True):
    """The first encrypted frame of each side."""

    node_key: PublicKeyBytes
    signature: SignatureBytes
    """The node key's signature (PEER domain) of chain_id || the Noise handshake hash."""


async def read_frame(
    reader: asyncio.StreamReader, limit: int = MAX_FRAME, idle_s: float | None = None
) -> bytes:
    """The next frame's bytes; a frame announcing more than ``limit`` bytes is
    :class:`FrameTooLarge` before any of them is read, and one longer than ``READ_BUFFER``
    that is not whole within ``FRAME_TIMEOUT_S`` is :class:`FrameTimeout`. With ``idle_s``
    (a link's idle timeout), a frame no longer than ``READ_BUFFER`` must be whole within it:
    :class:`LinkIdle` when nothing of it came (not even its length), else
    :class:`FrameTimeout`; a longer one must have its length within it."""
    length: int | None = None
    try:
        async with asyncio.timeout(idle_s):
            header = await reader.readexactly(4)
            (length,) = struct.unpack(">I", header)
            if length > limit:
                raise FrameTooLarge(f"frame of {length} bytes; the limit is {limit}")
            if length <= READ_BUFFER:  # (what it holds is bounded by the reader's own buffer)
                return await reader.readexactly(length)
    except TimeoutError:
        if length is None:
            raise LinkIdle(f"it sent nothing for {idle_s:g} s") from None
        raise FrameTimeout(f"a frame of {length} bytes was not whole in {idle_s:g} s") from None
    try:
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            return await reader.readexactly(length)
    except TimeoutError:
        raise FrameTimeout(f"a frame of {length} bytes was not whole in {FRAME_TIMEOUT_S:.0f} s") from None


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


@dataclass
class StoreFailure:
    """The store cannot be written (since when, why, how often it was tried)."""

    reason: str
    since: float
    """When it started failing (monotonic [s])."""
    logged: float
    """When it was last logged (monotonic [s])."""
    attempts: int = 1
    retry_s: float = STORE_RETRY_MIN_S
    """The wait before the next attempt [s]."""


@dataclass
class Link:
    name: str
    """The peer's node address (gn...)."""
    writer: asyncio.StreamWriter
    session: Session
    outbound: bool
    """We dialled it (else it dialled us)."""
    remote: str
    """The peer's HOST:PORT as seen on this link."""
    host: str
    """The host the peer's connection comes from (``host_group``: its IPv4 address, or its IPv6
    address's /64): every key and link of one host shares the node's serving budget
    (``node/serving.py``) and its ``MAX_INBOUND_PER_HOST`` places."""
    since: float = field(default_factory=time.time)
    """When the link came up [s since 1970]."""
    bytes_in: int = 0
    bytes_out: int = 0

    def send(self, msg: Message) -> int:
        """Queue ``msg``; the bytes now waiting to be sent on this link."""
        if self.writer.is_closing():
            return 0
        data = frame(self.session.encrypt(encode_message(msg)))
        self.bytes_out += len(data)
        self.writer.write(data)
        return self.writer.transport.get_write_buffer_size()


@dataclass(frozen=True)
class _LinkEnd:
    """How one connection ended."""

    linked_s: float | None = None
    """How long it was linked [s] (None: it never was)."""
    rule: str = ""
    """Why it was not linked: the rule the handshake broke, Banned, AlreadyLinked."""
    message: str = ""
    peer: str | None = None
    """The peer's name, when the handshake got that far."""

    def why(self) -> str:
        if self.linked_s is not None:
            return f"the link dropped after {self.linked_s:.1f} s"
        return f"{self.rule}: {self.message}" if self.message else self.rule


@dataclass
class TransportStats:
    connected: int = 0
    disconnected: dict[str, str] = field(default_factory=dict)
    """Peer -> the rule it broke when we dropped it (``LinkIdle``: it sent nothing), the last
    ``MAX_REFUSALS_KEPT``."""


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
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        """``relay``: the participant of this key that relays and receives datagrams on the
        same links (without one, datagrams are ignored). ``idle_timeout_s``: a linked peer
        that sends no whole frame for this long is closed (``IDLE_TIMEOUT_S``)."""
        self.node = node
        self.relay = relay
        self.key = key
        self.name = address_to_text(key.address)
        self.listen = listen
        self.peer_addresses = peers
        self.tick_ms = tick_ms
        self.clock = clock
        self.idle_timeout_s = idle_timeout_s
        self.links: dict[str, Link] = {}
        self.banned: dict[str, float] = {}
        self.stats = TransportStats()
        self.last_tick = time.monotonic()
        """When the tick loop last ran (monotonic [s]): the node's heartbeat."""
        self.store_failure: StoreFailure | None = None
        """Set while the store cannot be written: the node does not tick until it can."""
        self._handshakes: dict[asyncio.StreamWriter, str] = {}
        """Connections that dialled us and are in their handshake now (oldest first) -> host."""
        self._refusals: dict[tuple[str, str], float] = {}
        """(host, rule) -> when a failed inbound handshake was last logged."""
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ticking: asyncio.Task[None] | None = None
        self._running = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen and start dialling; a listen address that cannot be bound is a
        ConfigError naming it."""
        self._running = True
        host, port = self.listen
        try:
            self._server = await asyncio.start_server(self._accept, host, port, limit=READ_BUFFER)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen for peers on {format_host_port(host, port)}: {bind_problem(exc)}; choose "
                "another listen address"
            ) from None
        self._ticking = asyncio.create_task(self._tick_loop())
        self._tasks.append(self._ticking)
        for address in self.peer_addresses:
            self._tasks.append(asyncio.create_task(self._connect_loop(address)))

    @property
    def ticking(self) -> asyncio.Task[None]:
        """The tick loop: it ends only when stopped or on an error that is not the store's."""
        assert self._ticking is not None, "not started"
        return self._ticking

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
        """Send the node's outgoing messages on their links (a gone peer's are dropped); a
        peer with more than ``MAX_SEND_BUFFER`` bytes waiting is cut off."""
        for name, msg in out:
            link = self.links.get(name)
            if link is not None and (waiting := link.send(msg)) > MAX_SEND_BUFFER:
                refusal = SendBufferFull(
                    f"{waiting:,} bytes wait to be sent to it (at most {MAX_SEND_BUFFER:,}): it does not read"
                )
                self._ban(name, refusal.rule, str(refusal))
                link.writer.transport.abort()  # (what waits is dropped; its link's task ends)

    async def _tick_loop(self) -> None:
        """Tick the node and its relay. While the store fails, rewrite its head record first
        (a real write), with back-off: the node ticks again once that goes through. Meanwhile
        every tick still sends what needs no write (``Node.keep_links``: its status, so that
        its peers keep its links, and the answers to waiting sync requests)."""
        retry_at = 0.0  # when to try the failing store again [s, monotonic]
        while self._running:
            self.last_tick = time.monotonic()
            failure = self.store_failure
            try:
                if failure is not None and self.last_tick < retry_at:
                    self.dispatch(self.node.keep_links(self.clock()))
                    await asyncio.sleep(self.tick_ms / 1000)
                    continue
                if failure is not None:
                    _probe_store(self.node.chain)
                now = self.clock()
                self.dispatch(self.node.tick(now))
                if self.relay is not None:
                    self.dispatch(self.relay.tick(now))
            except STORE_ERRORS as exc:
                failure = self.store_failed(exc)
                retry_at = time.monotonic() + failure.retry_s
                failure.retry_s = min(failure.retry_s * 2, STORE_RETRY_MAX_S)
                continue
            except Exception as exc:
                _log.error("the node's tick failed: %s: %s; stopping", type(exc).__name__, exc)
                raise
            if failure is not None:
                self.store_failure = None
                _log.warning(
                    "the store accepts writes again after %.1f s (%d failed attempts); resuming",
                    time.monotonic() - failure.since,
                    failure.attempts,
                )
            await asyncio.sleep(self.tick_ms / 1000)

    def store_failed(self, exc: sqlite3.OperationalError) -> StoreFailure:
        """Note that a write failed (logged at first, then at most every ``STILL_FAILING_S``)."""
        now = time.monotonic()
        failure = self.store_failure
        if failure is None:
            failure = self.store_failure = StoreFailure(str(exc), now, now)
            _log.error("cannot write the store: %s; the node stops ticking and retries with back-off", exc)
            return failure
        failure.reason = str(exc)
        failure.attempts += 1
        if now - failure.logged >= STILL_FAILING_S:
            failure.logged = now
            _log.error(
                "still cannot write the store after %.0f s (%d attempts): %s",
                now - failure.since,
                failure.attempts,
                exc,
            )
        return failure

    async def _connect_loop(self, address: tuple[str, int]) -> None:
        """Keep a link to ``address``: dial, serve, dial again after it drops. A peer that
        does not answer, refuses the link or drops it at once is tried again with growing
        back-off (with jitter, so two nodes never keep colliding), logged when it starts
        failing and then at most every ``STILL_FAILING_S``; while the peer is linked through
        a connection it dialled, nothing is dialled."""
        where = format_host_port(*address)
        delay = RETRY_MIN_S
        failures = 0
        logged = 0.0
        while self._running:
            try:
                reader, writer = await asyncio.open_connection(*address, limit=READ_BUFFER)
            except OSError as exc:
                failures += 1
                reason, ceiling = _reason(exc), RETRY_MAX_S
            else:
                end = await self._run_link(reader, writer, outbound=where)
                if end.peer is not None and end.peer in self.links:  # linked the other way
                    while self._running and end.peer in self.links:
                        await asyncio.sleep(1.0)
                    delay, failures = RETRY_MIN_S, 0
                    continue
                if end.linked_s is not None and end.linked_s >= STABLE_LINK_S:  # it was up: dial again soon
                    delay, failures = RETRY_MIN_S, 0
                    await asyncio.sleep(delay)
                    continue
                failures += 1
                # A handshake that timed out is a busy or silent peer, not a refusal.
                slow = end.rule == HandshakeTimeout.__name__
                reason, ceiling = end.why(), RETRY_MAX_S if slow else REFUSED_MAX_S
            if failures == 1 or time.monotonic() - logged >= STILL_FAILING_S:
                logged = time.monotonic()
                again = "" if failures == 1 else f" (still, after {failures} attempts)"
                _log.warning("cannot link with %s: %s%s; retrying in %.1f s", where, reason, again, delay)
            else:
                _log.debug("cannot link with %s: %s; retrying in %.1f s", where, reason, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, ceiling)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (full := self._inbound_full(_peer_host(writer))) is not None:  # closed before anything is read
            self._log_refusal(_peername(writer), full)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        if len(self._handshakes) >= MAX_HANDSHAKES:
            self._evict_handshake()
        await self._run_link(reader, writer, outbound=None)

    def _inbound_full(self, host: str) -> TooManyPeers | None:
        """``TooManyPeers`` when ``MAX_INBOUND`` peers that dialled us are linked, or
        ``MAX_INBOUND_PER_HOST`` from ``host`` (a ``host_group``: an IPv6 /64 counts as one)."""
        inbound = [link for link in self.links.values() if not link.outbound]
        if len(inbound) >= MAX_INBOUND:
            return TooManyPeers(f"{MAX_INBOUND} peers that dialled this node are linked")
        if sum(link.host == host for link in inbound) >= MAX_INBOUND_PER_HOST:
            return TooManyPeers(f"{MAX_INBOUND_PER_HOST} peers that dialled this node from {host} are linked")
        return None

    def _evict_handshake(self) -> None:
        """Close the oldest connection in its handshake of the host that holds the most."""
        hosts = Counter(self._handshakes.values())
        crowded = max(hosts, key=lambda host: hosts[host])
        oldest = next(w for w, host in self._handshakes.items() if host == crowded)
        del self._handshakes[oldest]
        self._log_refusal(
            _peername(oldest),
            TooManyHandshakes(
                f"{MAX_HANDSHAKES} connections are in their handshake ({hosts[crowded]} from this "
                "host): its oldest was closed"
            ),
        )
        oldest.transport.abort()

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, outbound: str | None
    ) -> Link:
        inbound = outbound is None
        if inbound:
            self._handshakes[writer] = _peer_host(writer)
        try:
            node_key, session = await handshake(
                reader, writer, self.key, self.node.chain.chain_id, initiator=not inbound
            )
        finally:
            self._handshakes.pop(writer, None)
        name = address_to_text(address_from_public_key(node_key))
        if name == self.name:
            raise HandshakeFailed(self._same_key(outbound))
        return Link(name, writer, session, not inbound, outbound or _peername(writer), _peer_host(writer))

    def _same_key(self, outbound: str | None) -> str:
        """Why a peer with this node's own key is refused: a --peer naming this node itself,
        or another node run from a copy of its data directory (same node.key)."""
        host, _, port = (outbound or "").rpartition(":")
        if port == str(self.port) and host.strip("[]") in {self.listen[0], "127.0.0.1", "::1", "localhost"}:
            return f"{outbound} is this node itself (a --peer names its own listen address)"
        who = f"the node at {outbound}" if outbound is not None else "a node that dialled this one"
        return (
            f"{who} uses this node's own key (itself, or a copy of its data directory): each node "
            "needs its own node.key"
        )

    async def _run_link(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, outbound: str | None
    ) -> _LinkEnd:
        """Handshake and serve one connection (``outbound``: the HOST:PORT we dialled; None
        for one that dialled us) until it ends; how it ended."""
        link: Link | None = None
        where = outbound or _peername(writer)
        try:
            link = await self._handshake(reader, writer, outbound)
            until = self.banned.get(link.name, 0) - time.monotonic()
            if until > 0:
                refusal = Banned(f"{short(link.name)} is cut off here for another {until:.0f} s")
                if outbound is None:
                    self._log_refusal(where, refusal)
                return _LinkEnd(rule=refusal.rule, message=str(refusal), peer=link.name)
            full = None if outbound else self._inbound_full(link.host)  # (others linked meanwhile)
            if full is not None:
                self._log_refusal(where, full)
                return _LinkEnd(rule=full.rule, message=str(full), peer=link.name)
            existing = self.links.get(link.name)
            if existing is not None:  # both dialled each other: both sides keep the same one
                if not self._preferred(link) or self._preferred(existing):
                    _log.debug("already linked with %s: dropped the second connection", short(link.name))
                    return _LinkEnd(rule="AlreadyLinked", peer=link.name)
                existing.writer.close()  # (its task ends without unlinking the peer)
            self.links[link.name] = link
            self.stats.connected += 1
            self.node.add_peer(link.name, link.host)
            if self.relay is not None:
                self.relay.add_peer(link.name)
            _log.info(
                "linked %s (%s %s)", short(link.name), "outbound to" if outbound else "inbound from", where
            )
            self.dispatch([(link.name, self.node.status())])
            await self._serve(link, reader)
        except LinkIdle as exc:  # (a crashed peer, a network gone: not refused)
            self._disconnected(link.name if link is not None else where, exc.rule)
            _log.info("closed the idle link with %s: %s: %s", where, exc.rule, exc)
        except GridnetError as exc:
            if link is None:  # the handshake failed: nothing to ban, the peer was never linked
                if outbound is None:  # (the dialler logs its own attempts, with their back-off)
                    self._log_refusal(where, exc)
                return _LinkEnd(rule=exc.rule, message=str(exc))
            if isinstance(exc, StoreError):  # (this node's store, met outside a message: not its fault)
                _log.error("cannot serve %s: %s", short(link.name), exc)
            else:
                self._ban(link.name, exc.rule, str(exc))
        except (asyncio.IncompleteReadError, OSError) as exc:
            if link is None:
                _log.debug("connection with %s ended during the handshake: %s", where, type(exc).__name__)
                return _LinkEnd(
                    rule=HandshakeFailed.__name__, message="the connection ended during the handshake"
                )
        except Exception as exc:  # a bug met on this link: it ends, logged; the others go on
            _log.error("the link with %s failed: %s: %s", where, type(exc).__name__, exc, exc_info=True)
            if link is None:
                return _LinkEnd(rule="InternalError", message=f"{type(exc).__name__}: {exc}")
        finally:
            if link is not None and self.links.get(link.name) is link:
                del self.links[link.name]
                self.node.remove_peer(link.name)
                if self.relay is not None:
                    self.relay.remove_peer(link.name)
                _log.info("disconnected %s (%s)", short(link.name), link.remote)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        assert link is not None
        return _LinkEnd(linked_s=time.time() - link.since, peer=link.name)

    def _preferred(self, link: Link) -> bool:
        """Of two connections between the same nodes, both keep the one dialled by the node
        with the smaller address."""
        dialler = self.name if link.outbound else link.name
        return dialler == min(self.name, link.name)

    async def _serve(self, link: Link, reader: asyncio.StreamReader) -> None:
        while self._running:
            data = await read_frame(reader, idle_s=self.idle_timeout_s)
            link.bytes_in += 4 + len(data)
            payload = link.session.decrypt(data)
            msg = decode_message(payload)
            if isinstance(msg, DatagramMsg):
                if self.relay is not None:  # (a bad datagram is dropped by its rule, not a fault)
                    self.dispatch(self.relay.handle(link.name, msg, self.clock()))
            else:
                try:
                    self.dispatch(self.node.handle(link.name, msg, self.clock()))
                except STORE_ERRORS as exc:  # not the peer's fault: its blocks come again by sync
                    self.store_failed(exc)
                except StoreError as exc:  # this node's store (damaged: /health says so), not the
                    _log.error("cannot serve %s: %s", short(link.name), exc)  # peer's: the link stays
            if self.node.stats.peer_faults.get(link.name, 0) >= MAX_FAULTS:
                self._ban(link.name, "TooManyFaults", f"{MAX_FAULTS} faults")
                return
            await link.writer.drain()
            await asyncio.sleep(0)  # a busy link must not starve the others and the API

    def _log_refusal(self, where: str, error: GridnetError) -> None:
        """A link that dialled us failed its handshake: logged once per host and rule per
        ``STILL_FAILING_S`` (a misconfigured peer retries for ever, from a new port each time)."""
        key = (_host(where), error.rule)
        now = time.monotonic()
        if now - self._refusals.get(key, -STILL_FAILING_S) >= STILL_FAILING_S:
            self._refusals[key] = now
            _log.warning("refused link with %s: %s: %s", where, error.rule, error)
        else:
            _log.debug("refused link with %s: %s: %s", where, error.rule, error)
        if len(self._refusals) > MAX_REFUSALS_KEPT:  # (many hosts: keep the newer half)
            newest = sorted(self._refusals.items(), key=lambda item: item[1])[MAX_REFUSALS_KEPT // 2 :]
            self._refusals = dict(newest)

    def _ban(self, name: str, rule: str, message: str) -> None:
        """Cut ``name`` off for ``BAN_S``. What is kept of cut-off peers is bounded (keys are
        free to make): bans that ended are forgotten, and the last ``MAX_REFUSALS_KEPT`` rules."""
        now = time.monotonic()
        self.banned = {n: until for n, until in self.banned.items() if until > now}
        self.banned[name] = now + BAN_S
        self._disconnected(name, rule)
        self.node.stats.peer_faults.pop(name, None)
        _log.warning("cut off %s for %.0f s: %s: %s", short(name), BAN_S, rule, message)

    def _disconnected(self, name: str, rule: str) -> None:
        """Remember why ``name`` was disconnected (the last ``MAX_REFUSALS_KEPT``)."""
        disconnected = self.stats.disconnected
        disconnected.pop(name, None)
        disconnected[name] = rule
        while len(disconnected) > MAX_REFUSALS_KEPT:
            del disconnected[next(iter(disconnected))]


def _reason(exc: OSError) -> str:
    """'Connection refused' rather than asyncio's 'Connect call failed (...)'."""
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


def _peername(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"


def _peer_host(writer: asyncio.StreamWriter) -> str:
    """The host a connection comes from: its IP address's ``host_group``."""
    peer = writer.get_extra_info("peername")
    return host_group(str(peer[0])) if isinstance(peer, tuple) else "?"


def _host(remote: str) -> str:
    """The host of a HOST:PORT (``_peername``)."""
    return remote.rpartition(":")[0]


def _probe_store(chain: Chain) -> None:
    """Rewrite the head's record: a real write (a frame appended to the write-ahead log),
    which fails while the disk is full."""
    chain.store.set_meta("head", chain.head.hash)


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    key: PrivateKey,
    chain_id: bytes,
    *,
    initiator: bool,
) -> tuple[bytes, Session]:
    """Open a link within ``HANDSHAKE_TIMEOUT_S`` (the dialler is the Noise initiator):
    the peer's node key and the link's session."""
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            return await _run_handshake(reader, writer, key, chain_id, initiator)
    except TimeoutError:
        raise HandshakeTimeout(f"no complete handshake within {HANDSHAKE_TIMEOUT_S:.0f} s") from None


async def _run_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    key: PrivateKey,
    chain_id: bytes,
    initiator: bool,
) -> tuple[bytes, Session]:
    hello = encode(Hello(PROTOCOL_VERSION, chain_id))
    noise = Handshake(initiator=initiator, prologue=hello)
    writer.write(frame(hello))
    if initiator:
        writer.write(frame(noise.write()))  # -> e
    _check_hello(await read_frame(reader, HANDSHAKE_FRAME), chain_id)
    while not noise.finished:  # <- e, ee, s, es   -> s, se
        noise.read(await read_frame(reader, HANDSHAKE_FRAME))
        if not noise.finished:
            writer.write(frame(noise.write()))
    session = noise.session()
    bound = chain_id + session.handshake_hash
    writer.write(frame(session.encrypt(encode(Identity(key.public_key, key.sign(Domain.PEER, bound))))))
    raw = await read_frame(reader, HANDSHAKE_FRAME)
    try:
        theirs = decode(session.decrypt(raw), Identity, max_bytes=HANDSHAKE_FRAME, what="identity")
    except GridnetError as exc:
        raise HandshakeFailed(f"the peer's identity: {exc}") from None
    if not verify_signature(Domain.PEER, theirs.node_key, bound, theirs.signature):
        raise HandshakeFailed("the peer's node key did not sign this handshake")
    return theirs.node_key, session


def _check_hello(raw: bytes, chain_id: bytes) -> None:
    try:
        theirs = decode(raw, Hello, max_bytes=HANDSHAKE_FRAME, what="hello")
    except GridnetError as exc:
        raise HandshakeFailed(f"malformed hello: {exc}") from None
    if theirs.chain_id != chain_id:
        raise WrongChain("the peer follows another chain")
    if theirs.version != PROTOCOL_VERSION:
        raise HandshakeFailed(
            f"the peer speaks link protocol {theirs.version}; this node speaks {PROTOCOL_VERSION}"
        )


async def dial(
    host: str, port: int, key: PrivateKey, chain_id: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Session]:
    """Open a link to a node as a peer would (for tools, tests and benchmarks)."""
    reader, writer = await asyncio.open_connection(host, port, limit=READ_BUFFER)
    _, session = await handshake(reader, writer, key, chain_id, initiator=True)
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
