"""A participant's private trading policy (seed 004's PML): loaded from TOML, never broadcast.

Example::

    [[buy]]                  # price caps by time of day (UTC), [from, to)
    from = "00:00"
    to = "07:00"
    max_price = 20000        # [base units / kWh]

    [[sell]]                 # price floors by time of day; a window may wrap midnight
    from = "22:00"
    to = "06:00"
    min_price = 15000

    [battery]                # state of charge [%] that triggers buying or selling
    buy_below = 20
    sell_above = 80
    nominal_v = 12.0         # [V]: energy may be written in Ah

    [[check]]                # on a schedule: if stored energy < 50 Ah, buy until 60 Ah
    every = "1m"
    if_stored_below = "50 Ah"
    buy_until = "60 Ah"
    max_price = 6000

    [commands]               # DSO command kinds overridden even from a trusted DSO
    override = ["limit_import"]

    [trust]                  # authorities (gn... addresses) trusted for each purpose
    meters = ["gn..."]       # their flags against a meter exclude its offers
    identities = ["gn..."]   # their flags against a trader exclude its offers
    dso = ["gn..."]          # their emergency commands are followed
    manufacturers = ["gn..."]  # only meters certified by these are accepted

Rules: window times are ``HH:MM`` on a 15-minute boundary, ``to`` may be ``24:00``, a window
with ``to`` before ``from`` wraps midnight, and windows of one kind must not overlap. In an
interval no ``buy`` window covers, the policy does not buy (``max_buy_price`` is None); the
same for ``sell``. Without ``[battery]`` the battery never triggers trading. Without
``trust.manufacturers`` any manufacturer registered on chain is accepted; with it, only
those listed. A flag excludes an offer only when its author is trusted for that purpose;
a manufacturer's revocation of a meter always does.

Time of day is computed from the integer interval index (interval 0 starts 1970-01-01 00:00
UTC), once per lookup from a precomputed table: no date arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from gridnet.crypto.address import address_from_public_key, address_from_text
from gridnet.errors import ConfigError, InvalidAddress, shown
from gridnet.files import parse_toml, read_toml
from gridnet.market.orders import Order, Side
from gridnet.units import (
    INTERVAL_MS,
    PUBLIC_KEY_BYTES,
    UNITS_PER_GNC,
    Address,
    Interval,
    UnitsPerKWh,
    is_decimal,
)

MINUTES_PER_DAY: Final = 24 * 60
SLOT_MINUTES: Final = INTERVAL_MS // 60_000
"""Length of a metering interval [min]."""
SLOTS_PER_DAY: Final = MINUTES_PER_DAY // SLOT_MINUTES
"""Metering intervals per UTC day (96)."""
TRUST_PURPOSES: Final = ("meters", "identities", "dso")
"""What an authority can be trusted for (besides ``manufacturers``, a list of its own)."""
MAX_PRICE: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class PriceWindow:
    """A price limit over a time-of-day window [start, end) in UTC minutes."""

    start_minute: int
    """First minute of the day the window covers [min after 00:00 UTC]."""
    end_minute: int
    """First minute no longer covered [min]; 1440 = midnight; below start = wraps midnight."""
    price: UnitsPerKWh
    """The cap (buy) or floor (sell) [base units / kWh]."""

    def slots(self) -> list[int]:
        """The intervals of the day (0..95) the window covers."""
        first = self.start_minute // SLOT_MINUTES
        span = self.end_minute - self.start_minute
        if span <= 0:
            span += MINUTES_PER_DAY  # wraps midnight
        count = span // SLOT_MINUTES
        return [(first + k) % SLOTS_PER_DAY for k in range(count)]


@dataclass(frozen=True, slots=True)
class MeterStanding:
    """What the chain says about a selling meter (the caller reads it from chain state)."""

    manufacturer: bytes
    """The certifying manufacturer's address (or its 32-byte public key)."""
    flagged_by: frozenset[bytes] = frozenset()
    """Addresses of the authorities that flagged this meter."""
    revoked: bool = False
    """True when the manufacturer revoked the meter's certificate."""
    owner_flagged_by: frozenset[bytes] = frozenset()
    """Addresses of the authorities that flagged the meter owner's identity."""


def _fmt(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _slot_table(windows: tuple[PriceWindow, ...], kind: str, source: str) -> tuple[int | None, ...]:
    """Price per interval of the day; ConfigError when two windows overlap."""
    table: list[int | None] = [None] * SLOTS_PER_DAY
    owner: list[int | None] = [None] * SLOTS_PER_DAY
    for n, w in enumerate(windows):
        if not (
            0 <= w.start_minute < MINUTES_PER_DAY
            and 0 <= w.end_minute <= MINUTES_PER_DAY
            and w.start_minute != w.end_minute
            and w.start_minute % SLOT_MINUTES == 0
            and w.end_minute % SLOT_MINUTES == 0
        ):
            raise ConfigError(
                f"{source}: {kind}[{n}] is not a window of the day on {SLOT_MINUTES}-minute boundaries "
                f"({w.start_minute} -> {w.end_minute} min); fix its from/to"
            )
        for slot in w.slots():
            other = owner[slot]
            if other is not None:
                raise ConfigError(
                    f"{source}: {kind}[{n}] overlaps {kind}[{other}] at {_fmt(slot * SLOT_MINUTES)} "
                    f"UTC; make the {kind} windows disjoint"
                )
            owner[slot] = n
            table[slot] = w.price
    return tuple(table)


@dataclass(frozen=True)
class Check:
    """A rule checked on a schedule: every ``every_s`` seconds, when the battery holds less
    than ``below_wh``, buy until it holds ``until_wh``, paying at most ``max_price``."""

    every_s: int
    below_wh: int
    until_wh: int
    max_price: UnitsPerKWh


COMMAND_KINDS: Final = ("curtail_export", "limit_import", "disconnect")
"""DSO command kinds by name, in the order of their codes (grid.commands.CommandKind)."""


@dataclass(frozen=True)
class Policy:
    """One participant's private policy. Build it with :func:`load_policy` (or directly)."""

    buy: tuple[PriceWindow, ...] = ()
    """Price caps by time of day."""
    sell: tuple[PriceWindow, ...] = ()
    """Price floors by time of day."""
    buy_below_soc: float | None = None
    """Battery state of charge below which the participant wants to buy [%]."""
    sell_above_soc: float | None = None
    """Battery state of charge above which the participant wants to sell [%]."""
    trusted: Mapping[str, frozenset[Address]] = field(default_factory=dict)
    """Trusted authority addresses per purpose (see TRUST_PURPOSES)."""
    manufacturers: frozenset[Address] | None = None
    """Trusted manufacturer addresses; None = any manufacturer registered on chain."""
    checks: tuple[Check, ...] = ()
    """Rules checked on a schedule (``[[check]]``)."""
    nominal_v: float | None = None
    """The battery's nominal voltage [V]: energy may then be written in Ah."""
    override_commands: frozenset[int] = frozenset()
    """DSO command kinds its owner overrides even from a DSO it trusts for commands."""
    source: str = "policy"
    """Where the policy came from (for error messages)."""
    _buy_table: tuple[int | None, ...] = field(init=False, repr=False, compare=False)
    _sell_table: tuple[int | None, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.trusted) - set(TRUST_PURPOSES))
        if unknown:
            raise ConfigError(
                f"{self.source}: trust.{unknown[0]} is not a purpose; use one of "
                f"{', '.join(TRUST_PURPOSES)} or manufacturers"
            )
        if (
            self.buy_below_soc is not None
            and self.sell_above_soc is not None
            and self.buy_below_soc > self.sell_above_soc
        ):
            raise ConfigError(
                f"{self.source}: battery.buy_below ({self.buy_below_soc}) is above battery.sell_above "
                f"({self.sell_above_soc}); make buy_below <= sell_above"
            )
        object.__setattr__(self, "trusted", MappingProxyType(dict(self.trusted)))
        object.__setattr__(self, "_buy_table", _slot_table(self.buy, "buy", self.source))
        object.__setattr__(self, "_sell_table", _slot_table(self.sell, "sell", self.source))

    def max_buy_price(self, interval: Interval) -> UnitsPerKWh | None:
        """The most this participant pays in ``interval`` [base units / kWh]; None = no buying."""
        return self._buy_table[interval % SLOTS_PER_DAY]

    def min_sell_price(self, interval: Interval) -> UnitsPerKWh | None:
        """The least this participant sells for in ``interval`` [base units / kWh]; None =
        no selling."""
        return self._sell_table[interval % SLOTS_PER_DAY]

    def wants_to_buy(self, soc: float) -> bool:
        """True when the battery's state of charge ``soc`` [%] is below the buy threshold."""
        return self.buy_below_soc is not None and soc < self.buy_below_soc

    def wants_to_sell(self, soc: float) -> bool:
        """True when the battery's state of charge ``soc`` [%] is above the sell threshold."""
        return self.sell_above_soc is not None and soc > self.sell_above_soc

    def follows(self, kind: int, issuer: Address) -> bool:
        """Does its device follow a DSO command of ``kind`` signed by ``issuer``? Only from a
        DSO trusted for commands, and not of a kind its owner overrides."""
        return self.trusts("dso", issuer) and kind not in self.override_commands

    def trusts(self, purpose: str, authority: Address) -> bool:
        """True when ``authority`` is trusted for ``purpose`` (one of TRUST_PURPOSES)."""
        return authority in self.trusted.get(purpose, frozenset())

    def is_trusted_manufacturer(self, manufacturer: bytes) -> bool:
        """True when meters certified by ``manufacturer`` (address or public key) are accepted."""
        if self.manufacturers is None:
            return True
        if len(manufacturer) == PUBLIC_KEY_BYTES:
            manufacturer = address_from_public_key(manufacturer)
        return manufacturer in self.manufacturers

    def is_offer_eligible(self, offer: Order, standing: MeterStanding) -> bool:
        """Does this buyer consider ``offer``, whose selling meter has ``standing``?"""
        if offer.side != Side.OFFER:
            return False
        # A manufacturer's revocation is objective: nobody trades with that meter.
        if standing.revoked:
            return False
        if not self.is_trusted_manufacturer(standing.manufacturer):
            return False
        # A flag counts only when this participant trusts its author for the purpose.
        if standing.flagged_by & self.trusted.get("meters", frozenset()):
            return False
        return not standing.owner_flagged_by & self.trusted.get("identities", frozenset())

    def offer_filter(self, standings: Mapping[Address, MeterStanding]) -> Callable[[Order], bool]:
        """An eligibility predicate for the matcher: an offer whose meter has no standing
        (not registered on chain) is never eligible."""

        def eligible(offer: Order) -> bool:
            standing = standings.get(offer.meter)
            return standing is not None and self.is_offer_eligible(offer, standing)

        return eligible


# --- loading ------------------------------------------------------------------------------


def _time_of_day(value: Any, where: str) -> int:
    """'HH:MM' -> minutes after midnight, on an interval boundary; 24:00 allowed."""
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise ConfigError(f'{where}: expected a time like "07:00" (HH:MM, UTC), got {shown(value)}')
    hh, mm = value[:2], value[3:]
    if not (is_decimal(hh) and is_decimal(mm)):
        raise ConfigError(f'{where}: expected a time like "07:00" (HH:MM, UTC), got {shown(value)}')
    minute = int(hh) * 60 + int(mm)
    if int(mm) >= 60 or minute > MINUTES_PER_DAY:
        raise ConfigError(f"{where}: {shown(value)} is not a time of day between 00:00 and 24:00")
    if minute % SLOT_MINUTES:
        raise ConfigError(f"{where}: {shown(value)} is not on a {SLOT_MINUTES}-minute interval boundary")
    return minute


GNC_ONLY: Final[Mapping[str, Decimal]] = MappingProxyType({"GNC": Decimal(1)})
"""Currencies a policy may write prices in, by name -> GNC per unit (GNC alone by default)."""


def _price(value: Any, where: str, currencies: Mapping[str, Decimal] = GNC_ONLY) -> int:
    """A price as base units per kWh: a whole number of them, or a string "N CUR/kWh" or
    "N CUR/MWh" in one of ``currencies`` (converted at its rate, rounded to a base unit)."""
    given = value
    if isinstance(value, str) and len(value.split()) == 2 and "/" in value.split()[1]:
        number, unit = value.split()
        name, per = unit.split("/", 1)
        try:
            amount = Decimal(number)
        except InvalidOperation:
            amount = Decimal(-1)
        if not amount.is_finite() or amount > MAX_PRICE:  # (inf, nan, and beyond any price in any unit)
            amount = Decimal(-1)
        rate = currencies.get(name.upper())
        if rate is not None and per.lower() in ("kwh", "mwh") and amount >= 0:
            scale = 1 if per.lower() == "kwh" else 1000
            value = int((amount * rate * UNITS_PER_GNC / scale).to_integral_value())
        else:
            value = -1
            known = ", ".join(sorted(currencies))
            where = f"{where} (currencies: {known}; per kWh or MWh)"
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRICE:
        raise ConfigError(
            f"{where}: expected a whole number of base units per kWh (0 to {MAX_PRICE:,}) or a price like "
            f'"0.06 GNC/kWh", got {shown(given)}'
        )
    return value


def parse_price(value: Any, where: str, currencies: Mapping[str, Decimal] = GNC_ONLY) -> UnitsPerKWh:
    """A price from a file or a command line: whole base units per kWh, or "N CUR/kWh" or
    "N CUR/MWh" (a number on the command line is read as base units too)."""
    if isinstance(value, str) and is_decimal(value.strip()):
        value = int(value.strip())
    return _price(value, where, currencies)


def _percent(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ConfigError(f"{where}: expected a state of charge in percent (0 to 100), got {shown(value)}")
    return float(value)


def _table(value: Any, where: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table, got {shown(value)}")
    for key in value:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {shown(key)}; expected one of {', '.join(allowed)}")
    return value


def _windows(
    value: Any, kind: str, price_key: str, source: str, currencies: Mapping[str, Decimal]
) -> tuple[PriceWindow, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{source}: {kind} must be an array of tables ([[{kind}]])")
    out = []
    for n, item in enumerate(value):
        where = f"{source}: {kind}[{n}]"
        entry = _table(item, where, ("from", "to", price_key))
        for key in ("from", "to", price_key):
            if key not in entry:
                raise ConfigError(f"{where}: missing {key!r}")
        start = _time_of_day(entry["from"], f"{where}.from")
        end = _time_of_day(entry["to"], f"{where}.to")
        if start % MINUTES_PER_DAY == end:
            raise ConfigError(
                f'{where}: from and to are the same time; for the whole day use from = "00:00", to = "24:00"'
            )
        out.append(
            PriceWindow(
                start % MINUTES_PER_DAY, end, _price(entry[price_key], f"{where}.{price_key}", currencies)
            )
        )
    return tuple(out)


def _addresses(value: Any, where: str) -> frozenset[Address]:
    if not isinstance(value, list):
        raise ConfigError(f'{where}: expected a list of addresses ("gn...")')
    out = set()
    for n, text in enumerate(value):
        if not isinstance(text, str):
            raise ConfigError(f'{where}[{n}]: expected an address ("gn..."), got {text!r}')
        try:
            out.add(address_from_text(text))
        except InvalidAddress as exc:
            raise ConfigError(f"{where}[{n}]: {exc}") from None
    return frozenset(out)


_UNITS = {"wh": 1.0, "kwh": 1000.0}
MAX_ENERGY: Final = 1e12
"""The largest energy amount a policy takes, in its unit (finite: 'inf Wh' is refused)."""


def _energy(value: Any, where: str, nominal_v: float | None) -> int:
    """Energy as Wh: a number (Wh) or a string "N Wh", "N kWh" or "N Ah" (Ah needs the
    battery's nominal voltage)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        amount, unit = float(value), "wh"
    elif isinstance(value, str) and len(value.split()) == 2:
        number, unit = value.split()
        unit = unit.lower()
        try:
            amount = float(number)
        except ValueError:
            amount = -1.0
    else:
        amount, unit = -1.0, ""
    if not 0 <= amount <= MAX_ENERGY or unit not in (*_UNITS, "ah"):  # (nan and inf too)
        raise ConfigError(
            f'{where}: expected energy like 600, "600 Wh", "0.6 kWh" or "12.5 Ah", got {shown(value)}'
        )
    if unit == "ah":
        if nominal_v is None:
            raise ConfigError(
                f"{where}: {shown(value)} is in Ah: give the battery's nominal voltage ([battery] nominal_v)"
            )
        return round(amount * nominal_v)
    return round(amount * _UNITS[unit])


def _every(value: Any, where: str) -> int:
    """A period like "30s", "1m", "15m" or "1h" -> seconds (at least 1)."""
    scale = {"s": 1, "m": 60, "h": 3600}
    if isinstance(value, str) and is_decimal(value[:-1]) and value[-1:] in scale and int(value[:-1]) > 0:
        return int(value[:-1]) * scale[value[-1]]
    raise ConfigError(f'{where}: expected a period like "30s", "1m" or "1h", got {shown(value)}')


def _checks(
    value: Any, source: str, nominal_v: float | None, currencies: Mapping[str, Decimal]
) -> tuple[Check, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{source}: check must be an array of tables ([[check]])")
    out = []
    keys = ("every", "if_stored_below", "buy_until", "max_price")
    for n, item in enumerate(value):
        where = f"{source}: check[{n}]"
        entry = _table(item, where, keys)
        for key in keys:
            if key not in entry:
                raise ConfigError(f"{where}: missing {key!r}")
        below = _energy(entry["if_stored_below"], f"{where}.if_stored_below", nominal_v)
        until = _energy(entry["buy_until"], f"{where}.buy_until", nominal_v)
        if until < below:
            raise ConfigError(f"{where}: buy_until ({until} Wh) is below if_stored_below ({below} Wh)")
        out.append(
            Check(
                _every(entry["every"], f"{where}.every"),
                below,
                until,
                _price(entry["max_price"], f"{where}.max_price", currencies),
            )
        )
    return tuple(out)


def _overrides(value: Any, where: str) -> frozenset[int]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v in COMMAND_KINDS for v in value):
        raise ConfigError(
            f"{where}: expected a list of command kinds from {', '.join(COMMAND_KINDS)}, got {shown(value)}"
        )
    return frozenset(COMMAND_KINDS.index(v) for v in value)


def policy_from_dict(
    data: Mapping[str, Any], *, source: str = "policy", currencies: Mapping[str, Decimal] = GNC_ONLY
) -> Policy:
    """Build a policy from parsed TOML (e.g. a table inside a scenario file); prices may be
    written in any of ``currencies`` (name -> GNC per unit)."""
    _table(data, source, ("buy", "sell", "battery", "trust", "check", "commands"))
    buy = _windows(data.get("buy", []), "buy", "max_price", source, currencies)
    sell = _windows(data.get("sell", []), "sell", "min_price", source, currencies)
    battery = _table(data.get("battery", {}), f"{source}: battery", ("buy_below", "sell_above", "nominal_v"))
    nominal_v = battery.get("nominal_v")
    if nominal_v is not None and (
        isinstance(nominal_v, bool) or not isinstance(nominal_v, int | float) or not 0 < nominal_v <= 10_000
    ):
        raise ConfigError(
            f"{source}: battery.nominal_v: expected a voltage above 0 (at most 10 kV), got {nominal_v!r}"
        )
    checks = _checks(
        data.get("check", []), source, None if nominal_v is None else float(nominal_v), currencies
    )
    commands = _table(data.get("commands", {}), f"{source}: commands", ("override",))
    overrides = _overrides(commands.get("override", []), f"{source}: commands.override")
    buy_below = battery.get("buy_below")
    sell_above = battery.get("sell_above")
    trust = _table(data.get("trust", {}), f"{source}: trust", (*TRUST_PURPOSES, "manufacturers"))
    trusted = {
        purpose: _addresses(trust[purpose], f"{source}: trust.{purpose}")
        for purpose in TRUST_PURPOSES
        if purpose in trust
    }
    manufacturers = (
        _addresses(trust["manufacturers"], f"{source}: trust.manufacturers")
        if "manufacturers" in trust
        else None
    )
    return Policy(
        buy=buy,
        sell=sell,
        buy_below_soc=None if buy_below is None else _percent(buy_below, f"{source}: battery.buy_below"),
        sell_above_soc=None if sell_above is None else _percent(sell_above, f"{source}: battery.sell_above"),
        trusted=trusted,
        manufacturers=manufacturers,
        source=source,
        checks=checks,
        nominal_v=None if nominal_v is None else float(nominal_v),
        override_commands=overrides,
    )


def parse_policy(
    text: str, *, source: str = "policy", currencies: Mapping[str, Decimal] = GNC_ONLY
) -> Policy:
    """Parse a policy from TOML text; ``source`` names it in error messages."""
    return policy_from_dict(parse_toml(text, source), source=source, currencies=currencies)


def load_policy(path: Path, currencies: Mapping[str, Decimal] = GNC_ONLY) -> Policy:
    """Read and check a policy file (prices in GNC or any of ``currencies``); ConfigError
    names the file, the key and the fix."""
    return policy_from_dict(read_toml(path, "policy file"), source=str(path), currencies=currencies)
