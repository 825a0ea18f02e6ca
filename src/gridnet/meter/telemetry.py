"""How readings travel from meters to the collector that batches them for the chain.

A meter adapter is a pair: meters ``publish`` signed readings, a collector ``collect``s
what arrived. ``InMemoryTelemetry`` (the default, for simulation) hands them over
directly; ``gridnet.meter.mqtt.MqttTelemetry`` sends them through an MQTT broker.
"""

from __future__ import annotations

from typing import Protocol

from gridnet.crypto.keys import PrivateKey
from gridnet.meter.reading import Reading, SignedReading, sign_reading
from gridnet.units import Interval, Wh


class Telemetry(Protocol):
    def publish(self, reading: SignedReading) -> None:
        """A meter sends a signed reading."""

    def collect(self) -> list[SignedReading]:
        """Everything that arrived since the last call, in arrival order."""


class InMemoryTelemetry:
    def __init__(self) -> None:
        self._inbox: list[SignedReading] = []

    def publish(self, reading: SignedReading) -> None:
        self._inbox.append(reading)

    def collect(self) -> list[SignedReading]:
        batch, self._inbox = self._inbox, []
        return batch


class SimulatedMeter:
    """A meter: its own key, cumulative counters, and a signed reading per interval."""

    def __init__(self, key: PrivateKey, firmware: str = "1.0.0") -> None:
        self.key = key
        self.meter_id = key.address
        self.firmware = firmware
        self.total_exported_wh: Wh = 0
        self.total_imported_wh: Wh = 0

    def read(self, interval: Interval, exported_wh: Wh, imported_wh: Wh) -> SignedReading:
        """Close ``interval`` with the energy measured in it and sign the reading."""
        if exported_wh < 0 or imported_wh < 0:
            raise ValueError("a meter measures non-negative energy")
        self.total_exported_wh += exported_wh
        self.total_imported_wh += imported_wh
        reading = Reading(
            meter=self.meter_id,
            interval=interval,
            exported_wh=exported_wh,
            imported_wh=imported_wh,
            total_exported_wh=self.total_exported_wh,
            total_imported_wh=self.total_imported_wh,
            firmware=self.firmware,
        )
        return sign_reading(self.key, reading)
