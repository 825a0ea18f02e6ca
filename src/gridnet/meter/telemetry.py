"""How readings travel from meters to the collector that batches them for the chain.

A meter adapter is a pair: meters ``publish`` signed readings, a collector ``collect``s
what arrived. ``InMemoryTelemetry`` (the default, for simulation) hands them over
directly; ``gridnet.meter.mqtt.MqttTelemetry`` sends them through an MQTT broker.
"""

from __future__ import annotations

from typing import Protocol

from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import FirmwareInstallFailed
from gridnet.meter.reading import Reading, SignedReading, sign_reading
from gridnet.meter.status import (
    FACTORY_IMAGE,
    MeterStatus,
    SignedMeterStatus,
    firmware_image_hash,
    sign_status,
)
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
    """A meter: its own key, cumulative counters, a signed reading per interval, and the
    firmware it runs (its signed status; a release installed bumps the status number)."""

    def __init__(
        self,
        key: PrivateKey,
        firmware: str = "1.0.0",
        *,
        vendor: str = "GridMeter",
        model: str = "GM-15",
        updatable: bool = True,
    ) -> None:
        self.key = key
        self.meter_id = key.address
        self.vendor = vendor
        self.model = model
        self.firmware = firmware
        self.image = FACTORY_IMAGE
        """Hash of the installed release's image (zero: the firmware it shipped with)."""
        self.status_seq = 0
        self.updatable = updatable
        """False: every install fails (a meter whose update cannot be applied)."""
        self.total_exported_wh: Wh = 0
        self.total_imported_wh: Wh = 0

    def status(self) -> SignedMeterStatus:
        """Its signed status: vendor, model, the firmware it runs and that release's image."""
        status = MeterStatus(
            self.meter_id, self.status_seq, self.vendor, self.model, self.firmware, self.image
        )
        return sign_status(self.key, status)

    def install(self, version: str, image: bytes) -> SignedMeterStatus:
        """Install a release (its image bytes); the status it then signs names the version and
        the image's hash. Raises ``FirmwareInstallFailed`` when the meter cannot be updated."""
        if not self.updatable:
            raise FirmwareInstallFailed(
                f"meter {address_to_text(self.meter_id)} could not install {self.vendor} {self.model} "
                f"firmware {version}; it keeps running {self.firmware}"
            )
        self.firmware = version
        self.image = firmware_image_hash(image)
        self.status_seq += 1
        return self.status()

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
