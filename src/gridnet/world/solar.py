"""Sun, weather and PV arrays (pvlib).

The sky over a site for a run of intervals is one of: a clear sky (pvlib's Ineichen model
with its Linke turbidity climatology), a clear sky scaled by a seeded cloud model, or the
irradiance of a weather file (TMY3 or EPW; the record of the same month, day and hour, so
any year's date can use a typical year). A PV array turns the plane-of-array irradiance into
power with the PVWatts model (a temperature coefficient of the cell, the cell temperature from
the SAPM model), less the array's losses. Energy in an interval is the mean of its
``SUBSTEPS`` power samples (at the middle of each sub-step) times its length.

The cloud model: a clear-sky index k per sub-step follows a seeded AR(1) process around
``1 - 0.75 × cloudiness`` (k in [0.1, 1]), with GHI = k × clear GHI, DNI = k² × clear DNI and
the diffuse part what remains (so broken clouds cut the beam more than the total).
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import math
import random
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Final

from gridnet.errors import ConfigError, shown
from gridnet.files import check_regular_file
from gridnet.units import INTERVAL_MS, Wh, is_decimal

SUBSTEPS = 3
"""Power samples per interval (every 5 minutes)."""
STEP_MS = INTERVAL_MS // SUBSTEPS
TEMPERATURE_MODEL = ("sapm", "open_rack_glass_polymer")
"""pvlib's cell temperature parameters used for every array."""
GAMMA_PDC = -0.004
"""Temperature coefficient of the DC power [1/°C] (crystalline silicon)."""
SKIES = ("clear", "clouds", "file")
CLOUD_PERSISTENCE = 0.9
"""AR(1) coefficient of the clear-sky index from one sub-step to the next."""
CLOUD_NOISE = 0.08
"""Standard deviation of the clear-sky index's innovations."""


@dataclass(frozen=True)
class Site:
    """Where an area is (a scenario's ``[site]``; Berlin by default)."""

    latitude: float = 52.52
    """[°], north positive."""
    longitude: float = 13.40
    """[°], east positive."""
    altitude_m: float = 34.0
    timezone: str = "Europe/Berlin"
    """IANA name (local time for demand profiles)."""


@dataclass(frozen=True)
class PvArray:
    kwp: float
    """DC rating at 1,000 W/m² and 25 °C [kW]."""
    tilt_deg: float = 35.0
    azimuth_deg: float = 180.0
    """[°] clockwise from north: 180 faces south."""
    losses_percent: float = 14.0
    """Wiring, soiling, mismatch, inverter [%] (PVWatts' default)."""


@dataclass(frozen=True)
class Sky:
    kind: str = "clear"
    """One of ``SKIES``."""
    cloudiness: float = 0.0
    """For "clouds": 0 (clear) to 1 (overcast)."""
    seed: int = 0
    weather_file: Path | None = None
    """For "file": a TMY3 (.csv) or EPW (.epw) file."""
    temp_air_c: float = 20.0
    """Air temperature when the weather file does not give it [°C]."""
    wind_speed_ms: float = 1.0


@dataclass(frozen=True)
class Irradiance:
    """Per sub-step, from the first interval's start: what an array's power follows."""

    start_ms: int
    intervals: int
    ghi: tuple[float, ...]
    dni: tuple[float, ...]
    dhi: tuple[float, ...]
    zenith: tuple[float, ...]
    azimuth: tuple[float, ...]
    temp_air: tuple[float, ...]
    wind_speed: tuple[float, ...]
    filled_hours: int = 0
    """Hours of the run whose weather file record had a value filled (``EPW_MISSING``)."""


def sample_times_ms(start_ms: int, intervals: int) -> list[int]:
    """The middle of each sub-step of ``intervals`` intervals from ``start_ms`` [ms since
    the Unix epoch, UTC]."""
    return [start_ms + i * STEP_MS + STEP_MS // 2 for i in range(intervals * SUBSTEPS)]


def _utc_index(times_ms: list[int]) -> Any:
    import pandas as pd

    return pd.DatetimeIndex(pd.to_datetime(times_ms, unit="ms", utc=True))


def irradiance(site: Site, start_ms: int, intervals: int, sky: Sky) -> Irradiance:
    """The sky over ``site`` for ``intervals`` intervals from ``start_ms``."""
    import pvlib

    if sky.kind not in SKIES:
        raise ConfigError(f"sky {sky.kind!r} is unknown (one of {', '.join(SKIES)})")
    times = _utc_index(sample_times_ms(start_ms, intervals))
    location = pvlib.location.Location(site.latitude, site.longitude, "UTC", site.altitude_m)
    position = location.get_solarposition(times)
    n = len(times)
    temp_air = [sky.temp_air_c] * n
    wind = [sky.wind_speed_ms] * n
    filled_hours = 0
    if sky.kind == "file":
        if sky.weather_file is None:
            raise ConfigError("a weather file is needed for sky kind 'file'")
        (ghi, dni, dhi, temp_air, wind), filled_hours = _from_weather_file(sky.weather_file, times)
    else:
        clear = location.get_clearsky(times, model="ineichen", solar_position=position)
        ghi, dni, dhi = (list(map(float, clear[c])) for c in ("ghi", "dni", "dhi"))
        if sky.kind == "clouds":
            cos_z = [max(0.0, math.cos(math.radians(z))) for z in position["apparent_zenith"]]
            ghi, dni, dhi = _clouds(ghi, dni, cos_z, sky)
    return Irradiance(
        start_ms,
        intervals,
        tuple(ghi),
        tuple(dni),
        tuple(dhi),
        tuple(map(float, position["apparent_zenith"])),
        tuple(map(float, position["azimuth"])),
        tuple(temp_air),
        tuple(wind),
        filled_hours,
    )


def clear_sky_index(n: int, cloudiness: float, seed: int) -> list[float]:
    """``n`` seeded clear-sky indices of the cloud model (module docstring)."""
    if not 0.0 <= cloudiness <= 1.0:
        raise ConfigError(f"cloudiness {cloudiness} must be between 0 and 1")
    rng = random.Random(f"clouds/{seed}")
    mean = 1.0 - 0.75 * cloudiness
    k = mean
    out = []
    for _ in range(n):
        k = mean + CLOUD_PERSISTENCE * (k - mean) + rng.gauss(0.0, CLOUD_NOISE * math.sqrt(cloudiness))
        k = min(1.0, max(0.1, k))
        out.append(k)
    return out


def _clouds(
    ghi: list[float], dni: list[float], cos_z: list[float], sky: Sky
) -> tuple[list[float], list[float], list[float]]:
    index = clear_sky_index(len(ghi), sky.cloudiness, sky.seed)
    ghi_k = [g * k for g, k in zip(ghi, index, strict=True)]
    dni_k = [d * k * k for d, k in zip(dni, index, strict=True)]
    dhi_k = [max(0.0, g - d * c) for g, d, c in zip(ghi_k, dni_k, cos_z, strict=True)]
    return ghi_k, dni_k, dhi_k


Hour = tuple[int, int, int]
"""An hour of a typical year: (month, day, the hour it starts, 0 to 23)."""


@dataclass(frozen=True)
class _WeatherFile:
    offset_s: float
    """The file's standard time ahead of UTC [s]."""
    records: dict[Hour, tuple[float, float, float, float, float]]
    """The hour in its standard time -> (ghi, dni, dhi, air temperature, wind speed)."""
    filled: frozenset[Hour] = frozenset()
    """The records with a value the file marked missing, filled (``EPW_MISSING``)."""


MAX_WEATHER_BYTES: Final = 64 << 20
"""A weather file is at most this large (a typical year's TMY3 or EPW: about 1.5 MB)."""

WEATHER_RANGES: Final = {
    "ghi": (0.0, 1_500.0, "W/m²"),
    "dni": (0.0, 1_500.0, "W/m²"),
    "dhi": (0.0, 1_500.0, "W/m²"),
    "temp_air": (-90.0, 60.0, "°C"),
    "wind_speed": (0.0, 100.0, "m/s"),
}
"""What a weather file's record may hold. Irradiance [W/m²]: the sun gives 1,361 above the
atmosphere, and an hour's mean at the ground stays below 1,500 even under the brief excess of
broken clouds. Air temperature [°C]: the extremes measured on Earth are -89.2 and 56.7. Wind
speed [m/s]: an hour's mean; the strongest gust measured was 113."""
REQUIRED_WEATHER: Final = ("ghi", "dni", "dhi")
"""The values every record must give (air temperature and wind speed have defaults)."""
TMY3_COLUMNS: Final = {
    "ghi": "GHI (W/m^2)",
    "dni": "DNI (W/m^2)",
    "dhi": "DHI (W/m^2)",
    "temp_air": "Dry-bulb (C)",
    "wind_speed": "Wspd (m/s)",
}
"""A TMY3 file's columns (its second line names them) that the records are read from."""
TMY3_DATE: Final = "Date (MM/DD/YYYY)"
TMY3_TIME: Final = "Time (HH:MM)"
"""A TMY3 record's date and the end of its hour on that date in the file's standard time,
01:00 to 24:00 (pvlib reads 00:00 as the midnight the date begins with, as a SolarAnywhere file
gives the last hour of the day before)."""
EPW_FIELDS: Final = {
    "ghi": (14, "global horizontal radiation"),
    "dni": (15, "direct normal radiation"),
    "dhi": (16, "diffuse horizontal radiation"),
    "temp_air": (7, "dry bulb temperature"),
    "wind_speed": (22, "wind speed"),
}
"""An EPW record's fields (from 1) that the records are read from, and their names."""
EPW_TIME_FIELDS: Final = ("year", "month", "day", "hour")
"""An EPW record's first four fields: its date and the end of its hour, 1 to 24, in the file's
standard time."""
EPW_MISSING: Final = {"ghi": 9999.0, "dni": 9999.0, "dhi": 9999.0, "temp_air": 99.9, "wind_speed": 999.0}
"""The value an EPW record gives a field to say it is missing (EnergyPlus, Auxiliary Programs:
the weather file's data fields). A missing value is filled linearly between the records either
side of its gap (the nearest one's at the file's start or end)."""
MAX_FILLED_HOURS: Final = 6
"""The longest run of records an EPW field may be missing in: a longer gap is refused (a straight
line across it would invent a morning's or an evening's sun)."""
TMY3_FIRST_RECORD: Final = 3
EPW_FIRST_RECORD: Final = 9
"""The line of a file's first record (TMY3: after its site and its column names; EPW: after
its eight lines of header)."""


@cache
def _read_weather_file(path: Path) -> _WeatherFile:
    """A TMY3 (.csv) or EPW (.epw) file's hourly records."""
    import pandas as pd
    import pvlib

    epw = path.suffix.lower() == ".epw"
    if path.exists():  # (a missing one is said below, with the kinds of file it may be)
        check_regular_file(path, "the weather file", MAX_WEATHER_BYTES)
    try:
        with warnings.catch_warnings():  # (pandas on a column of text among numbers: said below)
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            if epw:
                data, _ = pvlib.iotools.read_epw(str(path))
            else:
                data, _ = pvlib.iotools.read_tmy3(str(path), map_variables=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the weather file {path}: {exc.strerror or exc}; "
            "give a TMY3 (.csv) or EPW (.epw) file"
        ) from None
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        if not isinstance(exc, (KeyError, IndexError, UnicodeDecodeError)):
            try:  # (pvlib's message on a record's date or time names no line)
                _check_record_hours(path, epw)
            except ConfigError as precise:
                raise precise from None
        kind = "an EPW file" if epw else "a TMY3 file (.csv)"
        what = f"missing {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())[:200]
        raise ConfigError(
            f"the weather file {path} is not {kind} ({what}); give a TMY3 or EPW file"
        ) from None
    checked = check_weather_values(path, epw)
    if len(checked.hours) != len(data):  # (both skip blank lines; a checked record is one line)
        raise ConfigError(
            f"the weather file {path} is not {'an EPW file' if epw else 'a TMY3 file (.csv)'} (pvlib reads "
            f"{len(data)} records, not its {len(checked.hours)} lines of records); give a TMY3 or EPW file"
        )
    for key, rows in checked.missing.items():
        column = data[key].astype(float)
        column.iloc[rows] = math.nan
        data[key] = column.interpolate(limit_direction="both")
    # Each record's hour as its own date and time say (pvlib's index moves a TMY3 record of 29
    # February, or of the midnight ending 28 February in a leap year, to 1 March).
    records = {}
    for hour, (_, row) in zip(checked.hours, data.iterrows(), strict=True):
        records[hour] = (
            float(row["ghi"]),
            float(row["dni"]),
            float(row["dhi"]),
            float(row.get("temp_air", 20.0)),
            float(row.get("wind_speed", 1.0)),
        )
    filled = frozenset(checked.hours[k] for rows in checked.missing.values() for k in rows)
    offset = data.index[0].utcoffset()
    return _WeatherFile(offset.total_seconds() if offset is not None else 0.0, records, filled)


@dataclass(frozen=True)
class WeatherRecords:
    """What ``check_weather_values`` finds of a weather file's records (in the file's order)."""

    hours: list[Hour]
    """Each record's hour."""
    missing: dict[str, list[int]]
    """The records (from 0) where each value is marked missing (``EPW_MISSING``)."""


def check_weather_values(path: Path, epw: bool) -> WeatherRecords:
    """A ConfigError, ``FILE:LINE:COLUMN`` and what is wrong, unless the weather file names
    the columns of ``REQUIRED_WEATHER`` and its records' date and time (a TMY3 file; an EPW
    record's fields are fixed), every record's date and time are an hour of the year that no
    record before it gives (``_RecordHours``: pvlib moved an impossible one onto another hour,
    and the later of two records for an hour replaced the first), and every record gives each
    value read from it as a finite number within ``WEATHER_RANGES``
    (pvlib reads "abc" as text, "nan" and 1e300 as numbers: the first stopped the run with a
    traceback, the others made its PV energy 0 or NaN), or, in an EPW file, marks it missing
    (``EPW_MISSING``) in a gap of at most ``MAX_FILLED_HOURS`` records; and that it has a record
    (pvlib reads a file of its header alone as an empty table)."""
    lines = _weather_lines(path)
    header = [] if epw else next(csv.reader(lines[1:2]), [])
    if epw:
        first = EPW_FIRST_RECORD
        columns = {key: (field - 1, name) for key, (field, name) in EPW_FIELDS.items()}
    else:
        first = TMY3_FIRST_RECORD
        required = (TMY3_DATE, TMY3_TIME, *(TMY3_COLUMNS[key] for key in REQUIRED_WEATHER))
        missing = [name for name in required if name not in header]
        if missing:
            needed = ", ".join(required)
            raise ConfigError(
                f"{path}:2: the weather file has no column {' or '.join(map(repr, missing))}: a TMY3 "
                f"file's second line names its columns, {needed} among them; correct the file or give another"
            )
        columns = {key: (header.index(name), name) for key, name in TMY3_COLUMNS.items() if name in header}
    marked: dict[str, list[int]] = {key: [] for key in columns}
    gaps: dict[str, list[int]] = {key: [] for key in columns}  # (the gap's records: line numbers)
    hours = _RecordHours(path, epw, header)
    record = -1
    for number, fields in _weather_records(lines, first):
        record += 1
        hours.add(number, fields)
        for key, (i, name) in columns.items():
            low, high, unit = WEATHER_RANGES[key]
            text = fields[i].strip() if i < len(fields) else ""
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if epw and value == EPW_MISSING[key]:
                marked[key].append(record)
                gaps[key].append(number)
                continue
            _check_gap(path, gaps[key], i, name, key)
            if not (math.isfinite(value) and low <= value <= high):  # (NaN is in no range)
                given = shown(text) if text else "empty"
                raise ConfigError(
                    f"{path}:{number}:{i + 1}: {name} is {given}, not a number from {low:,g} to "
                    f"{high:,g} {unit}; correct the record or give another weather file"
                )
    if record == -1:  # (pvlib reads such a file as an empty table)
        kind = "an EPW file" if epw else "a TMY3 file"
        raise ConfigError(
            f"the weather file {path} has no records (in {kind} they follow {first - 1} lines of "
            "header); give a TMY3 or EPW file"
        )
    for key, (i, name) in columns.items():
        if gaps[key] and len(gaps[key]) == len(marked[key]) == record + 1:
            raise ConfigError(
                f"{path}:{gaps[key][0]}:{i + 1}: every record marks {name} missing "
                f"({EPW_MISSING[key]:g}); give a weather file that gives it"
            )
        _check_gap(path, gaps[key], i, name, key)
    return WeatherRecords(hours.hours, {key: rows for key, rows in marked.items() if rows})


def _weather_lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8", errors="replace").splitlines()


def _weather_records(lines: list[str], first: int) -> Iterator[tuple[int, list[str]]]:
    """Each record's line number and fields, from the line ``first`` (from 1)."""
    for number, fields in enumerate(csv.reader(lines[first - 1 :]), start=first):
        if fields:  # (a blank line: pvlib skips it too)
            yield number, fields


def _check_record_hours(path: Path, epw: bool) -> None:
    """``check_weather_values``'s ConfigError for the first record whose date or time is no
    hour of the year, or an hour a record before it gives, if there is one (pvlib refuses most
    of them, in a message that names no line)."""
    lines = _weather_lines(path)
    header = [] if epw else next(csv.reader(lines[1:2]), [])
    if epw or (TMY3_DATE in header and TMY3_TIME in header):
        hours = _RecordHours(path, epw, header)
        for number, fields in _weather_records(lines, EPW_FIRST_RECORD if epw else TMY3_FIRST_RECORD):
            hours.add(number, fields)


TMY3_DATE_FORM: Final = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
"""A TMY3 record's date as pvlib reads it (``%m/%d/%Y``: no space around it)."""
TMY3_TIME_FORM: Final = re.compile(r"(\d{1,2}):00")
"""A TMY3 record's time: on the hour."""


class _RecordHours:
    """The hours of a weather file's records, each checked as it is added (at its line): its
    date and time are an hour of the year, one no record before it gives."""

    def __init__(self, path: Path, epw: bool, header: list[str]) -> None:
        self.path = path
        self.epw = epw
        self.columns = (0, 0) if epw else (header.index(TMY3_DATE), header.index(TMY3_TIME))
        self.hours: list[Hour] = []
        self.lines: dict[Hour, int] = {}
        """The line of the record of each hour."""

    def add(self, number: int, fields: list[str]) -> None:
        hour = self._epw_hour(number, fields) if self.epw else self._tmy3_hour(number, fields)
        if hour in self.lines:
            month, day, start = hour
            which = f"{month:02}-{day:02} {start:02}:00-{start + 1:02}:00"
            raise ConfigError(
                f"{self.path}:{number}: a second record for {which} (the first is on line "
                f"{self.lines[hour]}); give each hour one record: correct the file or give another"
            )
        self.lines[hour] = number
        self.hours.append(hour)

    def _refuse(self, number: int, i: int, name: str, text: str, what: str) -> ConfigError:
        given = shown(text) if text else "empty"
        return ConfigError(
            f"{self.path}:{number}:{i + 1}: {name} is {given}, {what}; correct the record or give another "
            "weather file"
        )

    def _tmy3_hour(self, number: int, fields: list[str]) -> Hour:
        i, j = self.columns
        text = fields[i] if i < len(fields) else ""
        date = TMY3_DATE_FORM.fullmatch(text)
        try:
            day = dt.datetime(int(date[3]), int(date[1]), int(date[2])) if date else None
        except ValueError:
            day = None
        if day is None:
            raise self._refuse(number, i, TMY3_DATE, text, "no day of the calendar (MM/DD/YYYY)")
        text = fields[j].strip() if j < len(fields) else ""
        time = TMY3_TIME_FORM.fullmatch(text)
        if time is None or int(time[1]) > 24:
            what = "no hour of the day: a record's time is its hour's end, 01:00 to 24:00"
            raise self._refuse(number, j, TMY3_TIME, text, what)
        end = int(time[1])
        if end:
            return day.month, day.day, end - 1
        if (day.month, day.day) == (1, 1):  # (00:00: the last hour of the day before)
            return 12, 31, 23
        before = day - dt.timedelta(days=1)
        return before.month, before.day, 23

    def _epw_hour(self, number: int, fields: list[str]) -> Hour:
        texts = [fields[i].strip() if i < len(fields) else "" for i in range(len(EPW_TIME_FIELDS))]
        year, month, day, hour = (int(t) if is_decimal(t) else -1 for t in texts)
        if year < 0:
            raise self._refuse(number, 0, "year", texts[0], "not a year")
        if not 1 <= month <= 12:
            raise self._refuse(number, 1, "month", texts[1], "no month of the year (1 to 12)")
        days = calendar.monthrange(year, month)[1]
        if not 1 <= day <= days:
            name = calendar.month_name[month]
            raise self._refuse(number, 2, "day", texts[2], f"no day of {name} {year} (1 to {days})")
        if not 1 <= hour <= 24:
            raise self._refuse(
                number, 3, "hour", texts[3], "no hour of the day: a record's hour is the one it ends, 1 to 24"
            )
        return month, day, hour - 1


def _check_gap(path: Path, gap: list[int], i: int, name: str, key: str) -> None:
    """A ConfigError if the run of records ``gap`` (their line numbers) is longer than
    ``MAX_FILLED_HOURS``; the run ends here either way."""
    if len(gap) > MAX_FILLED_HOURS:
        raise ConfigError(
            f"{path}:{gap[0]}:{i + 1}: {name} is missing ({EPW_MISSING[key]:g}) in {len(gap)} records "
            f"in a row from here, and at most {MAX_FILLED_HOURS} are filled (a straight line between the "
            "records either side); give a weather file with shorter gaps"
        )
    gap.clear()


def check_weather_file(path: Path, start_ms: int, intervals: int) -> None:
    """A ConfigError when the weather file cannot be read or has no record for an hour of
    ``intervals`` intervals from ``start_ms`` (what ``irradiance`` would refuse)."""
    _check_weather_file(path, path.resolve(), start_ms, intervals)


@lru_cache(maxsize=1024)
def _check_weather_file(path: Path, resolved: Path, start_ms: int, intervals: int) -> None:
    """Once per file and span (a sweep checks each of its runs' scenarios, most of them over
    the same hours; the file itself is read once, ``_read_weather_file``)."""
    _from_weather_file(path, _utc_index(sample_times_ms(start_ms, intervals)))


def _from_weather_file(path: Path, times: Any) -> tuple[list[list[float]], int]:
    """The records' columns (ghi, dni, dhi, air temperature, wind speed) at ``times``, and how
    many of the hours they fall in had a value filled (``EPW_MISSING``)."""
    import pandas as pd

    weather = _read_weather_file(path.resolve())
    local = times + pd.Timedelta(seconds=weather.offset_s)
    rows = []
    hours = set()
    for t in local:
        day = 28 if (t.month, t.day) == (2, 29) else t.day  # a typical year has no 29 February
        hour = (t.month, day, t.hour)
        hours.add(hour)
        record = weather.records.get(hour)
        if record is None:
            raise ConfigError(
                f"the weather file {path} has no record for {t.month:02}-{day:02} {t.hour:02}h; "
                "give one with a record for every hour of the run (a typical year's)"
            )
        rows.append(record)
    return [list(column) for column in zip(*rows, strict=True)], len(hours & weather.filled)


def pv_energy(array: PvArray, sky: Irradiance) -> list[Wh]:
    """Energy ``array`` produces in each interval [Wh], under ``sky``."""
    power = pv_power_w(array, sky)
    return [
        round(sum(power[i * SUBSTEPS : (i + 1) * SUBSTEPS]) / SUBSTEPS * INTERVAL_MS / 3_600_000)
        for i in range(sky.intervals)
    ]


def pv_power_w(array: PvArray, sky: Irradiance) -> list[float]:
    """AC power of ``array`` at each sub-step [W] (PVWatts DC, SAPM cell temperature, less
    the array's losses)."""
    import numpy as np
    import pvlib

    poa = pvlib.irradiance.get_total_irradiance(
        array.tilt_deg,
        array.azimuth_deg,
        np.array(sky.zenith),
        np.array(sky.azimuth),
        np.array(sky.dni),
        np.array(sky.ghi),
        np.array(sky.dhi),
        model="isotropic",
    )["poa_global"]
    poa = np.nan_to_num(np.clip(poa, 0.0, None))
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS[TEMPERATURE_MODEL[0]][TEMPERATURE_MODEL[1]]
    cell = pvlib.temperature.sapm_cell(poa, np.array(sky.temp_air), np.array(sky.wind_speed), **params)
    dc = pvlib.pvsystem.pvwatts_dc(poa, cell, array.kwp * 1000.0, GAMMA_PDC)
    ac = np.clip(dc, 0.0, None) * (1.0 - array.losses_percent / 100.0)
    return [float(w) for w in ac]
