"""The reading collector: batches every meter's signed reading of an interval into one
transaction.

Readings handed over in this process (``[telemetry] kind = "memory"``) come from the world's
meters by construction and are batched as they come. Over MQTT any client of the broker may
publish on the readings topics, and one reading the chain refuses (a meter it does not know, a
signature that does not verify, a reading it already holds) gets the whole ``SubmitReadings``
refused: there the collector takes only what its :class:`ReadingGate` admits, counting the
rest by rule (``MqttTelemetry.dropped``, the report's ``collector.dropped``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from gridnet.agents.base import Agent
from gridnet.agents.roles import Role
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import DuplicateReading, ReadingOutOfOrder, ReadingSignatureInvalid, UnknownMeter
from gridnet.ledger.params import Allocation
from gridnet.ledger.txs.meter import GAP_GRACE_INTERVALS, SubmitReadings
from gridnet.meter.mqtt import MqttTelemetry
from gridnet.meter.reading import SignedReading, is_signed_by
from gridnet.sim.scenario import gnc
from gridnet.units import Address, Interval, PublicKey

if TYPE_CHECKING:
    from gridnet.agents.world import World


class ReadingGate:
    """Which readings from an untrusted transport a collector takes: one of a meter it serves,
    signed by that meter's key, for an interval after the last it took of that meter. The
    rest is dropped with the rule the chain would refuse it for."""

    def __init__(self, keys: Mapping[Address, PublicKey]) -> None:
        self.keys = keys
        """The meters it serves -> their keys (the keys their certificates carry)."""
        self.last: dict[Address, Interval] = {}
        """Meter -> the interval of the last reading taken of it."""

    def admit(self, signed: SignedReading) -> str | None:
        """None when ``signed`` is taken (then it is the meter's last); else the rule it breaks."""
        r = signed.reading
        key = self.keys.get(r.meter)
        if key is None:
            return UnknownMeter.__name__
        if not is_signed_by(signed, key):
            return ReadingSignatureInvalid.__name__  # (forged, or altered on the way)
        last = self.last.get(r.meter)
        if last is not None and r.interval == last:
            return DuplicateReading.__name__  # (replayed, or delivered twice: QoS 1 is at least once)
        if last is not None and r.interval < last:
            return ReadingOutOfOrder.__name__  # (an earlier interval's, replayed)
        self.last[r.meter] = r.interval
        return None


class Collector(Agent):
    role = "collector"

    def __init__(self, name: str, key: PrivateKey, node: str) -> None:
        super().__init__(name, key, node)
        self.sent: dict[Address, Interval] = {}
        """Meter -> the interval of the last reading of it this collector submitted."""
        self.held: dict[Address, list[SignedReading]] = {}
        """Meter -> its readings that would leave an interval without a reading, kept back
        while the chain would refuse them (``GAP_GRACE_INTERVALS``), in interval order."""

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(100))]

    def collect(self, world: World, interval: Interval) -> None:
        telemetry = world.telemetry
        if isinstance(telemetry, MqttTelemetry):
            if telemetry.admit is None:
                served = {
                    a.meter.meter_id: a.meter.key.public_key for a in world.agents if a.meter is not None
                }
                telemetry.admit = ReadingGate(served).admit
            telemetry.flush(len(world.readings.get(interval, {})))  # bounded wait: all taken
        sent = dict(self.sent)
        # (the readings of ``interval`` are collected once it has ended: the block is of a later one)
        batch = tuple(self.ready(telemetry.collect(), interval + 1))
        if batch and not world.submit(self, SubmitReadings(batch)):
            # Not taken now (refused, or waiting on a nonce): the meters' last readings sent are
            # those before it, so that their next are held across the gap rather than sinking
            # every later batch until the grace ends (``ReadingGapEarly``).
            self.sent = sent

    def ready(self, arrived: list[SignedReading], now: Interval) -> list[SignedReading]:
        """Of the readings ``arrived`` and those held, in canonical order (by meter and interval,
        whatever order the transport delivered them in), those the chain takes in a block of
        interval ``now``; the others are held. A reading that leaves an interval without a reading (one
        lost on the way) is taken only once that interval has been over for
        ``GAP_GRACE_INTERVALS``, and with it the meter's later ones: sent earlier, it would get
        the whole batch refused (``ReadingGapEarly``)."""
        readings = sorted([*(r for held in self.held.values() for r in held), *arrived], key=_meter_interval)
        self.held = {}
        taken = []
        for signed in readings:
            r = signed.reading
            last = self.sent.get(r.meter)
            if r.meter in self.held or (
                last is not None and r.interval > last + 1 and now < last + 2 + GAP_GRACE_INTERVALS
            ):
                self.held.setdefault(r.meter, []).append(signed)
                continue
            taken.append(signed)
            self.sent[r.meter] = r.interval
        return taken


def _meter_interval(signed: SignedReading) -> tuple[bytes, int]:
    return signed.reading.meter, signed.reading.interval


def build(world: World) -> list[Agent]:
    return [Collector("collector", world.key("collector"), world.node_for(2))]


ROLE = Role("collector", 70, build)
