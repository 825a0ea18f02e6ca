"""The collector takes only readings its meters signed, once each: over MQTT any local client
of the broker could publish forged readings or replay genuine ones, and the collector put
them in its ``SubmitReadings`` batch, which the chain then refused whole (UnknownMeter,
DuplicateReading): no reading recorded, no subsidy paid, the run not converged. The attacker
here is a participant of the run (a registered role acting before the collector in each
interval), so that what it sends has reached the collector when the collector acts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gridnet.agents.base import Agent
from gridnet.agents.collector import Collector, ReadingGate
from gridnet.agents.roles import Role, register, unregister
from gridnet.agents.world import World
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import DuplicateReading, ReadingOutOfOrder, ReadingSignatureInvalid, UnknownMeter
from gridnet.ledger.txs.meter import GAP_GRACE_INTERVALS, SubmitReadings
from gridnet.meter.mqtt import DEFAULT_TOPIC_PREFIX, LOOPBACK, MAX_FIELD_BYTES, MqttTelemetry
from gridnet.meter.reading import SignedReading, sign_reading
from gridnet.meter.telemetry import InMemoryTelemetry, SimulatedMeter
from gridnet.sim.neighbourhood import Neighbourhood, memory_network
from gridnet.sim.scenario import scenario_from_dict
from gridnet.units import Interval
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(600)

WAIT_S = 60.0
START = 1_966_080
ATTACKED: dict[str, Any] = {
    "simulation": {"intervals": 4, "start": "2026-06-21T10:30:00Z"},
    "homes": {"count": 3},
    "telemetry": {"kind": "mqtt"},
}


def test_the_gate_takes_a_served_meters_signed_reading_once() -> None:
    """Vectors: (reading, the rule it is dropped for, or None when taken), in order."""
    served, stranger = (
        SimulatedMeter(PrivateKey.from_label("served")),
        SimulatedMeter(PrivateKey.from_label("x")),
    )
    gate = ReadingGate({served.meter_id: served.key.public_key})
    first, second = served.read(START, 5, 0), served.read(START + 1, 5, 0)
    vectors: list[tuple[SignedReading, str | None]] = [
        (stranger.read(START, 5, 0), UnknownMeter.__name__),
        (SignedReading(first.reading, bytes(64)), ReadingSignatureInvalid.__name__),
        (first, None),
        (first, DuplicateReading.__name__),
        (second, None),
        (first, ReadingOutOfOrder.__name__),
        (sign_reading(stranger.key, served.read(START + 2, 5, 0).reading), ReadingSignatureInvalid.__name__),
    ]
    assert [gate.admit(reading) for reading, _ in vectors] == [rule for _, rule in vectors]
    assert gate.last == {served.meter_id: START + 1}


def test_the_collector_holds_a_reading_across_a_gap_until_the_chain_takes_it() -> None:
    """A reading lost on the way leaves its meter's next one across a gap, which the chain
    takes only once the missing interval has been over for GAP_GRACE_INTERVALS: sent before,
    it had the whole batch refused (ReadingGapEarly). The collector holds it back, with the
    meter's later readings, and sends the other meters' readings meanwhile."""
    a, b = SimulatedMeter(PrivateKey.from_label("a")), SimulatedMeter(PrivateKey.from_label("b"))
    collector = Collector("collector", PrivateKey.from_label("collector"), "n0")
    first = [a.read(START, 1, 0), b.read(START, 1, 0)]
    assert collector.ready(first[::-1], START + 1) == sorted(first, key=key_of)
    a.read(START + 1, 1, 0)  # (lost on the way)
    across, then = a.read(START + 2, 1, 0), a.read(START + 3, 1, 0)
    b2, b3 = b.read(START + 1, 1, 0), b.read(START + 2, 1, 0)
    assert collector.ready([across, b2], START + 3) == [b2]
    taken_at = START + 2 + GAP_GRACE_INTERVALS  # (the first interval the chain takes it in)
    assert collector.ready([then, b3], taken_at - 1) == [b3]
    assert collector.ready([], taken_at) == [across, then]
    assert collector.held == {} and collector.sent == {a.meter_id: START + 3, b.meter_id: START + 2}


class RefusingNode:
    """What ``Collector.collect`` uses of a world (its telemetry and its node's answer), with
    a node that refuses the batches it is told to."""

    def __init__(self) -> None:
        self.telemetry = InMemoryTelemetry()
        self.refuse: set[int] = set()
        self.taken: list[tuple[int, ...]] = []

    def submit(self, _who: Agent, payload: SubmitReadings) -> bool:
        intervals = tuple(r.reading.interval for r in payload.readings)
        if intervals[0] in self.refuse:
            return False
        self.taken.append(intervals)
        return True


def test_a_batch_the_node_refuses_leaves_the_next_readings_held_across_the_gap() -> None:
    """The collector counted a batch sent when it handed it over: one the node refused made
    the meters' next readings look in order while on chain they were across a gap, so every
    later batch, for all meters, was refused until the grace ended."""
    meter = SimulatedMeter(PrivateKey.from_label("a"))
    collector = Collector("collector", PrivateKey.from_label("collector"), "n0")
    world = RefusingNode()
    world.refuse.add(START + 1)
    for interval in range(START, START + 3 + GAP_GRACE_INTERVALS):
        world.telemetry.publish(meter.read(interval, 1, 0))
        collector.collect(world, interval)  # type: ignore[arg-type]
    held = [(START + 2, START + 3, START + 4, START + 5)]  # (taken once START + 1 has had its grace)
    assert world.taken == [(START,), *held, (START + 6,)]


def key_of(signed: SignedReading) -> tuple[bytes, int]:
    return signed.reading.meter, signed.reading.interval


class Eavesdropper(Agent):
    """A local client of the run's MQTT broker, acting in each interval just before the
    collector: it publishes a reading of a meter of its own, a served meter's reading it could
    not sign, and replays of what the meters published (this interval's and the last's), then
    waits until they have all reached the collector."""

    role = "eavesdropper"

    def __init__(self, world: World) -> None:
        super().__init__("eavesdropper", world.key("eavesdropper"), world.node_for(0))
        self.forger = SimulatedMeter(PrivateKey.from_label("forger"))
        self.client: paho.Client | None = None
        self.sent = 0
        self.replayed = 0

    def connect(self, world: World) -> paho.Client:
        assert world.broker is not None
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="gridnet-test-eavesdropper")
        client.connect(LOOPBACK, world.broker.port, keepalive=30)
        client.loop_start()
        self.client = client
        world.closers.append(self.disconnect)  # (the world stops it, whatever happens)
        assert wait_for(client.is_connected, WAIT_S)
        return client

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def collect(self, world: World, interval: Interval) -> None:
        telemetry = world.telemetry
        assert isinstance(telemetry, MqttTelemetry)
        self.client = self.client or self.connect(world)
        now, before = list(world.readings[interval].values()), list(world.readings[interval - 1].values())
        payloads = [
            encode(self.forger.read(interval, 9_999, 0)),
            encode(SignedReading(now[0].reading, bytes(64))),
            *(encode(r) for r in now + before),
        ]
        for payload in payloads:
            self.client.publish(f"{DEFAULT_TOPIC_PREFIX}/{'00' * 20}", payload, qos=1).wait_for_publish(
                WAIT_S
            )
        self.sent += len(payloads)
        self.replayed += len(now + before)
        assert wait_for(lambda: telemetry.received == telemetry.published + self.sent, WAIT_S)


@pytest.fixture
def eavesdropper() -> Iterator[list[Eavesdropper]]:
    built: list[Eavesdropper] = []

    def build(world: World) -> list[Agent]:
        built.append(Eavesdropper(world))
        return list(built)

    register(Role("eavesdropper", 69, build))  # (the collector acts at 70)
    try:
        yield built
    finally:
        unregister("eavesdropper")


def test_forged_replayed_and_oversized_readings_leave_the_run_converged(
    eavesdropper: list[Eavesdropper], tmp_path: Path
) -> None:
    scenario = scenario_from_dict(ATTACKED, "attacked")
    sim = Neighbourhood(scenario, memory_network(scenario, tmp_path / "out"))
    try:
        broker = sim.world.broker
        assert broker is not None
        big = paho.Client(CallbackAPIVersion.VERSION2, client_id="gridnet-test-big")
        big.connect(LOOPBACK, broker.port, keepalive=30)
        big.loop_start()
        try:
            assert wait_for(big.is_connected, WAIT_S)
            big.publish(f"{DEFAULT_TOPIC_PREFIX}/big", bytes(16 * MAX_FIELD_BYTES), qos=0)
            assert wait_for(lambda: broker.cut == 1, WAIT_S)
        finally:
            big.disconnect()
            big.loop_stop()
        report = sim.run()
    finally:
        sim.close()

    assert report["transactions"]["refused"] == {}
    assert report["converged"]
    intervals = ATTACKED["simulation"]["intervals"]
    assert report["chain"]["transactions_by_type"]["SubmitReadings"] == intervals
    assert report["subsidies"]["readings_subsidised"] > 0
    dropped = report["collector"]["dropped"]
    assert (dropped["Oversize"], dropped["UnknownMeter"], dropped["ReadingSignatureInvalid"]) == (
        1,
        intervals,
        intervals,
    )
    # (a replay of this interval's reading is a duplicate; of the last's, out of order, unless
    # it reached the collector before this interval's own reading)
    assert dropped["DuplicateReading"] + dropped.get("ReadingOutOfOrder", 0) == eavesdropper[0].replayed > 0
