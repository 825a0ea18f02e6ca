"""The adapter between a prosumer's trading device (its policy layer) and its meter.

Seed 004 puts an adapter between each ETSE and its smart meter, "to abstract away from the
specific meter vendor and model": the policy layer reads the energy stored on the premises
and the meter's firmware, installs firmware releases, and operates the delivery of what it
traded. :class:`MeterAdapter` is that interface, and all the device ever calls; a real meter
(a Modbus or DLMS driver) implements the same four methods. ``gridnet.agents.device.SimulatedDevice``
puts the simulator's meter and battery behind it.
"""

from __future__ import annotations

from typing import Protocol

from gridnet.meter.status import MeterStatus, SignedMeterStatus
from gridnet.units import Wh


class MeterAdapter(Protocol):
    def stored_wh(self) -> Wh | None:
        """Energy stored on the premises now [Wh] (None: no storage)."""

    def firmware(self) -> MeterStatus:
        """What the meter is and runs (vendor, model, firmware version, release image)."""

    def install(self, version: str, image: bytes) -> SignedMeterStatus:
        """Install a firmware release; the meter's new signed status (for the chain).
        Raises ``FirmwareInstallFailed`` when the meter cannot take it."""

    def operate(self, move_wh: Wh) -> Wh:
        """Move the storage by ``move_wh`` in this interval, once: charge it when positive,
        discharge it when negative (what the site's surplus or shortfall and what was traded ask
        of it, netted first), as far as the storage allows; what moved (+ taken, - delivered)
        [Wh]."""
