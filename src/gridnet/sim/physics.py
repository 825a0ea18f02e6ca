"""Simple, deterministic energy curves for the neighbourhood (pure functions).

Good enough to exercise the market: a clear-sky PV bell between 06:00 and 18:00 UTC and
a household load with morning and evening peaks. Realistic profiles (pvlib, demandlib)
and grid physics (pandapower) come later.
"""

from __future__ import annotations

import math

from gridnet.units import INTERVAL_MS, Interval, Wh

INTERVAL_H = INTERVAL_MS / 3_600_000
"""Length of an interval [h]."""
SLOTS_PER_DAY = 86_400_000 // INTERVAL_MS


def hour_of_day(interval: Interval) -> float:
    """Start of ``interval`` [h after 00:00 UTC]."""
    return (interval % SLOTS_PER_DAY) * INTERVAL_H


def pv_energy(interval: Interval, peak_kw: float) -> Wh:
    """PV production in ``interval`` [Wh] of a system of ``peak_kw`` [kW]: a sine bell from
    06:00 to 18:00, evaluated at the middle of the interval."""
    h = hour_of_day(interval) + INTERVAL_H / 2
    if not 6.0 < h < 18.0:
        return 0
    return round(peak_kw * 1000 * math.sin(math.pi * (h - 6.0) / 12.0) * INTERVAL_H)


def load_energy(interval: Interval, daily_kwh: float) -> Wh:
    """Household consumption in ``interval`` [Wh] for ``daily_kwh`` [kWh/day]: a base load
    with a morning (07-09) and an evening (18-22) peak."""
    h = hour_of_day(interval)
    if 7 <= h < 9:
        weight = 2.0
    elif 18 <= h < 22:
        weight = 2.5
    elif 0 <= h < 6:
        weight = 0.5
    else:
        weight = 1.0
    # Weights over the day: 8 slots x 2.0 + 16 x 2.5 + 24 x 0.5 + 48 x 1.0 = 116.
    return round(daily_kwh * 1000 * weight / 116)


class Battery:
    """A home battery [Wh] with a round trip assumed lossless (losses come with the grid model)."""

    def __init__(self, capacity_wh: Wh, soc_wh: Wh) -> None:
        self.capacity_wh = capacity_wh
        self.soc_wh = min(soc_wh, capacity_wh)

    @property
    def soc_percent(self) -> float:
        return 100.0 * self.soc_wh / self.capacity_wh if self.capacity_wh else 0.0

    def charge(self, wh: Wh) -> Wh:
        """Store up to ``wh``; returns what was stored [Wh]."""
        stored = min(wh, self.capacity_wh - self.soc_wh)
        self.soc_wh += stored
        return stored

    def discharge(self, wh: Wh) -> Wh:
        """Deliver up to ``wh``; returns what was delivered [Wh]."""
        delivered = min(wh, self.soc_wh)
        self.soc_wh -= delivered
        return delivered
