"""PV energy of our wrapper against pvlib called directly (1-minute steps, integrated), the
clear-sky figures a reader can check, the seeded cloud model, and weather files (TMY3, EPW)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
import pytest

from gridnet.errors import ConfigError
from gridnet.world.solar import (
    GAMMA_PDC,
    TEMPERATURE_MODEL,
    PvArray,
    Site,
    Sky,
    check_weather_file,
    irradiance,
    pv_energy,
)

SITES = {
    "London": Site(51.51, -0.13, 11.0, "Europe/London"),
    "Berlin": Site(52.52, 13.40, 34.0, "Europe/Berlin"),
    "Madrid": Site(40.42, -3.70, 667.0, "Europe/Madrid"),
}
TMY3 = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"
"""Greensboro, North Carolina: a typical meteorological year pvlib ships."""


def day_ms(day: str) -> int:
    return int(dt.datetime.fromisoformat(f"{day}T00:00:00+00:00").timestamp() * 1000)


def direct_kwh(site: Site, array: PvArray, day: str) -> float:
    """The day's energy [kWh] from pvlib's functions at 1-minute steps, no wrapper."""
    times = pd.date_range(f"{day} 00:00", periods=1440, freq="1min", tz="UTC") + pd.Timedelta(seconds=30)
    location = pvlib.location.Location(site.latitude, site.longitude, "UTC", site.altitude_m)
    position = location.get_solarposition(times)
    clear = location.get_clearsky(times, model="ineichen", solar_position=position)
    poa = pvlib.irradiance.get_total_irradiance(
        array.tilt_deg,
        array.azimuth_deg,
        position["apparent_zenith"],
        position["azimuth"],
        clear["dni"],
        clear["ghi"],
        clear["dhi"],
    )["poa_global"].clip(lower=0)
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS[TEMPERATURE_MODEL[0]][TEMPERATURE_MODEL[1]]
    cell = pvlib.temperature.sapm_cell(poa, 20.0, 1.0, **params)
    dc = pvlib.pvsystem.pvwatts_dc(poa, cell, array.kwp * 1000, GAMMA_PDC).clip(lower=0)
    return float(dc.sum()) * (1 - array.losses_percent / 100) / 60 / 1000


@pytest.mark.parametrize("name", sorted(SITES))
@pytest.mark.parametrize("day", ["2026-03-20", "2026-06-21", "2026-12-21"])
def test_pv_energy_matches_pvlib_called_directly_within_one_percent(name: str, day: str) -> None:
    site, array = SITES[name], PvArray(4.2, tilt_deg=30, azimuth_deg=170, losses_percent=10)
    ours = sum(pv_energy(array, irradiance(site, day_ms(day), 96, Sky()))) / 1000
    assert ours == pytest.approx(direct_kwh(site, array, day), rel=0.01)


def test_clear_sky_days_give_the_energy_a_reader_can_check() -> None:
    """A south-facing kWp tilted 35° under a clear sky: about 6 kWh on 21 June in London,
    Berlin and Madrid alike, 1.9 to 3.7 kWh on 21 December (Madrid most)."""
    kwh = {
        (name, day): sum(pv_energy(PvArray(1.0), irradiance(site, day_ms(day), 96, Sky()))) / 1000
        for name, site in SITES.items()
        for day in ("2026-06-21", "2026-12-21")
    }
    assert all(5.7 <= kwh[(n, "2026-06-21")] <= 6.4 for n in SITES)
    assert all(1.8 <= kwh[(n, "2026-12-21")] <= 3.7 for n in SITES)
    assert kwh[("Madrid", "2026-12-21")] > 1.7 * kwh[("London", "2026-12-21")]
    # Local solar noon, not 12:00 UTC: Madrid's peak comes about 15 minutes later than London's.
    peaks = {
        n: int(np.argmax(pv_energy(PvArray(1.0), irradiance(s, day_ms("2026-06-21"), 96, Sky()))))
        for n, s in SITES.items()
    }
    assert peaks["Berlin"] < peaks["London"] <= peaks["Madrid"]


def test_the_cloud_model_is_seeded_and_dims_the_day() -> None:
    site, start = SITES["Berlin"], day_ms("2026-06-21")

    def day(cloudiness: float, seed: int) -> list[int]:
        return pv_energy(PvArray(5.0), irradiance(site, start, 96, Sky("clouds", cloudiness, seed)))

    assert day(0.5, 7) == day(0.5, 7)
    assert day(0.5, 7) != day(0.5, 8)
    assert day(0.0, 7) == pv_energy(PvArray(5.0), irradiance(site, start, 96, Sky()))
    totals = [sum(day(c, 7)) for c in (0.0, 0.3, 0.6, 0.9)]
    assert totals == sorted(totals, reverse=True) and totals[-1] < 0.5 * totals[0]
    with pytest.raises(ConfigError, match=r"cloudiness 1\.5 must be between 0 and 1"):
        day(1.5, 7)


def tmy3_hour(day: str, hour: int) -> pd.Series:
    data, _ = pvlib.iotools.read_tmy3(str(TMY3), map_variables=True)
    month, dom = int(day[5:7]), int(day[8:10])
    ending = [
        t
        for t in data.index
        if (t - pd.Timedelta(hours=1)).month == month
        and (t - pd.Timedelta(hours=1)).day == dom
        and (t - pd.Timedelta(hours=1)).hour == hour
    ]
    return data.loc[ending[0]]


def test_a_tmy3_file_gives_each_hour_its_record_in_any_year() -> None:
    _, meta = pvlib.iotools.read_tmy3(str(TMY3), map_variables=True)
    site = Site(meta["latitude"], meta["longitude"], meta["altitude"], "America/New_York")
    # 15:00-16:00 UTC is 10:00-11:00 in the file's standard time (UTC-5), any year.
    start = day_ms("2031-07-04") + 15 * 3_600_000
    sky = irradiance(site, start, 4, Sky("file", weather_file=TMY3))
    record = tmy3_hour("2031-07-04", 10)
    assert set(sky.ghi) == {float(record["ghi"])} and set(sky.dni) == {float(record["dni"])}
    assert set(sky.temp_air) == {float(record["temp_air"])}
    assert sum(pv_energy(PvArray(1.0), sky)) > 0


def write_epw(path: Path, ghi_at_noon: float) -> None:
    """A year of hourly EPW records (UTC+1): GHI a triangle peaking ``ghi_at_noon`` at 12-13h
    local standard time, beam half of it, 15 °C, wind 2 m/s."""
    lines = ["LOCATION,Testville,-,XX,Test,000000,52.5,13.4,1.0,34.0"] + [f"HEADER {i}" for i in range(7)]
    t = dt.datetime(2019, 1, 1, 1)
    while t.year == 2019 or (t.month, t.day, t.hour) == (1, 1, 0):
        hour = t.hour or 24
        begin = hour - 1
        ghi = max(0.0, ghi_at_noon * (1 - abs(begin - 12) / 6))
        fields = [
            t.year, (t - dt.timedelta(hours=1)).month, (t - dt.timedelta(hours=1)).day, hour, 0, "?",
            15.0, 5.0, 50, 101325, 0, 0, 300, ghi, ghi / 2, ghi / 2, 0, 0, 0, 0, 180, 2.0,
            0, 0, 20, 99999, 9, 999999999, 10, 0.1, 0, 88, 0.2, 0, 1,
        ]  # fmt: skip
        lines.append(",".join(str(f) for f in fields))
        t += dt.timedelta(hours=1)
    path.write_text("\n".join(lines) + "\n")


def test_an_epw_file_gives_each_hour_its_record(tmp_path: Path) -> None:
    path = tmp_path / "test.epw"
    write_epw(path, 600.0)
    site = Site(52.5, 13.4, 34.0, "Europe/Berlin")
    # 11:00 UTC is 12:00 in the file's standard time (UTC+1): its peak hour, any date.
    sky = irradiance(site, day_ms("2026-05-02") + 11 * 3_600_000, 4, Sky("file", weather_file=path))
    assert set(sky.ghi) == {600.0} and set(sky.dni) == {300.0} and set(sky.wind_speed) == {2.0}
    night = irradiance(site, day_ms("2026-05-02") + 23 * 3_600_000, 4, Sky("file", weather_file=path))
    assert set(night.ghi) == {0.0}


def test_a_missing_or_broken_weather_file_is_one_clear_error(tmp_path: Path) -> None:
    site = SITES["Berlin"]
    with pytest.raises(ConfigError, match="cannot read the weather file"):
        irradiance(site, day_ms("2026-06-21"), 4, Sky("file", weather_file=tmp_path / "none.epw"))
    broken = tmp_path / "broken.epw"
    broken.write_text("not a weather file\n")
    with pytest.raises(ConfigError, match=r"is not an EPW file .*; give a TMY3 or EPW file"):
        irradiance(site, day_ms("2026-06-21"), 4, Sky("file", weather_file=broken))
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(ConfigError, match=r"is not a TMY3 file \(\.csv\)"):
        irradiance(site, day_ms("2026-06-21"), 4, Sky("file", weather_file=other))


def tmy3_with(tmp_path: Path, line: int, column: str, text: str) -> Path:
    """pvlib's Greensboro TMY3 file with ``column``'s value on ``line`` (from 1) replaced."""
    lines = TMY3.read_text().splitlines()
    fields = lines[line - 1].split(",")
    fields[lines[1].split(",").index(column)] = text
    lines[line - 1] = ",".join(fields)
    path = tmp_path / "weather.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def weather_refusal(path: Path) -> str:
    """The one line a run of four June intervals on the weather file ``path`` is refused with."""
    with pytest.raises(ConfigError) as info:
        check_weather_file(path, day_ms("2026-06-21"), 4)
    return str(info.value)


@pytest.mark.parametrize(
    ("column", "text", "position", "bounds"),
    [
        ("GHI (W/m^2)", "abc", 5, "0 to 1,500 W/m²"),
        ("GHI (W/m^2)", "nan", 5, "0 to 1,500 W/m²"),
        ("GHI (W/m^2)", "-5000", 5, "0 to 1,500 W/m²"),
        ("GHI (W/m^2)", "1e300", 5, "0 to 1,500 W/m²"),
        ("GHI (W/m^2)", "9999", 5, "0 to 1,500 W/m²"),  # (only an EPW file marks a value missing)
        ("DNI (W/m^2)", "inf", 8, "0 to 1,500 W/m²"),
        ("DHI (W/m^2)", "1501", 11, "0 to 1,500 W/m²"),
        ("Dry-bulb (C)", "nan", 32, "-90 to 60 °C"),
        ("Dry-bulb (C)", "1e6", 32, "-90 to 60 °C"),
        ("Wspd (m/s)", "-1", 47, "0 to 100 m/s"),
    ],
)
def test_a_weather_value_that_is_no_number_in_its_range_is_refused_at_its_line_and_column(
    tmp_path: Path, column: str, text: str, position: int, bounds: str
) -> None:
    """pvlib reads "abc" as text (a ValueError traceback), "nan", -5000 or 1e300 as numbers (the
    run's PV energy was 0 or, from a NaN air temperature, a traceback while the run was built):
    every record's values are checked as the file is read, the first bad one named in one line.
    A record the run does not use counts too (line 100 is in January)."""
    path = tmy3_with(tmp_path, 100, column, text)
    assert weather_refusal(path) == (
        f"{path}:100:{position}: {column} is {text!r}, not a number from {bounds}; correct the record or "
        "give another weather file"
    )


@pytest.mark.parametrize(
    ("column", "text", "position", "what"),
    [
        ("Time (HH:MM)", "99:00", 2, "no hour of the day: a record's time is its hour's end, 01:00 to 24:00"),
        ("Time (HH:MM)", "25:00", 2, "no hour of the day: a record's time is its hour's end, 01:00 to 24:00"),
        ("Time (HH:MM)", "02:30", 2, "no hour of the day: a record's time is its hour's end, 01:00 to 24:00"),
        ("Date (MM/DD/YYYY)", "02/30/1988", 1, "no day of the calendar (MM/DD/YYYY)"),
        ("Date (MM/DD/YYYY)", "13/05/1988", 1, "no day of the calendar (MM/DD/YYYY)"),
    ],
)
def test_a_tmy3_record_whose_time_is_no_hour_of_the_year_is_refused_at_its_line(
    tmp_path: Path, column: str, text: str, position: int, what: str
) -> None:
    """pvlib put a record of 99:00 at 03:00 (the hour modulo 24), where it replaced that
    hour's record, and read one of 02:30 as ending then; it refused 13/05/1988 in a message that
    named no line."""
    path = tmy3_with(tmp_path, 100, column, text)
    assert weather_refusal(path) == (
        f"{path}:100:{position}: {column} is {text!r}, {what}; correct the record or give another "
        "weather file"
    )


def test_a_second_record_for_an_hour_is_refused_naming_the_first(tmp_path: Path) -> None:
    """21 June twice: the later record of each hour replaced the first."""
    lines = TMY3.read_text().splitlines()
    path = tmp_path / "weather.csv"
    path.write_text("\n".join(lines + lines[4106 : 4106 + 24]) + "\n")
    assert weather_refusal(path) == (
        f"{path}:8763: a second record for 06-21 00:00-01:00 (the first is on line 4107); give each hour one "
        "record: correct the file or give another"
    )
    path = tmp_path / "test.epw"
    write_epw(path, 600.0)
    epw = path.read_text().splitlines()
    fields = epw[99].split(",")  # (4 January, the hour ending 20h)
    fields[3] = "21"
    epw[99] = ",".join(fields)
    path.write_text("\n".join(epw) + "\n")
    assert weather_refusal(path) == (
        f"{path}:101: a second record for 01-04 20:00-21:00 (the first is on line 100); give each hour one "
        "record: correct the file or give another"
    )


def test_a_tmy3_file_whose_february_is_of_a_leap_year_gives_the_hour_before_1_march() -> None:
    """Greensboro's February is of 1996: pvlib's index moves a date of 29 February to 1 March,
    so it put the record '02/28/1996,24:00' at the end of the hour 29 February 23-24h, and 28
    February 23-24h had none ('has no record for 02-28 23h'). The file's own date and time
    place each record."""
    lines = TMY3.read_text().splitlines()
    fields = lines[1417].split(",")
    assert fields[:2] == ["02/28/1996", "24:00"]
    # 04:00-05:00 UTC on 1 March is 23:00-24:00 on 28 February in the file's standard time (UTC-5).
    site = Site(36.1, -79.95, 273.0, "America/New_York")
    sky = irradiance(site, day_ms("2026-03-01") + 4 * 3_600_000, 4, Sky("file", weather_file=TMY3))
    assert set(sky.temp_air) == {float(fields[lines[1].split(",").index("Dry-bulb (C)")])} == {9.2}


def test_a_tmy3_file_may_stamp_the_last_hour_of_a_day_00_00_of_the_next(tmp_path: Path) -> None:
    """As SolarAnywhere's files do, and pvlib reads: the same records as 24:00 of the day."""
    lines = TMY3.read_text().splitlines()
    for k, line in enumerate(lines[2:], start=2):
        if line[11:16] == "24:00":
            day = dt.datetime.strptime(line[:10], "%m/%d/%Y") + dt.timedelta(days=1)
            lines[k] = f"{day:%m/%d/%Y},00:00{line[16:]}"
    path = tmp_path / "midnight.csv"
    path.write_text("\n".join(lines) + "\n")
    site = Site(36.1, -79.95, 273.0, "America/New_York")
    for day in ("2026-01-01", "2026-03-01", "2026-06-21"):  # (the hour before: 23-24h of the day before)
        start = day_ms(day) + 4 * 3_600_000
        assert irradiance(site, start, 24, Sky("file", weather_file=path)) == irradiance(
            site, start, 24, Sky("file", weather_file=TMY3)
        )


def test_a_tmy3_file_without_a_column_the_records_are_read_from_names_it(tmp_path: Path) -> None:
    lines = TMY3.read_text().splitlines()
    lines[1] = lines[1].replace("DNI (W/m^2)", "Xdropped").replace("DHI (W/m^2)", "Ydropped")
    path = tmp_path / "weather.csv"
    path.write_text("\n".join(lines) + "\n")
    assert weather_refusal(path) == (
        f"{path}:2: the weather file has no column 'DNI (W/m^2)' or 'DHI (W/m^2)': a TMY3 file's second "
        "line names its columns, Date (MM/DD/YYYY), Time (HH:MM), GHI (W/m^2), DNI (W/m^2), DHI (W/m^2) "
        "among them; correct the file or give another"
    )


def test_an_epw_value_out_of_its_range_is_refused_at_its_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "test.epw"
    write_epw(path, 600.0)
    lines = path.read_text().splitlines()
    fields = lines[20].split(",")
    fields[21] = "nan"  # (field 22: wind speed)
    lines[20] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    assert weather_refusal(path) == (
        f"{path}:21:22: wind speed is 'nan', not a number from 0 to 100 m/s; correct the record or give "
        "another weather file"
    )


@pytest.mark.parametrize(
    ("field", "text", "what"),
    [
        (1, "abc", "year is 'abc', not a year"),
        (2, "13", "month is '13', no month of the year (1 to 12)"),
        (3, "32", "day is '32', no day of January 2019 (1 to 31)"),
        (4, "25", "hour is '25', no hour of the day: a record's hour is the one it ends, 1 to 24"),
        (4, "0", "hour is '0', no hour of the day: a record's hour is the one it ends, 1 to 24"),
        (4, "abc", "hour is 'abc', no hour of the day: a record's hour is the one it ends, 1 to 24"),
    ],
)
def test_an_epw_record_whose_time_is_no_hour_of_the_year_is_refused_at_its_line(
    tmp_path: Path, field: int, text: str, what: str
) -> None:
    """pvlib refused most in a message that named no line, and an hour 'abc' with a traceback
    (TypeError)."""
    path = tmp_path / "test.epw"
    write_epw(path, 600.0)
    lines = path.read_text().splitlines()
    fields = lines[99].split(",")
    fields[field - 1] = text
    lines[99] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    assert weather_refusal(path) == (
        f"{path}:100:{field}: {what}; correct the record or give another weather file"
    )


def mark_missing(path: Path, first_hour: int, hours: int, field: int, code: str) -> int:
    """Mark ``field`` (from 1) missing with ``code`` in ``hours`` records from the one for
    ``first_hour`` (hours from 1 January 0h) of ``write_epw``'s file; the first one's line."""
    lines = path.read_text().splitlines()
    for k in range(first_hour, first_hour + hours):
        fields = lines[8 + k].split(",")
        fields[field - 1] = code
        lines[8 + k] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    return 9 + first_hour


MAY_2_NOON = (120 + 1) * 24 + 12
"""The record of 2 May 12-13h in ``write_epw``'s file (hours from 1 January 0h)."""


def test_an_epw_value_marked_missing_is_filled_between_its_neighbours(tmp_path: Path) -> None:
    path = tmp_path / "test.epw"
    write_epw(path, 600.0)  # 11h-12h: 500 W/m², 12h-13h: 600, 13h-14h: 500
    mark_missing(path, MAY_2_NOON, 1, 14, "9999")
    mark_missing(path, MAY_2_NOON - 1, 3, 7, "99.9")
    mark_missing(path, MAY_2_NOON, 2, 22, "999")
    site = Site(52.5, 13.4, 34.0, "Europe/Berlin")
    noon = irradiance(site, day_ms("2026-05-02") + 11 * 3_600_000, 4, Sky("file", weather_file=path))
    assert set(noon.ghi) == {500.0} and set(noon.dni) == {300.0}  # (only GHI was missing)
    assert set(noon.temp_air) == {15.0} and set(noon.wind_speed) == {2.0}
    assert noon.filled_hours == 1
    span = irradiance(site, day_ms("2026-05-02") + 9 * 3_600_000, 24, Sky("file", weather_file=path))
    assert span.filled_hours == 3  # (of 10h to 16h local: 11h, 12h and 13h)
    elsewhere = irradiance(site, day_ms("2026-06-02") + 11 * 3_600_000, 4, Sky("file", weather_file=path))
    assert set(elsewhere.ghi) == {600.0} and elsewhere.filled_hours == 0


def test_an_epw_gap_longer_than_the_filled_hours_is_refused_at_its_first_record(tmp_path: Path) -> None:
    path = tmp_path / "test.epw"
    write_epw(path, 600.0)
    line = mark_missing(path, 100, 7, 15, "9999")
    assert weather_refusal(path) == (
        f"{path}:{line}:15: direct normal radiation is missing (9999) in 7 records in a row from here, "
        "and at most 6 are filled (a straight line between the records either side); give a weather "
        "file with shorter gaps"
    )
    path = tmp_path / "six.epw"
    write_epw(path, 600.0)
    mark_missing(path, 100, 6, 15, "9999")
    mark_missing(path, 8_760 - 6, 6, 15, "9999")  # (the file's last six: the nearest value)
    check_weather_file(path, day_ms("2026-06-21"), 4)


def test_an_epw_field_missing_in_every_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "test.epw"
    write_epw(path, 600.0)
    mark_missing(path, 0, 8_760, 22, "999")
    assert weather_refusal(path) == (
        f"{path}:9:22: every record marks wind speed missing (999); give a weather file that gives it"
    )


def header_only(tmp_path: Path, name: str, lines: int) -> Path:
    """The first ``lines`` lines of pvlib's Greensboro TMY3 file (``name`` a .csv) or of
    ``write_epw``'s file (an .epw)."""
    path = tmp_path / name
    if path.suffix == ".epw":
        write_epw(path, 600.0)
        text = path.read_text()
    else:
        text = TMY3.read_text()
    path.write_text("".join(text.splitlines(keepends=True)[:lines]))
    return path


@pytest.mark.parametrize(
    ("name", "lines", "header"),
    [("weather.csv", 2, "a TMY3 file they follow 2"), ("weather.epw", 8, "an EPW file they follow 8"),
     ("weather.epw", 3, "an EPW file they follow 8")],
)  # fmt: skip
def test_a_weather_file_without_records_is_refused(
    tmp_path: Path, name: str, lines: int, header: str
) -> None:
    """pvlib reads a weather file of its header alone (or less of an EPW file's) as an empty
    table: the run stopped with a traceback (``IndexError: index 0 is out of bounds``)."""
    path = header_only(tmp_path, name, lines)
    assert weather_refusal(path) == (
        f"the weather file {path} has no records (in {header} lines of header); give a TMY3 or EPW file"
    )


def test_the_typical_years_pvlib_ships_pass_the_checks() -> None:
    for name in ("723170TYA.CSV", "703165TY.csv"):
        check_weather_file(TMY3.parent / name, day_ms("2026-06-21"), 96)


def simulate_refusal(path: Path) -> str:
    """What ``gridnet simulate`` says of a scenario of four June intervals on the weather file
    ``path`` (in its folder), after ``[weather] weather_file:``: one line, exit 1, nothing
    written."""
    scenario = path.parent / "s.toml"
    scenario.write_text(
        '[simulation]\nstart = "2026-06-21T15:00:00Z"\nintervals = 4\n[homes]\ncount = 3\n'
        f'[weather]\nsky = "file"\nweather_file = "{path.name}"\n'
    )
    out = path.parent / "out"
    done = subprocess.run(
        [sys.executable, "-m", "gridnet", "simulate", str(scenario), "--out", str(out)],
        cwd=path.parent,
        env=dict(os.environ, COLUMNS="300", NO_COLOR="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert not out.exists()
    [line] = done.stderr.strip().splitlines()
    prefix = f"error: {scenario}: [weather] weather_file: "
    assert line.startswith(prefix), line
    return line.removeprefix(prefix)


def test_simulate_refuses_a_bad_weather_file_in_one_line(tmp_path: Path) -> None:
    """A NaN air temperature passed the load and stopped the run with a traceback while it was
    built (``cannot convert float NaN to integer``): one line, exit 1, nothing written."""
    path = tmy3_with(tmp_path, 4107, "Dry-bulb (C)", "nan")
    assert simulate_refusal(path) == (
        f"{path}:4107:32: Dry-bulb (C) is 'nan', not a number from -90 to 60 °C; correct the record or give "
        "another weather file"
    )


def test_simulate_refuses_a_weather_file_without_records_in_one_line(tmp_path: Path) -> None:
    path = header_only(tmp_path, "weather.epw", 8)
    assert simulate_refusal(path) == (
        f"the weather file {path} has no records (in an EPW file they follow 8 lines of header); give a TMY3 "
        "or EPW file"
    )


def test_the_report_counts_the_runs_hours_with_a_filled_weather_value(tmp_path: Path) -> None:
    from gridnet.sim.neighbourhood import simulate
    from gridnet.sim.scenario import load_scenario

    write_epw(tmp_path / "weather.epw", 600.0)
    mark_missing(tmp_path / "weather.epw", MAY_2_NOON - 1, 1, 14, "9999")  # 11h-12h local standard time
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        '[simulation]\nstart = "2026-05-02T09:00:00Z"\nintervals = 8\n[homes]\ncount = 2\n'
        '[weather]\nsky = "file"\nweather_file = "weather.epw"\n'
    )
    report = simulate(load_scenario(scenario), tmp_path / "out")
    assert report["scenario"]["weather_filled_hours"] == 1
