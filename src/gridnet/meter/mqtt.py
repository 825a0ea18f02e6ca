"""MQTT telemetry: meters publish signed readings to a broker, a collector subscribes.

``MqttBroker`` runs an amqtt broker in this process (its asyncio loop in a background
thread), listening on 127.0.0.1 only. ``MqttTelemetry`` implements the ``Telemetry``
protocol with two paho-mqtt clients: a publisher that sends each reading's canonical bytes
on ``{prefix}/{meter id hex}`` with QoS 1, and a collector subscribed to ``{prefix}/#``
that decodes what arrives. Bytes are produced and read only by ``gridnet.encoding``; a
payload that does not decode is counted in ``undecodable`` and skipped. Any client of the
broker may publish there, so what decodes is only a candidate: ``admit`` (the collector's
rules) decides what is taken, and ``dropped`` counts the rest by reason.

Every wait is bounded: connecting, subscribing, ``flush`` and stopping each take a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gridnet.encoding import decode, encode
from gridnet.errors import ConfigError, DecodeError, Oversize, TelemetryTimeout
from gridnet.meter.reading import SignedReading

LOOPBACK: Final = "127.0.0.1"
DEFAULT_TOPIC_PREFIX: Final = "gridnet/readings"
QOS_AT_LEAST_ONCE: Final = 1
MAX_READING_BYTES: Final = 4096
"""A signed reading is well under 200 bytes; anything larger is not one."""
MAX_BACKLOG: Final = 65_536
"""Readings the collector holds at most between two collections before checking them
(``MqttTelemetry.max_backlog``): 65 times a 1,000-meter area's readings of one interval, and
at most a few tens of MB. Anyone may publish on the broker: without a bound, a flood of small
readings between two collections filled memory; beyond it they are dropped (``Backlog``)."""
MAX_FIELD_BYTES: Final = MAX_READING_BYTES
"""The longest field of an MQTT packet the broker reads (a publish's payload, a topic, a client
id) [bytes]: a reading is the longest thing it carries. A client that sends a longer one is
disconnected before the broker reads it (amqtt has no packet size limit of its own, and paho
none for MQTT 3.1.1): a 250 MB publish was read whole, by the broker and again by the
collector."""

_log = logging.getLogger(__name__)


# --- the broker ---------------------------------------------------------------------------


class MqttBroker:
    """An amqtt broker on 127.0.0.1, run by an asyncio loop in a background thread.

    ``port=0`` (the default) lets the system pick a free port; ``.port`` tells which.
    Use as a context manager, or call ``start()`` and ``stop()``.
    """

    host: Final = LOOPBACK

    def __init__(self, port: int = 0, *, timeout_s: float = 10.0) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"MQTT broker port {port} is not in 0..65535")
        self._requested_port = port
        self._timeout_s = timeout_s
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._cut = 0

    @property
    def port(self) -> int:
        if self._port is None:
            raise ConfigError("the MQTT broker is not running: call start() first")
        return self._port

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._port is not None

    @property
    def cut(self) -> int:
        """Clients disconnected for a field longer than MAX_FIELD_BYTES."""
        return self._cut

    def _cut_client(self, peer: str, size: int) -> None:
        """Called (in the broker's thread) when a client sent a field of ``size`` bytes."""
        self._cut += 1
        _log.warning(
            "MQTT broker: disconnected %s, which sent a packet field of %d bytes (at most %d)",
            peer,
            size,
            MAX_FIELD_BYTES,
        )

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{self._requested_port}"}},
            # Only anonymous authentication: no $SYS topics, no packet logging, no persistence.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

    def start(self) -> MqttBroker:
        if self._thread is not None:
            raise ConfigError("this MQTT broker was already started; make a new MqttBroker")
        self._thread = threading.Thread(target=self._run, name="gridnet-mqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._timeout_s):
            self.stop()
            raise ConfigError(f"the MQTT broker did not start within {self._timeout_s:g} s")
        if self._start_error is not None or self._port is None:
            error = self._start_error
            self.stop()
            raise ConfigError(
                f"the MQTT broker could not listen on {LOOPBACK}:{self._requested_port}: {error}"
            ) from error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._start_broker())
        except BaseException as exc:  # reported to start(), which raises ConfigError
            self._start_error = exc
            self._ready.set()
            _cancel_remaining(loop)
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            _cancel_remaining(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _start_broker(self) -> None:
        # Imported here: amqtt is only needed when MQTT is used.
        from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
        from amqtt.broker import Broker

        on_cut = self._cut_client

        class BoundedReader(StreamReaderAdapter):  # type: ignore[misc]
            """A client's stream that refuses a read of more than MAX_FIELD_BYTES (amqtt reads a
            payload, a topic or a client id in one read of its length): the broker then sees
            the connection reset, and ends it, never holding more than its stream buffer."""

            def __init__(self, reader: asyncio.StreamReader, peer: str) -> None:
                super().__init__(reader)
                self.peer = peer
                self.reset = False

            async def read(self, n: int = -1) -> bytes:
                if not self.reset and not 0 <= n <= MAX_FIELD_BYTES:
                    self.reset = True
                    on_cut(self.peer, n)
                if self.reset:
                    raise ConnectionResetError(f"a packet field of more than {MAX_FIELD_BYTES} bytes")
                return await super().read(n)  # type: ignore[no-any-return]

        class BoundedBroker(Broker):  # type: ignore[misc]
            async def stream_connected(
                self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
            ) -> None:
                peer = "{}:{}".format(*writer.get_extra_info("peername", ("?", "?"))[:2])
                bounded = BoundedReader(reader, peer)
                await self._client_connected(listener_name, bounded, StreamWriterAdapter(writer))

        broker = BoundedBroker(self._config())
        await broker.start()
        self._broker = broker
        # Private to amqtt, but the only way to learn the port the system picked for port 0.
        server = broker._servers["default"].instance
        self._port = int(server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None

    def stop(self) -> None:
        """Shut the broker down, join its thread and free the port (idempotent)."""
        loop, thread = self._loop, self._thread
        if thread is None:
            return
        if loop is not None and thread.is_alive() and self._broker is not None:
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                future.result(self._timeout_s)
            except Exception as exc:  # still stop the loop below; say what went wrong
                _log.warning("MQTT broker shutdown did not complete cleanly: %r", exc)
        if loop is not None and thread.is_alive():
            # RuntimeError: the loop closed meanwhile (a failed start), nothing to stop.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        thread.join(self._timeout_s)
        if thread.is_alive():
            raise ConfigError(f"the MQTT broker thread did not stop within {self._timeout_s:g} s")
        self._port = None

    def __enter__(self) -> MqttBroker:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel and reap the tasks still pending on ``loop`` (connection handlers and the like)."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=5.0))


# --- the clients --------------------------------------------------------------------------


def _client_id(role: str) -> str:
    return f"gridnet-{role}-{secrets.token_hex(6)}"


class _Connection:
    """A paho client connected (CONNACK received) with its network loop in a thread."""

    def __init__(self, role: str, host: str, port: int, timeout_s: float) -> None:
        self.role = role
        self.connected = threading.Event()
        self.refused: ReasonCode | None = None
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=_client_id(role),
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        self.client.connect_timeout = timeout_s
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self._host, self._port, self._timeout_s = host, port, timeout_s

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self.refused = reason_code
        else:
            self.connected.set()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        self.connected.clear()

    def open(self) -> None:
        where = f"{self._host}:{self._port}"
        try:
            self.client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            raise ConfigError(
                f"MQTT broker at {where} cannot be reached ({exc.strerror or exc}); is it running?"
            ) from None
        self.client.loop_start()
        deadline = time.monotonic() + self._timeout_s
        while not self.connected.wait(0.05):
            if self.refused is not None or time.monotonic() > deadline:
                self.close()
                why = f"refused: {self.refused}" if self.refused is not None else "no answer"
                raise ConfigError(f"MQTT broker at {where} did not accept the {self.role} ({why})")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class MqttTelemetry:
    """Telemetry through an MQTT broker: ``publish`` sends, ``collect`` returns what arrived.

    The collector is subscribed before the constructor returns, so nothing published
    afterwards is missed. ``flush`` waits (bounded) until readings have arrived; ``close``
    disconnects both clients. Raises ``ConfigError`` when the broker cannot be reached.
    """

    def __init__(
        self,
        host: str = LOOPBACK,
        port: int = 1883,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        if not topic_prefix or any(c in topic_prefix for c in "#+") or topic_prefix.endswith("/"):
            raise ConfigError(
                f"MQTT topic prefix {topic_prefix!r} must be a plain topic (no wildcards, no trailing '/')"
            )
        self.host, self.port, self.topic_prefix = host, port, topic_prefix
        self._timeout_s = timeout_s
        self._arrived = threading.Condition()
        self._candidates: list[SignedReading] = []
        """Decoded, not yet put to ``admit`` (filled by the collector's network thread)."""
        self.max_backlog = MAX_BACKLOG
        """Candidates held at most; one more is dropped as ``Backlog``."""
        self._inbox: list[SignedReading] = []
        """Taken, not yet collected."""
        self._received_total = 0
        self._published_total = 0
        self.admit: Callable[[SignedReading], str | None] | None = None
        """What decides whether a reading that arrived is taken: None, or the reason it is
        dropped (counted in ``dropped``). Run on the thread that calls ``flush`` or ``collect``
        (it may read the chain); when unset, every reading that decodes is taken."""
        self.dropped: Counter[str] = Counter()
        """Payloads not taken, by reason: ``Undecodable``, ``Oversize`` (over
        MAX_READING_BYTES, when a broker lets one through), ``Backlog`` (``max_backlog``
        arrived and not yet put to ``admit``) and those ``admit`` gave."""
        self._subscribed = threading.Event()
        self._closed = False

        self._collector = _Connection("collector", host, port, timeout_s)
        self._collector.client.on_message = self._on_message
        self._collector.client.on_subscribe = self._on_subscribe
        self._collector.client.on_connect = self._on_collector_connect
        self._publisher = _Connection("publisher", host, port, timeout_s)
        self._publisher.client.max_inflight_messages_set(100)
        try:
            self._collector.open()
            if not self._subscribed.wait(timeout_s):
                raise ConfigError(f"MQTT broker at {host}:{port} did not confirm the subscription")
            self._publisher.open()
        except BaseException:
            self.close()
            raise

    # -- collector callbacks (run in the collector's network thread) --

    def _on_collector_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        self._collector._on_connect(client, userdata, flags, reason_code, properties)
        if not reason_code.is_failure:  # (re)subscribe on every connection
            client.subscribe(f"{self.topic_prefix}/#", qos=QOS_AT_LEAST_ONCE)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode], properties: Any
    ) -> None:
        if all(not code.is_failure for code in reason_codes):
            self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            reading = decode(bytes(message.payload), SignedReading, max_bytes=MAX_READING_BYTES)
        except DecodeError as exc:
            with self._arrived:
                self.dropped["Oversize" if isinstance(exc, Oversize) else "Undecodable"] += 1
            _log.debug("skipped an undecodable payload on %s: %s", message.topic, exc)
            return
        with self._arrived:
            self._received_total += 1
            if len(self._candidates) >= self.max_backlog:  # (a flood between two collections)
                self.dropped["Backlog"] += 1
                return
            self._candidates.append(reading)
            self._arrived.notify_all()

    def _take_arrivals(self) -> None:
        """Put what arrived to ``admit`` (on this thread, the lock released meanwhile): what it
        takes joins the inbox, the rest is counted in ``dropped``."""
        with self._arrived:
            arrived, self._candidates = self._candidates, []
        if self.admit is None:
            taken, reasons = arrived, []
        else:
            verdicts = [(r, self.admit(r)) for r in arrived]
            taken = [r for r, reason in verdicts if reason is None]
            reasons = [reason for _, reason in verdicts if reason is not None]
        with self._arrived:
            self._inbox.extend(taken)
            self.dropped.update(reasons)

    @property
    def undecodable(self) -> int:
        """Payloads on the readings topics that did not decode as a signed reading."""
        with self._arrived:
            return self.dropped["Undecodable"] + self.dropped["Oversize"]

    # -- the Telemetry protocol --

    def publish(self, reading: SignedReading) -> None:
        """Send ``reading`` (QoS 1) on ``{prefix}/{meter id hex}``; returns once queued."""
        if self._closed:
            raise ConfigError("this MQTT telemetry is closed")
        topic = f"{self.topic_prefix}/{reading.reading.meter.hex()}"
        info = self._publisher.client.publish(topic, encode(reading), qos=QOS_AT_LEAST_ONCE)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):  # NO_CONN: queued for later
            raise ConfigError(f"MQTT publish on {topic} failed: {paho.error_string(info.rc)}")
        self._published_total += 1

    def collect(self) -> list[SignedReading]:
        """Every reading taken since the last call, in arrival order."""
        self._take_arrivals()
        with self._arrived:
            batch, self._inbox = self._inbox, []
        return batch

    def flush(self, expected: int | None = None, timeout_s: float | None = None) -> int:
        """Wait until ``expected`` readings taken (``admit``) are waiting to be collected
        (default: until as many readings as this object published have arrived, whatever
        ``admit`` makes of them); returns how many taken are waiting.

        Raises ``TelemetryTimeout`` if they have not arrived within ``timeout_s``.
        """
        limit = self._timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        target = self._published_total if expected is None else expected
        while True:
            self._take_arrivals()
            with self._arrived:
                have = self._received_total if expected is None else len(self._inbox)
                if have >= target:
                    return len(self._inbox)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TelemetryTimeout(
                        f"only {have} of {target} readings reached the MQTT collector within {limit:g} s"
                    )
                if not self._candidates:
                    self._arrived.wait(min(remaining, 0.1))

    @property
    def published(self) -> int:
        """Readings published through this object."""
        return self._published_total

    @property
    def received(self) -> int:
        """Readings the collector has decoded (collected or not)."""
        with self._arrived:
            return self._received_total

    def close(self) -> None:
        """Disconnect both clients and stop their network threads (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for connection in (self._publisher, self._collector):
            connection.close()

    def __enter__(self) -> MqttTelemetry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
