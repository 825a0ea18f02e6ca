"""Scenario files (TOML): what the simulator builds and runs. See docs/scenarios.md.

Every key has a default; unknown keys and wrong types are refused with one line naming the
file, the key and what is expected. Money is in GNC per kWh in the file (decimals allowed)
and becomes integer base units here.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import itertools
import math
import typing
from collections.abc import Iterator
from dataclasses import Field, dataclass, field, fields, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from gridnet.encoding import area_problem
from gridnet.errors import ConfigError, shown
from gridnet.files import path_problem, read_toml
from gridnet.ledger.params import default_params, parse_time_ms
from gridnet.units import (
    INTERVAL_MS,
    UNITS_PER_GNC,
    energy_cost,
    format_gnc,
    interval_of,
    interval_start,
    is_decimal,
)
from gridnet.world.demand import PROFILES
from gridnet.world.grid import GridSpec, equipment_problem
from gridnet.world.solar import Site, check_weather_file


def gnc(value: float) -> int:
    """GNC (a TOML number) -> base units, exactly for decimal literals."""
    return int(Decimal(str(value)) * UNITS_PER_GNC)


IN_UNITS: Final = "in base units of 0.00000001 GNC (further decimals are dropped)"
"""How the checks of money say that they compare the base units a run uses (``gnc``)."""


@dataclass(frozen=True)
class Simulation:
    name: str = "neighbourhood"
    seed: int = 1
    start: str = "2026-06-21T00:00:00Z"
    """First interval's start (UTC); it is rounded down to an interval boundary."""
    intervals: int = 96
    area: str = "north"


@dataclass(frozen=True)
class ChainSection:
    block_interval_s: float = 300.0
    difficulty_bits: int = 10
    identity_difficulty_bits: int = 10
    dispute_window_blocks: int = 4
    """Blocks after a contract's last settlement in which a later state may supersede it."""
    market: str = "offchain"
    """"offchain": orders travel off chain and the hub clears them (paper 001); "onchain":
    orders are transactions and the chain clears each auction (seed 004)."""
    auction_close_s: float = 300.0
    """On chain: an auction closes this long before its delivery interval starts [s]."""
    pricing: str = "uniform"
    """On chain: "uniform" (every trade at the clearing price) or "pay_as_offered" (each at
    its offer's price, as seed 004's auctions pay)."""
    consensus: str = "pow"
    """"pow": the nodes mine; "poa": a permissioned chain whose validators are the nodes
    (seed 004): they seal blocks in turn, one per ``block_interval_s`` slot, and vote."""


@dataclass(frozen=True)
class NetworkSection:
    nodes: int = 3
    latency_ms: int = 80
    jitter_ms: int = 40
    tick_s: float = 5.0
    hashes_per_tick: int = 6
    """Proof-of-work attempts per node per tick (sets the simulated hash rate)."""


@dataclass(frozen=True)
class WeatherSection:
    sky: str = "clouds"
    """"clear" (pvlib's clear sky), "clouds" (clear sky scaled by the seeded cloud model) or
    "file" (irradiance and temperature from ``weather_file``)."""
    cloudiness: float = 0.2
    """For "clouds": 0 (clear) to 1 (overcast)."""
    weather_file: str = ""
    """For "file": a TMY3 (.csv) or EPW (.epw) file, relative to the scenario file."""
    temp_air_c: float = 20.0
    """Air temperature when no weather file gives it [°C]."""


@dataclass(frozen=True)
class Homes:
    count: int = 20
    pv_share: float = 0.5
    battery_share: float = 0.5
    """Share of the PV homes that also have a battery."""
    pv_kw: tuple[float, float] = (3.0, 6.0)
    """Range of the PV arrays' DC rating [kWp] (each PV home draws one)."""
    pv_tilt_deg: float = 35.0
    pv_azimuth_deg: float = 180.0
    """[°] clockwise from north: 180 faces south."""
    pv_losses_percent: float = 14.0
    battery_kwh: tuple[float, float] = (5.0, 10.0)
    battery_kw: float = 3.0
    """Most power a battery takes or gives [kW]."""
    battery_efficiency: float = 0.9
    """Round trip: of 1 kWh charged, this much comes back out."""
    annual_kwh: tuple[float, float] = (2500.0, 4500.0)
    """Range of the homes' yearly consumption [kWh] (BDEW household profile)."""
    load_profile: str = "h0_dyn"
    load_variation: float = 0.1
    """Standard deviation of each home's seeded factor on every interval of its profile."""
    businesses: int = 1
    """Of the homes without PV, this many are businesses (BDEW ``business_profile``)."""
    business_kwh: float = 20000.0
    """Yearly consumption of each business [kWh]."""
    business_profile: str = "g0"
    buy_cap: tuple[float, float] = (0.30, 0.40)
    """Range of the homes' price caps [GNC/kWh] (each home draws one)."""
    sell_floor: tuple[float, float] = (0.04, 0.08)
    """Range of the homes' price floors [GNC/kWh]; above the DSO's feed-in price, surplus
    no other home buys is exported unpaid (reported as ``unsold_export_wh``)."""
    battery_sell_above: float = 80.0
    battery_buy_below: float = 15.0
    start_gnc: float = 50.0
    forecast_error: float = 0.15
    """Standard deviation of the devices' forecast error, relative to the real PV and load of
    each interval (seeded per home): homes order on the forecast, meters read reality."""
    ack_own_meter_share: float = 0.1
    """Share of the homes without PV (from the first) whose device first acknowledges only
    what its own meter imported when that is less than it bought; their sellers dispute
    with the buyer's later state."""


@dataclass(frozen=True)
class Dso:
    buy_price: float = 0.08
    """The DSO bids at this feed-in price [GNC/kWh], for any amount."""
    sell_price: float = 0.30
    """The DSO offers at this retail price [GNC/kWh], for any amount."""
    imbalance_price: float = 0.40
    """What a home pays for the shortfall the DSO supplied after the fact [GNC/kWh]."""
    balancing_kwh: float = 20.0
    """Most shortfall one balancing contract (a home's, for up to 96 intervals) covers [kWh]."""
    balancing_every: int = 16
    """A home's device sends its balancing state this often [intervals]."""
    curtail_limit_w: int = 1500
    """Export limit of a curtailment command [W]."""
    import_limit_w: int = 3000
    """Import limit of a limit-import command [W]."""
    command_hold: int = 4
    """A command covers the running interval and the next ones, this many in all."""
    override_share: float = 0.3
    """Share of the PV homes whose policy does not trust the DSO for commands: they override."""
    start_gnc: float = 5000.0


@dataclass(frozen=True)
class LineOwner:
    name: str
    fee: float
    """[GNC/kWh] carried over its lines."""
    cover_losses: bool = False
    """Raise the fee, when needed, to pay for its cables' losses at the DSO's retail price."""


@dataclass(frozen=True)
class Government:
    subsidy: float = 0.02
    """Paid per exported kWh of on-chain readings [GNC/kWh]."""
    start_gnc: float = 1000.0


@dataclass(frozen=True)
class SecuritySection:
    flagged_meters: int = 0
    """PV homes whose meter a security authority flags (a reported tampered seal)."""
    trusting_share: float = 0.5
    """Share of the homes whose policy trusts that authority's meter flags: they never buy
    from a flagged meter; the others still may."""


@dataclass(frozen=True)
class RelaySection:
    enabled: bool = True
    """Orders and contract states travel to the hub as paid, onion-routed datagrams."""
    hill_homes: int = 2
    """Homes without PV and without a wired neighbour: only the carrier reaches them."""
    carrier_stop_s: float = 60.0
    """The carrier moves to its next stop this often [s]."""
    pool_gnc: float = 0.05
    """Coin each home locks in its token pool for the day's datagrams [GNC]."""
    payrate: float = 0.75
    """p: the share each hop hands to the next."""


@dataclass(frozen=True)
class CurrencySection:
    name: str = "GNC"
    """The currency the report shows prices in, and policy files may write them in."""
    per_gnc: float = 1.0
    """Units of that currency one GNC is worth (the exchange rate)."""

    def gnc_per_unit(self) -> Decimal:
        """GNC one unit of the currency is worth (exactly, from the decimal rate)."""
        return Decimal(1) / Decimal(str(self.per_gnc))


@dataclass(frozen=True)
class TelemetrySection:
    kind: str = "memory"
    """How readings reach the collector: "memory" (handed over directly) or "mqtt" (meters
    publish to an MQTT broker started in-process on 127.0.0.1; the collector subscribes)."""


@dataclass(frozen=True)
class Scenario:
    simulation: Simulation
    chain: ChainSection
    network: NetworkSection
    homes: Homes
    dso: Dso
    line_owners: tuple[LineOwner, ...]
    government: Government
    telemetry: TelemetrySection
    security: SecuritySection
    relay: RelaySection
    site: Site
    weather: WeatherSection
    grid: GridSpec
    source: str
    currency: CurrencySection = field(default_factory=CurrencySection)
    tables: dict[str, Any] = field(default_factory=dict)
    """The tables of roles that define their own (``agents.roles.Role.table``), by name."""
    policies: dict[str, str] = field(default_factory=dict)
    """``[policies]``: home name -> its owner's policy file (relative to the scenario file)."""

    @property
    def start_ms(self) -> int:
        return parse_time_ms(self.simulation.start, f"{self.source}: [simulation] start")


DEFAULT_LINE_OWNERS = [{"name": "Feeder A Lines", "fee": 0.01}, {"name": "Feeder B Lines", "fee": 0.015}]

_SECTIONS: dict[str, type] = {
    "simulation": Simulation,
    "chain": ChainSection,
    "network": NetworkSection,
    "homes": Homes,
    "dso": Dso,
    "government": Government,
    "telemetry": TelemetrySection,
    "security": SecuritySection,
    "relay": RelaySection,
    "site": Site,
    "weather": WeatherSection,
    "grid": GridSpec,
    "currency": CurrencySection,
}


MIN_HOMES: Final = 2
MAX_HOMES: Final = 1_000
HOMES_RANGE: Final = f"[homes] count must be {MIN_HOMES} to {MAX_HOMES}"
MAX_INTERVALS: Final = 96 * 31
INTERVALS_RANGE: Final = f"[simulation] intervals must be 1 to {MAX_INTERVALS} (31 days)"
"""A scenario's area and length, at most (``_check``; ``bench sim`` checks its sizes against
them before it builds anything of their size)."""


MAX_INT: Final = 2**53
"""Integers a scenario takes are below this in size (exact in a float, in JSON and Parquet)."""


def _number(value: Any) -> bool:
    """A finite int or float (TOML's inf and nan are not numbers a scenario takes)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):  # (checked as an int: a 400-digit one does not convert to a float)
        return abs(value) < MAX_INT
    return math.isfinite(value) and abs(value) < MAX_INT


BOUNDS: Final = "bounds"
"""A field's metadata key for its range (``bounded``)."""


def bounded(default: Any, low: float, high: float, unit: str = "") -> Any:
    """A table's numeric key (a number or a ``[low, high]`` range) with its bounds: the loader
    refuses a value, or a range's end, outside ``low`` to ``high`` (``unit`` follows them in the
    message), before anything is built. Every numeric key of a role's table has them
    (tests/sim/test_scenario_bounds.py): without, 2^52 GNC passed every check and overflowed the
    ledger at the first auction, a count of 0 divided by zero."""
    return field(default=default, metadata={BOUNDS: (low, high, unit)})


TEXT: Final = "text"
"""A field's metadata key for the lengths the chain takes of it (``on_chain``)."""


def on_chain(default: Any, wire: Any) -> Any:
    """A table's text key (a string, or a list of them) that its role puts on chain as the
    ledger's ``wire`` type (an ``Annotated[str, msgspec.Meta(...)]``): the loader refuses a
    value (each of a list's) whose length the chain would refuse, before anything is built.
    The lengths are read from ``wire`` itself. Every text key a role's table puts on chain has
    them (tests/sim/test_scenario_bounds.py): without, ``[manufacturer] firmware = ""`` left
    every meter's registration refused ``WrongType`` and a day ran with no meter on chain."""
    info = msgspec.inspect.type_info(wire)
    if not isinstance(info, msgspec.inspect.StrType) or info.max_length is None:
        raise TypeError(f"{wire!r} is not a bounded string type of the ledger")
    return field(default=default, metadata={TEXT: (info.min_length or 0, info.max_length)})


def _out_of_lengths(value: Any, lengths: tuple[int, int], key: str) -> str | None:
    """What is wrong with the text ``value`` (or a list's) under the chain's ``lengths`` (None:
    nothing)."""
    low, high = lengths
    wrong = next((t for t in value if not low <= len(t) <= high), None) if isinstance(value, tuple) else value
    if wrong is None or low <= len(wrong) <= high:
        return None
    span = f"{low} to {high}" if low else f"at most {high}"
    whose = f": each must be {span}" if isinstance(value, tuple) else f" must be {span}"
    return f"{key}{whose} characters, what the chain takes ({shown(wrong, 40)} has {len(wrong)})"


def time_of_day(text: str, where: str) -> int:
    """A role table's time of day "HH:MM" (UTC) -> the intervals of the day before it; a
    ConfigError naming ``where`` for any other text. Its digits are ASCII: "²" is a digit to
    ``str.isdigit`` that ``int`` refuses (a ValueError traceback as the run was built)."""
    hours, sep, minutes = text.partition(":")
    digits = sep and all(is_decimal(part) for part in (hours, minutes))
    if not (digits and int(hours) < 24 and int(minutes) < 60):
        raise ConfigError(f'{where}: {shown(text)} is not a time of day as "HH:MM"')
    return int(hours) * 4 + int(minutes) // 15


def _figure(x: float) -> str:
    """A bound as a message shows it: 1000.0 -> "1,000", 0.5 -> "0.5"."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,}"


def _out_of_bounds(value: Any, bounds: tuple[float, float, str], key: str) -> str | None:
    """What is wrong with ``value`` under ``bounds`` (None: nothing)."""
    low, high, unit = bounds
    ends = value if isinstance(value, tuple) else (value,)
    if all(low <= x <= high for x in ends):
        return None
    span = f"{_figure(low)} to {_figure(high)}{' ' + unit if unit else ''}"
    return f"{key} must be within {span}" if isinstance(value, tuple) else f"{key} must be {span}"


def _unknown(kind: str, names: list[str], known: set[str]) -> str:
    """The unknown keys (or sections) and the known ones each may have meant; the whole list of
    known ones only when it is short (a table of 40 keys made a 1,000-character line)."""
    near = sorted({m for n in names for m in difflib.get_close_matches(n, known, n=2, cutoff=0.6)})
    listed = "[" + ", ".join(shown(n, 40) for n in names[:5]) + (", ..." if len(names) > 5 else "") + "]"
    if near:
        hint = "did you mean " + " or ".join(repr(m) for m in near) + "?"
    elif len(known) <= 12:
        hint = f"known: {sorted(known)}"
    else:
        hint = f"see docs/scenarios.md for the {len(known)} known ones"
    return f"unknown {kind}(s) {listed}; {hint}"


def _coerce(value: Any, default: Any, where: str, fixed: bool = False) -> Any:
    """``value`` as the type of ``default`` (a ConfigError naming ``where`` if it is not);
    ``fixed``: a tuple of strings must have the default's length (a pair of times)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and _number(value)
    elif isinstance(default, float):
        ok = _number(value)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple) and all(isinstance(v, str) for v in default):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        ok = ok and (not fixed or len(value) == len(default))
        value = tuple(value) if ok else value
    elif isinstance(default, tuple):
        ok = isinstance(value, list) and len(value) == 2 and all(_number(v) for v in value)
        if ok:
            value = (float(value[0]), float(value[1]))
            ok = value[0] <= value[1]
    else:  # pragma: no cover - every field has one of the types above
        raise TypeError(default)
    if not ok:
        kind = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
            type(default), "a [low, high] pair of numbers"
        )
        if isinstance(value, int | float) and not isinstance(value, bool | str):
            kind += " (finite, and below 2**53 in size)"
        elif isinstance(value, list) and all(isinstance(v, int | float) for v in value):
            kind += " (finite, and below 2**53 in size, low <= high)"
        if isinstance(default, tuple) and all(isinstance(v, str) for v in default):
            example = ", ".join(f'"{v}"' for v in default) if fixed else '"home-3"'
            kind = f"a list of {len(default)} strings" if fixed else "a list of strings"
            kind += f", e.g. [{example}]"
        if isinstance(default, str) and isinstance(value, dt.date | dt.time):
            kind += f' (put the date in quotes: "{value.isoformat()}")'
        raise ConfigError(f"{where} must be {kind}")
    return value


@functools.cache
def _table(cls: type) -> tuple[dict[str, Field[Any]], Any, dict[str, bool]]:
    """A table's fields by name, its defaults, and by key whether a tuple of strings keeps the
    default's length (``tuple[str, str]``, not ``tuple[str, ...]``): once per class (reading
    the type hints for every table of every scenario was most of the time a 10,000-run sweep
    took to load)."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    return known, cls(), {k: Ellipsis not in typing.get_args(hints[k]) for k in known}


def _section(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    known, defaults, fixed = _table(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: {_unknown('key', unknown, set(known))}")
    values = {k: _coerce(v, getattr(defaults, k), f"{where} {k}", fixed[k]) for k, v in data.items()}
    for k, v in values.items():
        metadata = known[k].metadata
        problem = _out_of_bounds(v, metadata[BOUNDS], k) if BOUNDS in metadata else None
        if problem is None and TEXT in metadata:
            problem = _out_of_lengths(v, metadata[TEXT], k)
        if problem is not None:
            raise ConfigError(f"{where} {problem}")
    return cls(**values)


def _fitted_defaults(parts: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """The hill homes and businesses a file leaves to their defaults (2 and 1) are at most what
    its street has room for (homes without PV, off the hill), so that every count of homes runs
    on the defaults; a value the file sets is checked as written."""
    homes, relay = parts["homes"], parts["relay"]
    if not isinstance(homes.count, int) or not 0 <= homes.pv_share <= 1:
        return {}  # (refused by the checks)
    without_pv = max(0, homes.count - round(homes.count * homes.pv_share))
    fitted: dict[str, Any] = {}
    if "hill_homes" not in doc.get("relay", {}):
        relay = fitted["relay"] = replace(relay, hill_homes=min(relay.hill_homes, without_pv))
    if "businesses" not in doc.get("homes", {}):
        room = without_pv - (relay.hill_homes if relay.enabled else 0)
        fitted["homes"] = replace(homes, businesses=max(0, min(homes.businesses, room)))
    return fitted


def _role_tables() -> dict[str, type]:
    """The tables of roles that define their own (imported here: the roles import this module)."""
    from gridnet.agents.roles import roles

    return {r.name: r.table for r in roles() if r.table is not None}


def scenario_from_dict(doc: dict[str, Any], source: str = "scenario", *, check: bool = True) -> Scenario:
    """The scenario ``doc`` describes (``source`` names it in errors; its files are relative to
    it): every section and key known, of its type and within its range, else a ConfigError;
    with ``check`` also what the keys say together and the files it names (``_check``: as a
    run takes it; without, a part of one, such as a sweep's base and ``[set]``)."""
    role_tables = _role_tables()
    known = {*_SECTIONS, *role_tables, "line_owner", "policies"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"{source}: {_unknown('section', unknown, known)}")
    parts = {name: _section(cls, doc.get(name, {}), f"{source}: [{name}]") for name, cls in _SECTIONS.items()}
    parts.update(_fitted_defaults(parts, doc))
    tables = {
        name: _section(cls, doc.get(name, {}), f"{source}: [{name}]") for name, cls in role_tables.items()
    }
    owners = []
    entries = doc.get("line_owner", DEFAULT_LINE_OWNERS)
    if not isinstance(entries, list):
        raise ConfigError(
            f"{source}: line owners are an array of tables: write each as [[line_owner]] (two brackets) "
            "with its name and fee"
        )
    for i, entry in enumerate(entries):
        where = f"{source}: line_owner {i + 1}"
        if not isinstance(entry, dict) or not {"name", "fee"} <= set(entry) <= {
            "name",
            "fee",
            "cover_losses",
        }:
            raise ConfigError(f"{where} needs 'name' and 'fee' (and may have 'cover_losses')")
        owners.append(
            LineOwner(
                _coerce(entry["name"], "", f"{where} name"),
                _coerce(entry["fee"], 0.0, f"{where} fee"),
                _coerce(entry.get("cover_losses", False), False, f"{where} cover_losses"),
            )
        )
    policies = doc.get("policies", {})
    if not isinstance(policies, dict) or not all(isinstance(v, str) and v for v in policies.values()):
        raise ConfigError(
            f'{source}: [policies] maps home names to policy files, e.g. home-1 = "policies/n1.toml"'
        )
    scenario = Scenario(
        line_owners=tuple(owners), source=source, tables=tables, policies=dict(policies), **parts
    )
    if check:
        _check(scenario)
    return scenario


def _checks(s: Scenario) -> Iterator[tuple[bool, str]]:
    """The scenario's checks, each with its message, in order: a generator, so that each is
    only evaluated once every check before it has passed (``60 / tick_s`` after ``tick_s`` is
    known positive; with a list, tick_s = 0 divided by zero before its check was read)."""
    yield (1 <= s.simulation.intervals <= MAX_INTERVALS, INTERVALS_RANGE)
    yield (area_problem(s.simulation.area) is None, f"[simulation] area: {area_problem(s.simulation.area)}")
    yield (MIN_HOMES <= s.homes.count <= MAX_HOMES, HOMES_RANGE)
    yield (0 <= s.homes.pv_share <= 1 and 0 <= s.homes.battery_share <= 1, "[homes] shares must be 0 to 1")
    yield (1 <= s.network.nodes <= 16, "[network] nodes must be 1 to 16")
    yield (
        s.network.tick_s > 0 and s.network.hashes_per_tick > 0,
        "[network] tick_s and hashes_per_tick must be positive",
    )
    yield (s.chain.block_interval_s >= 1, "[chain] block_interval_s must be at least 1")
    yield (
        s.currency.name.isalpha() and 1 <= len(s.currency.name) <= 8 and s.currency.per_gnc > 0,
        "[currency] name must be 1 to 8 letters (e.g. GBP) and per_gnc above 0",
    )
    yield (s.chain.market in ("offchain", "onchain"), '[chain] market must be "offchain" or "onchain"')
    yield (s.chain.consensus in ("pow", "poa"), '[chain] consensus must be "pow" or "poa"')
    yield (
        s.chain.pricing in ("uniform", "pay_as_offered"),
        '[chain] pricing must be "uniform" or "pay_as_offered"',
    )
    yield (
        0 < s.chain.auction_close_s < 600,
        "[chain] auction_close_s must be above 0 and below 600 (orders go out 15 minutes ahead)",
    )
    yield (
        1 <= len(s.line_owners) <= s.homes.count,
        "at least 1 line owner and at most one per home ([homes] count)",
    )
    yield (
        0 < gnc(s.dso.buy_price) < gnc(s.dso.sell_price),
        f"[dso] buy_price must be positive and below sell_price {IN_UNITS}",
    )
    yield (gnc(s.dso.imbalance_price) > 0, f"[dso] imbalance_price must be positive {IN_UNITS}")
    yield (
        s.dso.balancing_kwh > 0 and s.dso.balancing_every >= 1 and s.dso.command_hold >= 1,
        "[dso] balancing_kwh must be positive, balancing_every and command_hold at least 1",
    )
    yield (
        s.dso.curtail_limit_w >= 0 and s.dso.import_limit_w >= 0,
        "[dso] curtail_limit_w and import_limit_w must be 0 or more",
    )
    yield (0 <= s.dso.override_share <= 1, "[dso] override_share must be 0 to 1")
    yield (
        0 <= s.homes.forecast_error <= 1 and 0 <= s.homes.ack_own_meter_share <= 1,
        "[homes] forecast_error and ack_own_meter_share must be 0 to 1",
    )
    yield (s.government.subsidy >= 0, "[government] subsidy must be 0 or more")
    yield (
        s.homes.battery_buy_below <= s.homes.battery_sell_above,
        "[homes] battery_buy_below must be at most battery_sell_above",
    )
    yield (s.telemetry.kind in ("memory", "mqtt"), '[telemetry] kind must be "memory" or "mqtt"')
    yield (
        0 <= s.security.flagged_meters <= s.homes.count,
        "[security] flagged_meters must be 0 to [homes] count",
    )
    yield (0 <= s.security.trusting_share <= 1, "[security] trusting_share must be 0 to 1")
    yield (
        not s.relay.enabled
        or 0 <= s.relay.hill_homes <= s.homes.count - round(s.homes.count * s.homes.pv_share),
        "[relay] hill_homes must be 0 to the number of homes without PV (or [relay] enabled = false)",
    )
    yield (
        0 <= s.relay.payrate <= 1 and s.relay.carrier_stop_s > 0,
        "[relay] payrate 0..1, carrier_stop_s > 0",
    )
    yield (
        gnc(s.relay.pool_gnc) >= pool_length(s.simulation.intervals),
        "[relay] pool_gnc is too small: each of the pool's hashes must be worth a base unit",
    )
    yield ((60 / s.network.tick_s).is_integer(), "[network] tick_s must divide 60")
    yield (
        -90 <= s.site.latitude <= 90 and -180 <= s.site.longitude <= 180,
        "[site] latitude -90..90, longitude -180..180",
    )
    yield (s.weather.sky in ("clear", "clouds", "file"), '[weather] sky must be "clear", "clouds" or "file"')
    yield (0 <= s.weather.cloudiness <= 1, "[weather] cloudiness must be 0 to 1")
    yield (
        s.weather.sky != "file" or bool(s.weather.weather_file),
        '[weather] sky = "file" needs weather_file',
    )
    yield (
        0 <= s.homes.pv_tilt_deg <= 90 and 0 <= s.homes.pv_azimuth_deg < 360,
        "[homes] pv_tilt_deg 0..90, pv_azimuth_deg 0..359",
    )
    yield (0 <= s.homes.pv_losses_percent < 100, "[homes] pv_losses_percent must be 0 to 99")
    yield (
        s.homes.annual_kwh[0] > 0 and s.homes.business_kwh > 0,
        "[homes] annual_kwh and business_kwh must be positive",
    )
    yield (s.homes.load_variation >= 0, "[homes] load_variation must be 0 or more")
    yield (
        s.grid.mv_kv > 0.4 and s.grid.spacing_m > 0,
        "[grid] mv_kv must exceed 0.4 and spacing_m be positive",
    )
    yield (
        s.grid.max_loading_percent > 0 and 0 < s.grid.v_min_pu < 1 < s.grid.v_max_pu,
        "[grid] max_loading_percent must be positive and v_min_pu < 1 < v_max_pu",
    )
    yield (
        s.homes.load_profile in PROFILES and s.homes.business_profile in PROFILES,
        f"[homes] load_profile and business_profile must be one of {', '.join(PROFILES)}",
    )
    yield (
        _known_zone(s.site.timezone),
        '[site] timezone is not a known time zone: it must be an IANA name such as "Europe/Berlin"',
    )
    yield (
        s.homes.battery_kw >= 0 and 0 < s.homes.battery_efficiency <= 1,
        "[homes] battery_kw must be 0 or more, battery_efficiency above 0 and at most 1",
    )
    yield (
        0
        <= s.homes.businesses
        <= s.homes.count
        - round(s.homes.count * s.homes.pv_share)
        - (s.relay.hill_homes if s.relay.enabled else 0),
        "[homes] businesses must be 0 to the number of homes without PV (and off the hill)",
    )


def _together(s: Scenario) -> Iterator[tuple[bool, str]]:
    """What each role's table says of its keys together (its ``problem()``: a message, or None
    when they agree), whether the table is enabled or not, as its ranges are."""
    for table in s.tables.values():
        check = getattr(table, "problem", None)
        if callable(check):
            problem = check()
            yield (problem is None, str(problem))


def _check(s: Scenario) -> None:
    src = s.source
    for ok, message in itertools.chain(_checks(s), _bounds(s), _pow_costs(s), _together(s)):
        if not ok:
            raise ConfigError(f"{src}: {message}")
    start = s.start_ms
    if not FIRST_START_MS <= start < LAST_START_MS:
        raise ConfigError(f"{src}: [simulation] start must be in the years 1971 to 2199 (UTC)")
    if gnc(s.homes.start_gnc) < home_needs(s):
        raise ConfigError(
            f"{src}: [homes] start_gnc must be at least {format_gnc(home_needs(s))}, what a home locks and "
            "pays to take part: its token pool ([relay] pool_gnc), its balancing contract's deposit "
            "([dso] balancing_kwh at imbalance_price plus the line fee) and its transactions' fees"
        )
    fees = SETUP_BYTES * default_params().min_fee_per_byte  # (its first transactions')
    dso_needs = fees + (s.homes.count * gnc(s.relay.pool_gnc) if s.relay.enabled else 0)
    setups: list[tuple[str, float, int, str]] = [
        ("dso", s.dso.start_gnc, dso_needs, "its token pool for each home ([relay] pool_gnc) and "),
        ("government", s.government.start_gnc, fees, ""),
    ]
    for table, given, needs, what in setups:
        if gnc(given) < needs:
            raise ConfigError(
                f"{src}: [{table}] start_gnc must be at least {format_gnc(needs)}, what it locks and pays to "
                f"set up: {what}its first transactions' fees (what it then buys or pays needs more)"
            )
    _check_files(s)


def _named_files(s: Scenario) -> dict[str, str]:
    """The files the scenario names, by key (``[weather] weather_file``, ``[policies] HOME``)."""
    named = {"[weather] weather_file": s.weather.weather_file} if s.weather.weather_file else {}
    named.update({f"[policies] {home}": name for home, name in s.policies.items()})
    return named


def input_files(s: Scenario, *, own: bool = True) -> dict[str, Path]:
    """The files a run of ``s`` reads, by what each is: the scenario file (``own``; none for
    the built-in defaults) and every file it names, resolved as the run resolves them."""
    files = {"the scenario file": Path(s.source)} if own and s.source != "defaults" else {}
    for key, name in _named_files(s).items():
        files[f"{key}'s file" if key.startswith("[policies]") else key] = data_path(s.source, name)
    return files


def _check_files(s: Scenario) -> None:
    """What the scenario names outside itself: every file's name (each resolved as the run
    will), the weather file (read now, with the records of every hour of the run) and
    pandapower's standard types (``[grid]``), checked last: they load pvlib and pandapower,
    which the run loads anyway."""
    for key, name in _named_files(s).items():
        try:
            data_path(s.source, name)
        except ConfigError as exc:
            raise ConfigError(f"{s.source}: {key}: {exc}") from None
    if s.weather.sky == "file":
        start = interval_start(interval_of(s.start_ms))
        try:
            check_weather_file(data_path(s.source, s.weather.weather_file), start, s.simulation.intervals)
        except ConfigError as exc:
            raise ConfigError(f"{s.source}: [weather] weather_file: {exc}") from None
    problem = equipment_problem(s.grid)
    if problem is not None:
        raise ConfigError(f"{s.source}: [grid] {problem}")


SETUP_BYTES: Final = 4_000
"""Bytes of the transactions whose fees a home's first coin pays: its identity, token pool,
meter and first balancing contract (about 1,250 together) and a transaction or two more (a
claim of the datagrams it relayed is about 1,400)."""


def home_needs(s: Scenario) -> int:
    """What a home locks and pays to take part [base units]: its token pool (with relays),
    its first balancing contract's deposit (``balancing_kwh`` at ``imbalance_price`` plus its
    feeder owner's fee: the highest owner's) and the fees of ``SETUP_BYTES`` at the genesis's
    fee per byte."""
    max_wh = round(s.dso.balancing_kwh * 1000)
    fee = max(gnc(o.fee) for o in s.line_owners)
    deposit = energy_cost(max_wh, gnc(s.dso.imbalance_price)) + energy_cost(max_wh, fee)
    pool = gnc(s.relay.pool_gnc) if s.relay.enabled else 0
    return pool + deposit + SETUP_BYTES * default_params().min_fee_per_byte


FIRST_START_MS: Final = 365 * 86_400_000
"""1971-01-01: a chain's genesis is set a while before the first interval, after 1970."""
LAST_START_MS: Final = 7_258_118_400_000
"""2200-01-01: the calendars and weather models the world uses stop before 2262."""
MAX_GNC: Final = 10**7
"""The most GNC a participant starts with (1,000 homes and the rest at this fit the ledger's
64-bit amounts)."""
MAX_LIMIT_W: Final = 10_000_000
"""The highest export or import limit a DSO's command sets [W] (10 MW: above any home's)."""
MAX_PRICE: Final = 1_000.0
"""The highest price or fee a scenario takes [GNC/kWh]."""
PRICE: Final = "GNC/kWh"
"""The unit of prices (``bounded``)."""
BOOTSTRAP_MS: Final = 2 * 3600 * 1000
"""Simulated time before the first interval, for identities, authorities and meters (the
genesis's time is this long before it)."""
POW_BUDGET: Final = 2**30
"""The most hashes a run's proof-of-work may come to by its estimates, the identity proofs'
(``identity_work``) and the nodes' mining (``mining_work``) each: about a billion, what a core
hashes in pure Python in 12 (identity proofs, about 1.5 million a second) to 25 minutes
(mining in a run, about 0.7 million: 20,000 a tick on one node took 45 s for 32 million).
Counted, not timed: a scenario is valid on every machine or none.
Within the keys' ranges alone, identity proofs of 32 bits took an hour per identity and
1,000,000 hashes a tick ten hours a day."""
OTHER_IDENTITIES: Final = 32
"""Identities a run registers besides its homes', at most (the estimate counts this many): the
DSO, the government, the manufacturer, the security lab, the advisor, the carrier and the
roles' (the vehicle registry, up to 16 maintenance teams, the generation station and the key
centre), 25 in all."""


def identity_work(s: Scenario) -> int:
    """The hashes the identity proofs of ``s`` take, expected: 2^identity_difficulty_bits for
    each of its identities (its homes and ``OTHER_IDENTITIES``), searched at the bootstrap."""
    return (s.homes.count + OTHER_IDENTITIES) << s.chain.identity_difficulty_bits


def mining_work(s: Scenario) -> int:
    """The hashes the nodes of ``s`` mine: ``hashes_per_tick`` on each node every tick of the
    bootstrap and the intervals (the wait for the chain to settle after them not counted);
    none on a permissioned chain (``consensus = "poa"``: its validators seal blocks)."""
    if s.chain.consensus != "pow":
        return 0
    ticks = (BOOTSTRAP_MS + s.simulation.intervals * INTERVAL_MS) // round(s.network.tick_s * 1000)
    return ticks * s.network.nodes * s.network.hashes_per_tick


MIN_RUN_BLOCKS: Final = 4
"""Blocks a run on a chain that mines must expect at its starting difficulty, at least."""


def run_seconds(s: Scenario) -> float:
    """Simulated time of the bootstrap and the intervals [s]."""
    return (BOOTSTRAP_MS + s.simulation.intervals * INTERVAL_MS) / 1000


def block_seconds(s: Scenario) -> float:
    """Simulated time the nodes of ``s`` take to mine a block at the starting difficulty,
    expected: 2^difficulty_bits hashes, ``hashes_per_tick`` on each node every ``tick_s`` [s]."""
    n = s.network
    return (1 << s.chain.difficulty_bits) / (n.nodes * n.hashes_per_tick) * n.tick_s


def _pow_costs(s: Scenario) -> Iterator[tuple[bool, str]]:
    """The run's proof-of-work, by its estimates, within ``POW_BUDGET``, and a chain that
    mines at least ``MIN_RUN_BLOCKS`` blocks in the run at its starting difficulty (each
    message names the keys, the estimate and what to change)."""
    ids, bits = s.homes.count + OTHER_IDENTITIES, s.chain.identity_difficulty_bits
    work = identity_work(s)
    yield (
        work <= POW_BUDGET,
        f"[chain] identity_difficulty_bits = {bits} makes the identity proofs about {work:,} hashes "
        f"(2^{bits} for each of up to {ids:,} identities), more than the {POW_BUDGET:,} a run may take: "
        f"give it at most {(POW_BUDGET // ids).bit_length() - 1}, or fewer homes",
    )
    n = s.network
    work = mining_work(s)
    most = n.hashes_per_tick * POW_BUDGET // work if work else 0
    yield (
        work <= POW_BUDGET,
        f"[network] hashes_per_tick = {n.hashes_per_tick:,} on {n.nodes} node(s) makes the mining about "
        f"{work:,} hashes over the bootstrap and the intervals, more than the {POW_BUDGET:,} a run may "
        f"take: give it at most {most:,}, or fewer nodes or intervals, or a longer tick_s",
    )
    if s.chain.consensus == "pow":
        run, block = run_seconds(s), block_seconds(s)
        bits = s.chain.difficulty_bits
        fits = math.floor(math.log2(run / MIN_RUN_BLOCKS * n.nodes * n.hashes_per_tick / n.tick_s))
        yield (
            block * MIN_RUN_BLOCKS <= run,
            f"[chain] difficulty_bits = {bits} takes {n.nodes} node(s) hashing {n.hashes_per_tick:,} every "
            f"{n.tick_s:g} s about {block:,.0f} s a block, expected: fewer than {MIN_RUN_BLOCKS} blocks in "
            f"the run's {run:,.0f} s (the bootstrap and the intervals), so it could not record what it "
            f"simulates: give it at most {fits}, or more nodes or hashes_per_tick",
        )


def _bounds(s: Scenario) -> Iterator[tuple[bool, str]]:
    """The upper (and missing lower) bounds of the scenario's numbers: beyond them a run
    would overflow the ledger's integers, never end, or model nothing physical (checked after
    ``_checks``, lazily as they are)."""
    h, d, n, c = s.homes, s.dso, s.network, s.chain
    prices = (d.buy_price, d.sell_price, d.imbalance_price, s.government.subsidy, *h.buy_cap, *h.sell_floor)
    names = [o.name for o in s.line_owners]
    yield (
        1 <= len(s.simulation.name) <= 64 and s.simulation.name.isprintable(),
        "[simulation] name must be 1 to 64 printable characters",
    )
    yield (0 <= s.simulation.seed < 2**63, "[simulation] seed must be 0 to 2**63 - 1")
    yield (
        1 <= c.difficulty_bits <= 32 and 1 <= c.identity_difficulty_bits <= 32,
        "[chain] difficulty_bits and identity_difficulty_bits must be 1 to 32",
    )
    yield (c.block_interval_s <= 86_400, "[chain] block_interval_s must be at most 86400 (a day)")
    yield (1 <= c.dispute_window_blocks <= 1_000, "[chain] dispute_window_blocks must be 1 to 1000")
    yield (
        0 <= n.latency_ms <= 60_000 and 0 <= n.jitter_ms <= 60_000,
        "[network] latency_ms and jitter_ms must be 0 to 60000",
    )
    yield (0.5 <= n.tick_s <= 60, "[network] tick_s must be 0.5 to 60")
    yield (n.hashes_per_tick <= 1_000_000, "[network] hashes_per_tick must be at most 1,000,000")
    yield (
        h.pv_kw[0] >= 0 and h.pv_kw[1] <= 1_000,
        "[homes] pv_kw must be within 0 to 1000 (kWp per home)",
    )
    yield (
        h.battery_kwh[0] >= 0.001 and h.battery_kwh[1] <= 10_000 and h.battery_kw <= 10_000,
        "[homes] battery_kwh must be within 0.001 (1 Wh) to 10000 and battery_kw at most 10000",
    )
    yield (
        h.annual_kwh[1] <= 1_000_000 and h.business_kwh <= 100_000_000,
        "[homes] annual_kwh must be at most 1,000,000 and business_kwh at most 100,000,000",
    )
    yield (h.load_variation <= 1, "[homes] load_variation must be 0 to 1")
    yield (
        0 <= h.battery_buy_below <= 100 and 0 <= h.battery_sell_above <= 100,
        "[homes] battery_buy_below and battery_sell_above must be 0 to 100 (% charged)",
    )
    yield (
        all(0 <= p <= MAX_PRICE for p in prices) and all(0 <= o.fee <= MAX_PRICE for o in s.line_owners),
        f"prices, fees and the subsidy must be 0 to {MAX_PRICE:,.0f} GNC/kWh",
    )
    yield (
        all(0 <= g <= MAX_GNC for g in (h.start_gnc, d.start_gnc, s.government.start_gnc)),
        f"[homes], [dso] and [government] start_gnc must be 0 to {MAX_GNC:,}",
    )
    yield (d.balancing_kwh <= 1_000_000, "[dso] balancing_kwh must be at most 1,000,000")
    yield (
        d.balancing_every <= MAX_INTERVALS and d.command_hold <= MAX_INTERVALS,
        f"[dso] balancing_every and command_hold must be at most {MAX_INTERVALS} (intervals: 31 days)",
    )
    yield (
        d.curtail_limit_w <= MAX_LIMIT_W and d.import_limit_w <= MAX_LIMIT_W,
        f"[dso] curtail_limit_w and import_limit_w must be at most {MAX_LIMIT_W:,} (W)",
    )
    yield (
        all(1 <= len(name) <= 64 and name.isprintable() for name in names) and len(set(names)) == len(names),
        "each line owner needs a name of its own, 1 to 64 printable characters",
    )
    yield (
        s.security.flagged_meters <= round(h.count * h.pv_share),
        "[security] flagged_meters must be at most the number of PV homes",
    )
    yield (
        0 <= s.relay.hill_homes <= MAX_HOMES,
        f"[relay] hill_homes must be 0 to {MAX_HOMES:,} (and at most the homes without PV)",
    )
    yield (
        s.relay.carrier_stop_s <= 3_600 and s.relay.pool_gnc <= 1_000,
        "[relay] carrier_stop_s must be at most 3600 and pool_gnc at most 1000",
    )
    yield (0 < s.currency.per_gnc <= 1e9, "[currency] per_gnc must be above 0 and at most 1e9")
    yield (-60 <= s.weather.temp_air_c <= 60, "[weather] temp_air_c must be -60 to 60")
    yield (-500 <= s.site.altitude_m <= 9_000, "[site] altitude_m must be -500 to 9000")
    yield (
        s.grid.mv_kv <= 400 and s.grid.spacing_m <= 10_000,
        "[grid] mv_kv must be at most 400 and spacing_m at most 10000",
    )
    yield (
        s.grid.max_loading_percent <= 1_000 and s.grid.v_max_pu <= 2,
        "[grid] max_loading_percent must be at most 1000 and v_max_pu at most 2",
    )


def _known_zone(name: str) -> bool:
    """Whether ``name`` is a time zone (an OSError too says it is not: "America" is a directory
    of tzdata, a name of 5,000 characters too long for a file's)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def pool_length(intervals: int) -> int:
    """Hashes in each home's token pool: room for many datagrams per interval."""
    return 32 * intervals + 64


POOL_EXPIRY: Final = 1_000_000
"""Expiry height of the run's token pools, unless the run may come near it (:func:`pool_expiry`)."""


def pool_expiry(s: Scenario) -> int:
    """Expiry height of the run's token pools: ``POOL_EXPIRY``, or for a run of more blocks
    than that allows, twice its blocks at its block interval — its intervals, the one before
    the first, and a day for its end: the last deliveries, then the receivers' claims and the
    relays' hop claims, each waited for at most 6 hours — plus the relays' margin. The run's
    claims come at its end, and a relay carries a pool's datagrams only while claims on it can
    still be mined for ``relay.datagram.POOL_EXPIRY_MARGIN`` blocks (``PoolExpiring``): 31 days
    of 1-second blocks are 2.7 million blocks."""
    from gridnet.relay.datagram import POOL_EXPIRY_MARGIN

    seconds = (s.simulation.intervals + 1) * INTERVAL_MS // 1000 + 86_400
    blocks = math.ceil(seconds / s.chain.block_interval_s)
    return max(POOL_EXPIRY, 2 * blocks + POOL_EXPIRY_MARGIN)


def data_path(source: str, name: str) -> Path:
    """A file a scenario names, relative to the scenario file; a ConfigError for a name no
    file has (``path_problem``: a NUL character, or too long)."""
    path = Path(name)
    if not path.is_absolute() and source != "defaults":
        path = Path(source).parent / path
    if (problem := path_problem(path)) is not None:
        raise ConfigError(f"{shown(name)} is not a file's path: {problem}")
    return path


def load_scenario(path: Path | None) -> Scenario:
    """The scenario in ``path`` (None = every default)."""
    if path is None:
        return scenario_from_dict({}, "defaults")
    return scenario_from_dict(read_toml(path, "scenario file"), str(path))
