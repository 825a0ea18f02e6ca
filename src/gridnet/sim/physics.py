"""Home batteries (pure, integer Wh). PV and load come from ``gridnet.world`` (pvlib,
demandlib)."""

from __future__ import annotations

import math

from gridnet.units import INTERVAL_MS, Wh

INTERVAL_H = INTERVAL_MS / 3_600_000
"""Length of an interval [h]."""


class Battery:
    """A home battery: ``capacity_wh`` of storage, at most ``max_power_w`` in or out (so
    ``max_power_w`` × 0.25 h per interval, of everything charged and discharged since
    :meth:`begin_interval` together), and a round-trip efficiency split evenly between
    charging and discharging (√efficiency each way). Every amount is whole Wh on the home's
    side of the battery: what ``charge`` takes and ``discharge`` delivers; the losses are
    counted in ``lost_wh``. A home nets what its load, its PV and its trades ask of the
    battery first and makes one :meth:`move` an interval (:meth:`clip` tells what it can)."""

    def __init__(self, capacity_wh: Wh, soc_wh: Wh, max_power_w: int, efficiency: float = 1.0) -> None:
        if capacity_wh < 0 or max_power_w < 0 or not 0.0 < efficiency <= 1.0:
            raise ValueError(
                "a battery needs a capacity and a power of 0 or more and an efficiency in (0, 1]"
            )
        self.capacity_wh = capacity_wh
        self.soc_wh = max(0, min(soc_wh, capacity_wh))
        self.max_wh = math.floor(max_power_w * INTERVAL_H)
        """Most energy in and out together in one interval [Wh]."""
        self.one_way = math.sqrt(efficiency)
        self.lost_wh: Wh = 0
        self.moved_wh: Wh = 0
        """Taken plus delivered in this interval [Wh] (at most ``max_wh``)."""

    def begin_interval(self) -> None:
        """A new interval: the power limit applies afresh."""
        self.moved_wh = 0

    @property
    def soc_percent(self) -> float:
        return 100.0 * self.soc_wh / self.capacity_wh if self.capacity_wh else 0.0

    def can_take(self) -> Wh:
        """The most :meth:`charge` takes now [Wh] (the power left, the room left)."""
        room = math.floor((self.capacity_wh - self.soc_wh) / self.one_way)
        return max(0, min(self.max_wh - self.moved_wh, room))

    def can_deliver(self) -> Wh:
        """The most :meth:`discharge` delivers now [Wh] (the power left, the charge)."""
        return max(0, min(self.max_wh - self.moved_wh, math.floor(self.soc_wh * self.one_way)))

    def clip(self, wh: Wh) -> Wh:
        """What :meth:`move` would move of ``wh`` [Wh] (+ in, - out), changing nothing."""
        return min(wh, self.can_take()) if wh >= 0 else -min(-wh, self.can_deliver())

    def move(self, wh: Wh) -> Wh:
        """Charge ``wh`` [Wh] when it is positive, discharge ``-wh`` when it is negative, as
        far as it can; returns what moved (+ taken, - delivered) [Wh]."""
        return self.charge(wh) if wh >= 0 else -self.discharge(-wh)

    def charge(self, wh: Wh) -> Wh:
        """Take up to ``wh`` (within the power limit and the room left); returns what was
        taken [Wh] (of which ``taken × √efficiency`` is stored)."""
        taken = max(0, min(wh, self.can_take()))
        stored = min(self.capacity_wh - self.soc_wh, math.floor(taken * self.one_way))
        self.soc_wh += stored
        self.lost_wh += taken - stored
        self.moved_wh += taken
        return taken

    def discharge(self, wh: Wh) -> Wh:
        """Deliver up to ``wh`` (within the power limit and the charge); returns what was
        delivered [Wh] (it drew ``delivered / √efficiency`` from the charge)."""
        delivered = max(0, min(wh, self.can_deliver()))
        drawn = min(self.soc_wh, math.ceil(delivered / self.one_way))
        self.soc_wh -= drawn
        self.lost_wh += drawn - delivered
        self.moved_wh += delivered
        return delivered
