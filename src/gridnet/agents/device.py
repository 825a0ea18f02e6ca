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

    def operate(self, sell_wh: Wh, charge_wh: Wh) -> tuple[Wh, Wh]:
        if self.battery is None:
            return 0, 0
        return self.battery.discharge(sell_wh), self.battery.charge(charge_wh)
