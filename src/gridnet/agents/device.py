"""A home's simulated meter and battery behind the meter adapter (``gridnet.meter.adapter``):
all the home's trading device reads and operates goes through it."""

from __future__ import annotations

from gridnet.meter.status import MeterStatus, SignedMeterStatus
from gridnet.meter.telemetry import SimulatedMeter
from gridnet.sim.physics import Battery
from gridnet.units import Wh


class SimulatedDevice:
    """The simulator's meter and (optional) battery behind the adapter interface."""

    def __init__(self, meter: SimulatedMeter, battery: Battery | None) -> None:
        self.meter = meter
        self.battery = battery

    def stored_wh(self) -> Wh | None:
        return None if self.battery is None else self.battery.soc_wh

    def firmware(self) -> MeterStatus:
        return self.meter.status().status

    def install(self, version: str, image: bytes) -> SignedMeterStatus:
        return self.meter.install(version, image)

    def operate(self, move_wh: Wh) -> Wh:
        return 0 if self.battery is None else self.battery.move(move_wh)
