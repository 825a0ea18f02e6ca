"""Named units and aliases used across GRIDNET.

Money and energy are integers everywhere they are hashed, signed or settled:
coin in base units (1 GNC = 10**8 units), energy in watt-hours, prices in base
units per kWh, time in milliseconds since the Unix epoch.
"""

from typing import Final

Units = int
"""Coin amount [base units]; 1 GNC = UNITS_PER_GNC units."""
Wh = int
"""Energy [Wh]."""
UnitsPerKWh = int
"""Price [base units / kWh]."""
Millis = int
"""Time [ms since the Unix epoch] or a duration [ms]."""
Height = int
"""Block height (genesis = 0)."""
Interval = int
"""15-minute metering interval: index since the Unix epoch (interval 0 = 1970-01-01 00:00 UTC)."""

Address = bytes
"""20-byte account address: hash of an Ed25519 public key."""
PublicKey = bytes
"""32-byte Ed25519 public key."""
Signature = bytes
"""64-byte Ed25519 signature."""
Hash32 = bytes
"""32-byte BLAKE2b digest."""

UNITS_PER_GNC: Final = 10**8
INTERVAL_MS: Final = 15 * 60 * 1000
WH_PER_KWH: Final = 1000
ADDRESS_BYTES: Final = 20
PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
HASH_BYTES: Final = 32


def is_decimal(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits, a whole number ``int`` reads (``str.isdigit``
    also takes "²", which ``int`` refuses: a ValueError where a clear refusal was meant)."""
    return text.isascii() and text.isdigit()


def format_gnc(amount: Units) -> str:
    """Render base units as a GNC string with 8 decimals, e.g. ``12.50000000 GNC``."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), UNITS_PER_GNC)
    return f"{sign}{whole}.{frac:08d} GNC"


def interval_of(ms: Millis) -> Interval:
    """The metering interval a time falls in."""
    return ms // INTERVAL_MS


def interval_start(interval: Interval) -> Millis:
    return interval * INTERVAL_MS


def energy_cost(wh: Wh, price: UnitsPerKWh) -> Units:
    """What ``wh`` cost at ``price`` per kWh [base units], rounded down: payments computed
    this way never create coin (the payer is never charged more than the exact value)."""
    return wh * price // WH_PER_KWH
