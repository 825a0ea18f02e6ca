"""MQTT telemetry through a real amqtt broker on 127.0.0.1 (real TCP, no mocks).

Readings travel meter -> broker -> collector with none lost, each still verifying against
its meter's key, per-meter order kept; garbage on the topic is counted, never fatal; the
broker frees its port when stopped. Every test stops what it starts, even when it fails.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gridnet.agents.collector import ReadingGate
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import ConfigError, TelemetryTimeout
from gridnet.meter.mqtt import LOOPBACK, MqttBroker, MqttTelemetry
from gridnet.meter.reading import SignedReading, is_signed_by
from gridnet.meter.telemetry import SimulatedMeter

pytestmark = pytest.mark.timeout(300)

WAIT_S = 60.0
PREFIX = "gridnet/test/readings"
START = 1_966_080
METERS = 20
INTERVALS = 8


def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def broker() -> Iterator[MqttBroker]:
    server = MqttBroker().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def telemetry(broker: MqttBroker) -> Iterator[MqttTelemetry]:
    client = MqttTelemetry(LOOPBACK, broker.port, topic_prefix=PREFIX, timeout_s=WAIT_S)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def raw_client(broker: MqttBroker) -> Iterator[paho.Client]:
    """A plain paho client on the same broker, to publish what no meter would."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="gridnet-test-raw")
    client.connect(LOOPBACK, broker.port, keepalive=30)
    client.loop_start()
    try:
        assert wait_until(client.is_connected)
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def meters(n: int = METERS) -> list[SimulatedMeter]:
    return [SimulatedMeter(PrivateKey.from_label(f"mqtt-meter-{i}")) for i in range(n)]


def intervals_by_meter(readings: list[SignedReading]) -> dict[bytes, list[int]]:
    """Each meter's intervals in the order its readings appear."""
    out: dict[bytes, list[int]] = {}
    for r in readings:
        out.setdefault(r.reading.meter, []).append(r.reading.interval)
    return out


def publish_day(telemetry: MqttTelemetry, fleet: list[SimulatedMeter]) -> list[SignedReading]:
    sent = []
    for offset in range(INTERVALS):
        for i, meter in enumerate(fleet):
            reading = meter.read(START + offset, exported_wh=100 * i + offset, imported_wh=offset)
            telemetry.publish(reading)
            sent.append(reading)
    return sent


def test_readings_travel_meter_broker_collector_with_none_lost(telemetry: MqttTelemetry) -> None:
    fleet = meters()
    sent = publish_day(telemetry, fleet)
    assert len(sent) == METERS * INTERVALS == telemetry.published

    assert telemetry.flush(len(sent), timeout_s=WAIT_S) == len(sent)
    got = telemetry.collect()
    assert len(got) == len(sent)
    assert sorted(got, key=lambda r: (r.reading.meter, r.reading.interval)) == sorted(
        sent, key=lambda r: (r.reading.meter, r.reading.interval)
    )
    for meter in fleet:
        own = [r for r in got if r.reading.meter == meter.meter_id]
        assert [r.reading.interval for r in own] == [START + i for i in range(INTERVALS)]
        assert all(is_signed_by(r, meter.key.public_key) for r in own)
    assert telemetry.undecodable == 0
    assert telemetry.collect() == []


def test_flush_without_a_count_waits_for_everything_published(telemetry: MqttTelemetry) -> None:
    fleet = meters(3)
    first = publish_day(telemetry, fleet)
    assert telemetry.flush() == len(first)
    assert intervals_by_meter(telemetry.collect()) == intervals_by_meter(first)
    second = [meter.read(START + INTERVALS, 1, 1) for meter in fleet]
    for reading in second:
        telemetry.publish(reading)
    assert telemetry.flush() == len(second)
    assert intervals_by_meter(telemetry.collect()) == intervals_by_meter(second)
    assert telemetry.received == telemetry.published == len(first) + len(second)


def test_flush_is_bounded_and_names_the_shortfall(telemetry: MqttTelemetry) -> None:
    telemetry.publish(meters(1)[0].read(START, 1, 0))
    started = time.monotonic()
    with pytest.raises(TelemetryTimeout, match="only 1 of 5 readings"):
        telemetry.flush(5, timeout_s=0.3)
    assert time.monotonic() - started < WAIT_S  # bounded by its timeout, not by WAIT_S


def test_garbage_payload_is_counted_and_collection_goes_on(
    telemetry: MqttTelemetry, raw_client: paho.Client
) -> None:
    fleet = meters(4)
    before = [meter.read(START, 5, 0) for meter in fleet]
    for reading in before:
        telemetry.publish(reading)
    telemetry.flush(len(before))

    for payload in (b"\xc1 not msgpack", b"\x93\x01\x02\x03", b""):
        raw_client.publish(f"{PREFIX}/{fleet[0].meter_id.hex()}", payload, qos=1).wait_for_publish(WAIT_S)
    assert wait_until(lambda: telemetry.undecodable == 3)

    after = [meter.read(START + 1, 5, 0) for meter in fleet]
    for reading in after:
        telemetry.publish(reading)
    telemetry.flush(len(before) + len(after))
    got = telemetry.collect()
    assert len(got) == len(before) + len(after)
    assert {(r.reading.meter, r.reading.interval) for r in got} == {
        (r.reading.meter, r.reading.interval) for r in before + after
    }
    assert telemetry.undecodable == 3


def test_readings_from_another_client_on_the_prefix_are_collected(
    telemetry: MqttTelemetry, raw_client: paho.Client
) -> None:
    reading = meters(1)[0].read(START, 7, 0)
    raw_client.publish(f"{PREFIX}/elsewhere", encode(reading), qos=1).wait_for_publish(WAIT_S)
    raw_client.publish("gridnet/other-topic", encode(reading), qos=1).wait_for_publish(WAIT_S)
    assert telemetry.flush(1) == 1
    assert telemetry.collect() == [reading]
    time.sleep(0.1)  # the message outside the prefix would have arrived by now
    assert telemetry.collect() == []


def test_broker_stop_frees_the_port_and_clients_then_fail_clearly() -> None:
    first = MqttBroker().start()
    try:
        port = first.port
        with MqttTelemetry(port=port, topic_prefix=PREFIX) as telemetry:
            telemetry.publish(meters(1)[0].read(START, 1, 0))
            telemetry.flush(1)
    finally:
        first.stop()
    with pytest.raises(ConfigError):
        _ = first.port
    with pytest.raises(ConfigError, match="cannot be reached"):
        MqttTelemetry(port=port, topic_prefix=PREFIX, timeout_s=2.0)

    with MqttBroker(port) as second:
        assert second.port == port
        with MqttTelemetry(port=second.port, topic_prefix=PREFIX) as telemetry:
            telemetry.publish(meters(1)[0].read(START, 1, 0))
            assert telemetry.flush(1) == 1


def test_broker_listens_on_127_0_0_1_only(broker: MqttBroker) -> None:
    with socket.create_connection((LOOPBACK, broker.port), timeout=2.0):
        pass
    # Another loopback address reaches a socket bound to every interface, not one bound to 127.0.0.1.
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", broker.port), timeout=2.0):
        pass


def test_a_port_in_use_is_a_config_error(broker: MqttBroker) -> None:
    second = MqttBroker(broker.port, timeout_s=5.0)
    try:
        with pytest.raises(ConfigError, match="could not listen"):
            second.start()
        assert not second.running
    finally:
        second.stop()
    with MqttTelemetry(port=broker.port, topic_prefix=PREFIX) as telemetry:  # the first still serves
        telemetry.publish(meters(1)[0].read(START, 1, 0))
        assert telemetry.flush(1) == 1


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        MqttBroker(port=70_000)
    with pytest.raises(ConfigError, match="wildcards"):
        MqttTelemetry(port=1, topic_prefix="gridnet/#")


def test_nothing_is_left_running_after_close_and_stop() -> None:
    before = set(threading.enumerate())
    with MqttBroker() as broker, MqttTelemetry(port=broker.port, topic_prefix=PREFIX) as telemetry:
        telemetry.publish(meters(1)[0].read(START, 1, 0))
        telemetry.flush(1)
        assert len(set(threading.enumerate()) - before) >= 3  # broker loop + two paho loops
    assert wait_until(lambda: set(threading.enumerate()) <= before)


def _remaining_length(n: int) -> bytes:
    """MQTT's variable-length encoding of a packet's remaining length."""
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_a_publish_over_the_size_limit_is_cut_off_unread(
    broker: MqttBroker, telemetry: MqttTelemetry
) -> None:
    """A client announcing a 64 MiB payload is disconnected before the broker reads it: a
    250 MB publish was read whole, by the broker and again by the collector (+300 MB). The
    sender here streams it from a buffer of 64 KiB, so only the broker could hold it."""
    size = 64 << 20
    sent = 0
    with socket.create_connection((LOOPBACK, broker.port), timeout=WAIT_S) as raw:
        client_id = b"gridnet-test-big"
        connect = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
        raw.sendall(b"\x10" + _remaining_length(len(connect)) + connect)
        assert raw.recv(4) == b"\x20\x02\x00\x00"  # CONNACK: accepted
        topic = f"{PREFIX}/big".encode()
        raw.sendall(
            b"\x30" + _remaining_length(2 + len(topic) + size) + len(topic).to_bytes(2, "big") + topic
        )
        zeros = bytes(64 << 10)
        with contextlib.suppress(OSError):  # (reset or broken pipe: the broker hung up)
            while sent < size:
                sent += raw.send(zeros)
    assert sent < 16 << 20, f"the broker read {sent:,} bytes of it"  # (socket buffers: a few MiB)
    assert wait_until(lambda: broker.cut == 1)
    reading = meters(1)[0].read(START, 1, 0)
    telemetry.publish(reading)  # the broker still serves the others
    assert telemetry.flush(1) == 1 and telemetry.collect() == [reading]
    assert telemetry.undecodable == 0  # (nothing of it reached the collector)


def test_a_flood_between_two_collections_is_held_only_up_to_the_backlog(
    telemetry: MqttTelemetry, raw_client: paho.Client
) -> None:
    """Anyone may publish small readings: held until the next collection, a flood of them
    grew without bound; past ``max_backlog`` they are dropped and counted, and what is held
    is collected as before."""
    telemetry.max_backlog = 3
    fleet = meters(5)
    for meter in fleet:
        raw_client.publish(f"{PREFIX}/x", encode(meter.read(START, 1, 0)), qos=1).wait_for_publish(WAIT_S)
    assert wait_until(lambda: telemetry.received == 5)
    assert telemetry.dropped == {"Backlog": 2}
    assert len(telemetry.collect()) == 3
    reading = fleet[0].read(START + 1, 1, 0)
    telemetry.publish(reading)
    assert telemetry.flush(1) == 1 and telemetry.collect() == [reading]


def test_flush_counts_only_what_admit_takes_and_the_rest_is_counted_by_reason(
    telemetry: MqttTelemetry, raw_client: paho.Client
) -> None:
    """Anyone on the broker may publish: a reading of a meter the collector does not serve, one
    whose signature is not its meter's, a replay of a genuine one. Arriving first, they made
    ``flush(3)`` return with three readings the chain refuses, and the batch was refused."""
    fleet = meters(3)
    telemetry.admit = ReadingGate({m.meter_id: m.key.public_key for m in fleet}).admit
    stranger = SimulatedMeter(PrivateKey.from_label("mqtt-stranger")).read(START, 1, 0)
    genuine = fleet[0].read(START, 2, 0)
    unsigned = SignedReading(genuine.reading, bytes(64))
    for bad in (stranger, unsigned):
        raw_client.publish(f"{PREFIX}/x", encode(bad), qos=1).wait_for_publish(WAIT_S)
    first = [genuine] + [m.read(START, 3, 0) for m in fleet[1:]]
    for reading in first:
        telemetry.publish(reading)
    raw_client.publish(f"{PREFIX}/x", encode(genuine), qos=1).wait_for_publish(WAIT_S)  # replayed
    assert wait_until(lambda: telemetry.received == 6)  # (all of it has arrived)
    assert telemetry.flush(3) == 3
    assert sorted(telemetry.collect(), key=encode) == sorted(first, key=encode)
    assert telemetry.dropped == {"UnknownMeter": 1, "ReadingSignatureInvalid": 1, "DuplicateReading": 1}

    second = [m.read(START + 1, 1, 0) for m in fleet]
    for reading in second:
        telemetry.publish(reading)
    assert telemetry.flush(3) == 3 and sorted(telemetry.collect(), key=encode) == sorted(second, key=encode)
    raw_client.publish(f"{PREFIX}/x", encode(genuine), qos=1).wait_for_publish(WAIT_S)  # an older one
    assert wait_until(lambda: telemetry.received == 10)
    assert telemetry.collect() == []
    assert telemetry.dropped["ReadingOutOfOrder"] == 1
    with pytest.raises(TelemetryTimeout, match="only 0 of 1 readings"):
        telemetry.flush(1, timeout_s=0.3)  # (dropped ones do not count)
