"""Household and business demand (demandlib's BDEW standard load profiles).

A profile is BDEW's for the site's local time (``h0_dyn`` households, with BDEW's dynamisation
over the year: about 11 kWh on a winter day and 8 on a summer day for 3,500 kWh a year;
``g0`` businesses in general, ``g1``-``g6`` kinds of business, ``l0``-``l2`` farms; weekdays,
Saturdays, Sundays and the three seasons), scaled to an annual consumption. A home's day
varies around it: its annual kWh is its own, and every interval is multiplied by a seeded
factor (mean 1, ``variation`` standard deviation, at least 0), so two homes of one size never
draw the same curve. Energy in an interval is the profile's mean power over it times its
length.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from gridnet.errors import ConfigError, shown
from gridnet.units import INTERVAL_MS, Wh

PROFILES = ("h0_dyn", "h0", "g0", "g1", "g2", "g3", "g4", "g5", "g6", "l0", "l1", "l2")
"""demandlib's BDEW profiles."""


@dataclass(frozen=True)
class Consumer:
    annual_kwh: float
    profile: str = "h0_dyn"
    variation: float = 0.0
    """Standard deviation of the per-interval factor (0: BDEW's curve itself)."""
    seed: str = ""
    """Names the consumer's own variation."""


@cache
def _year_profile(year: int, profile: str) -> dict[tuple[int, int, int, int], float]:
    """(month, day, hour, minute) in local time -> mean power [kW] for 1 kWh a year."""
    import warnings

    from demandlib import bdew

    with warnings.catch_warnings():  # (demandlib's own use of pandas)
        warnings.simplefilter("ignore")
        frame = bdew.ElecSlp(year).get_scaled_power_profiles({profile: 1.0})
    series = frame[profile]
    return {(t.month, t.day, t.hour, t.minute): float(v) for t, v in series.items()}


def bdew_power_kw(
    profile: str, annual_kwh: float, local_times: list[tuple[int, int, int, int, int]]
) -> list[float]:
    """BDEW's mean power [kW] for ``annual_kwh`` at each local (year, month, day, hour,
    minute) 15-minute start."""
    if profile not in PROFILES:
        raise ConfigError(f"load profile {shown(profile)} is unknown (one of {', '.join(PROFILES)})")
    out = []
    for year, month, day, hour, minute in local_times:
        table = _year_profile(year, profile)
        out.append(table[(month, day, hour, minute)] * annual_kwh)
    return out


def local_starts(start_ms: int, intervals: int, timezone: str) -> list[tuple[int, int, int, int, int]]:
    """Each interval's start in ``timezone`` (year, month, day, hour, minute). An hour that
    occurs twice when clocks go back reads the same profile twice; the skipped one never."""
    import datetime as dt
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # ("America" is a directory of tzdata)
        raise ConfigError(
            f"time zone {shown(timezone)} is unknown (an IANA name such as 'Europe/Berlin')"
        ) from None
    out = []
    for i in range(intervals):
        t = dt.datetime.fromtimestamp((start_ms + i * INTERVAL_MS) / 1000, tz=dt.UTC).astimezone(zone)
        out.append((t.year, t.month, t.day, t.hour, t.minute - t.minute % 15))
    return out


def demand(consumer: Consumer, start_ms: int, intervals: int, timezone: str) -> list[Wh]:
    """Energy ``consumer`` draws in each interval [Wh]."""
    if consumer.annual_kwh < 0 or consumer.variation < 0:
        raise ConfigError("annual_kwh and load_variation must not be negative")
    power = bdew_power_kw(consumer.profile, consumer.annual_kwh, local_starts(start_ms, intervals, timezone))
    rng = random.Random(f"demand/{consumer.seed}")
    hours = INTERVAL_MS / 3_600_000
    return [
        round(kw * 1000 * hours * max(0.0, rng.gauss(1.0, consumer.variation) if consumer.variation else 1.0))
        for kw in power
    ]
