"""Signed 15-minute meter readings and the rules a sequence of them must follow."""

from __future__ import annotations

from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import U63, AddressBytes, SignatureBytes, Wire, encode
from gridnet.errors import CountersWentBackwards, InconsistentCounters
from gridnet.meter.certificate import Label
from gridnet.units import PublicKey


class Reading(Wire, frozen=True):
    meter: AddressBytes
    """The meter's id (address of its key)."""
    interval: U63
    """15-minute interval index since the Unix epoch."""
    exported_wh: U63
    """Energy the site fed into the grid during the interval [Wh]."""
    imported_wh: U63
    """Energy the site drew from the grid during the interval [Wh]."""
    total_exported_wh: U63
    """Cumulative export counter at the end of the interval [Wh]."""
    total_imported_wh: U63
    """Cumulative import counter at the end of the interval [Wh]."""
    firmware: Label
    """Firmware version running when the reading was made."""


class SignedReading(Wire, frozen=True):
    reading: Reading
    signature: SignatureBytes
    """The meter's signature (READING domain) over the encoded reading."""


def sign_reading(meter_key: PrivateKey, reading: Reading) -> SignedReading:
    return SignedReading(reading, meter_key.sign(Domain.READING, encode(reading)))


def is_signed_by(signed: SignedReading, meter_key: PublicKey) -> bool:
    """True when ``meter_key`` signed exactly this reading (interval included)."""
    return verify_signature(Domain.READING, meter_key, encode(signed.reading), signed.signature)


def check_follows(previous: Reading, reading: Reading) -> None:
    """Counter rules between a meter's previous reading and a later one."""
    if (
        reading.total_exported_wh < previous.total_exported_wh
        or reading.total_imported_wh < previous.total_imported_wh
    ):
        raise CountersWentBackwards(
            f"meter counters went backwards at interval {reading.interval}: export "
            f"{previous.total_exported_wh} -> {reading.total_exported_wh} Wh, import "
            f"{previous.total_imported_wh} -> {reading.total_imported_wh} Wh"
        )
    if (
        reading.total_exported_wh - previous.total_exported_wh < reading.exported_wh
        or reading.total_imported_wh - previous.total_imported_wh < reading.imported_wh
    ):
        raise InconsistentCounters(
            f"interval {reading.interval}: the counters grew by less than the interval's energy"
        )
