"""Household and business demand of our wrapper against demandlib called directly, the
shapes a reader can check (peak over mean, weekday against weekend, season), local time, and
the seeded per-home variation."""

from __future__ import annotations

import datetime as dt
import warnings

import pytest
from demandlib import bdew

from gridnet.errors import ConfigError
from gridnet.world.demand import Consumer, demand


def day_ms(day: str, hour: int = 0) -> int:
    return int(dt.datetime.fromisoformat(f"{day}T{hour:02}:00:00+00:00").timestamp() * 1000)


def direct_wh(profile: str, annual_kwh: float, year: int) -> list[float]:
    """The year's energy per 15 minutes [Wh] from demandlib, no wrapper (local time)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = bdew.ElecSlp(year).get_scaled_power_profiles({profile: annual_kwh})
    return [float(kw) * 250 for kw in frame[profile]]


@pytest.mark.parametrize("profile", ["h0_dyn", "h0", "g0"])
@pytest.mark.parametrize("day", ["2026-01-14", "2026-06-21", "2026-10-03"])
def test_demand_matches_demandlib_called_directly_within_one_percent(profile: str, day: str) -> None:
    """In local time (UTC here, so the rows line up): each interval and the day's total."""
    ours = demand(Consumer(3_500, profile), day_ms(day), 96, "UTC")
    first = (dt.date.fromisoformat(day) - dt.date(2026, 1, 1)).days * 96
    theirs = direct_wh(profile, 3_500, 2026)[first : first + 96]
    assert sum(ours) == pytest.approx(sum(theirs), rel=0.01)
    assert all(abs(o - t) <= max(1.0, 0.01 * t) for o, t in zip(ours, theirs, strict=True))


def test_a_year_of_demand_adds_up_to_its_annual_consumption() -> None:
    year = demand(Consumer(4_000), day_ms("2026-01-01"), 365 * 96, "UTC")
    assert sum(year) / 1000 == pytest.approx(4_000, rel=0.01)


def test_the_household_day_has_bdew_shapes() -> None:
    """Peak over mean 1.4 to 1.9 (BDEW H0), a Sunday unlike a Monday, winter above summer
    (the dynamised profile: 11.3 kWh against 7.8 for 3,500 kWh a year), and a business quiet
    on Sundays."""

    def h0(day: str) -> list[int]:
        return demand(Consumer(3_500), day_ms(day), 96, "Europe/Berlin")

    for day in ("2026-01-12", "2026-06-21", "2026-12-21"):
        wh = h0(day)
        assert 1.4 <= max(wh) / (sum(wh) / 96) <= 1.9
    assert h0("2026-06-21") != h0("2026-06-22")  # a Sunday, a Monday
    assert sum(h0("2026-01-12")) > 1.3 * sum(h0("2026-07-13"))  # Mondays in winter and summer
    g0 = Consumer(50_000, "g0")
    sunday, monday = (sum(demand(g0, day_ms(d), 96, "Europe/Berlin")) for d in ("2026-06-21", "2026-06-22"))
    assert sunday < 0.7 * monday


def test_profiles_follow_local_time() -> None:
    """Berlin's evening peak comes an hour earlier in UTC in winter, two in summer."""
    winter = demand(Consumer(3_500), day_ms("2026-01-12"), 96, "Europe/Berlin")
    winter_utc = demand(Consumer(3_500), day_ms("2026-01-12", 1), 96, "UTC")
    assert winter == winter_utc
    summer = demand(Consumer(3_500), day_ms("2026-07-13"), 96, "Europe/Berlin")
    summer_utc = demand(Consumer(3_500), day_ms("2026-07-13", 2), 96, "UTC")
    assert summer == summer_utc
    # The day clocks go forward has 92 local quarter hours; the 96 intervals still all draw.
    assert all(w > 0 for w in demand(Consumer(3_500), day_ms("2026-03-29"), 96, "Europe/Berlin"))


def test_each_home_varies_around_the_profile_by_its_own_seed() -> None:
    start = day_ms("2026-06-22")

    def home(seed: str, variation: float = 0.2) -> list[int]:
        return demand(Consumer(3_500, variation=variation, seed=seed), start, 96, "Europe/Berlin")

    assert home("a") == home("a") and home("a") != home("b")
    plain = home("a", 0.0)
    assert all(w >= 0 for w in home("a"))
    year = demand(Consumer(3_500, variation=0.2, seed="a"), day_ms("2026-01-01"), 365 * 96, "UTC")
    assert sum(year) / 1000 == pytest.approx(3_500, rel=0.02)
    assert sum(abs(a - b) for a, b in zip(home("a"), plain, strict=True)) > 0.05 * sum(plain)


def test_bad_profiles_and_places_are_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="load profile 'x0' is unknown"):
        demand(Consumer(1_000, "x0"), day_ms("2026-06-21"), 4, "UTC")
    with pytest.raises(ConfigError, match="time zone 'Mars/Olympus' is unknown"):
        demand(Consumer(1_000), day_ms("2026-06-21"), 4, "Mars/Olympus")
    with pytest.raises(ConfigError, match="time zone 'America' is unknown"):  # (a directory: OSError)
        demand(Consumer(1_000), day_ms("2026-06-21"), 4, "America")
    with pytest.raises(ConfigError, match="must not be negative"):
        demand(Consumer(-1), day_ms("2026-06-21"), 4, "UTC")
