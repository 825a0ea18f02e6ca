"""Meters on chain: registration by their owner, revocation by their manufacturer, and
batches of signed readings.

RegisterMeter: the sender (the owner, a registered identity) registers a meter with
the certificate its manufacturer signed; the manufacturer must be a registered
authority. The owner never holds the meter key: the chain stores the meter's public
key and checks every reading against it.

RevokeMeter: the manufacturer that certified a meter revokes it. This is objective:
consensus refuses every later reading of that meter.

SubmitReadings: anyone (typically a collector) submits a batch; every reading in it
must pass every rule, or the whole transaction is invalid.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec.structs import replace

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.crypto.hashing import hash32
from gridnet.encoding import U63, AddressBytes, HashBytes, PublicKeyBytes, Wire, encode
from gridnet.errors import (
    ConflictingReading,
    DuplicateReading,
    InvalidCertificate,
    MalformedTransaction,
    MeterAlreadyRegistered,
    NotAuthorized,
    ReadingOutOfOrder,
    ReadingSignatureInvalid,
    RevokedMeter,
    UnknownMeter,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import StateView, register_table
from gridnet.ledger.txs.authority import AUTHORITIES
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.identity import require_identity
from gridnet.meter.certificate import Label, SignedCertificate, is_valid_certificate, meter_id
from gridnet.meter.reading import Reading, SignedReading, check_follows, is_signed_by
from gridnet.security.roles import Role
from gridnet.units import Address, Interval

MAX_READINGS_PER_TX = 1024
Area = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class MeterRecord(Wire, frozen=True):
    meter_key: PublicKeyBytes
    owner: AddressBytes
    manufacturer: AddressBytes
    """Address of the manufacturer authority that certified the meter."""
    vendor: Label
    model: Label
    firmware: Label
    serial: Label
    area: Area
    registered_at: U63
    revoked: bool = False
    last_interval: U63 = 0
    """Interval of the latest recorded reading (meaningful when ``has_reading``)."""
    last_total_exported_wh: U63 = 0
    last_total_imported_wh: U63 = 0
    has_reading: bool = False


class ReadingRecord(Wire, frozen=True):
    """One recorded reading: what settlement and subsidies are checked against."""

    exported_wh: U63
    imported_wh: U63
    digest: HashBytes
    """Digest of the signed reading (tells a duplicate from a conflicting one)."""
    sold_wh: U63 = 0
    """Exported Wh of this interval already paid to the seller by energy contracts."""
    subsidised: bool = False


METERS = register_table("meters", b"M", MeterRecord)
READINGS = register_table("readings", b"R", ReadingRecord)


def reading_key(meter: Address, interval: Interval) -> bytes:
    return meter + interval.to_bytes(8, "big")


class RegisterMeter(Wire, frozen=True, tag=7):
    certificate: SignedCertificate
    area: Area
    """Grid area the meter is connected in (market topics and DSO commands use it)."""


class RevokeMeter(Wire, frozen=True, tag=8):
    meter: AddressBytes


class SubmitReadings(Wire, frozen=True, tag=9):
    readings: tuple[SignedReading, ...]


def validate_register_meter(payload: RegisterMeter, params: ChainParams) -> None:
    if not is_valid_certificate(payload.certificate):
        raise InvalidCertificate("the certificate is not signed by the manufacturer it names")


def apply_register_meter(state: StateView, env: BlockEnv, sender: Address, payload: RegisterMeter) -> None:
    cert = payload.certificate.certificate
    mid = meter_id(cert.meter_key)
    manufacturer = address_from_public_key(cert.manufacturer)
    require_identity(state, sender, "registering a meter")
    authority = state.get(AUTHORITIES, manufacturer)
    if authority is None or not authority.roles & Role.MANUFACTURER:
        raise InvalidCertificate(
            f"certificate issuer {address_to_text(manufacturer)} is not a registered manufacturer"
        )
    if state.get(METERS, mid) is not None:
        raise MeterAlreadyRegistered(f"meter {address_to_text(mid)} is already registered")
    record = MeterRecord(
        meter_key=cert.meter_key,
        owner=sender,
        manufacturer=manufacturer,
        vendor=cert.vendor,
        model=cert.model,
        firmware=cert.firmware,
        serial=cert.serial,
        area=payload.area,
        registered_at=env.height,
    )
    state.put(METERS, mid, record)


def validate_revoke_meter(payload: RevokeMeter, params: ChainParams) -> None:
    """Nothing to check without state."""


def apply_revoke_meter(state: StateView, env: BlockEnv, sender: Address, payload: RevokeMeter) -> None:
    record = state.get(METERS, payload.meter)
    if record is None:
        raise UnknownMeter(f"meter {address_to_text(payload.meter)} is not registered")
    if record.manufacturer != sender:
        raise NotAuthorized("only the manufacturer that certified a meter can revoke it")
    state.put(METERS, payload.meter, replace(record, revoked=True))


def validate_submit_readings(payload: SubmitReadings, params: ChainParams) -> None:
    if not 1 <= len(payload.readings) <= MAX_READINGS_PER_TX:
        raise MalformedTransaction(f"a batch holds 1 to {MAX_READINGS_PER_TX} readings")


def apply_submit_readings(state: StateView, env: BlockEnv, sender: Address, payload: SubmitReadings) -> None:
    for signed in payload.readings:
        apply_reading(state, signed)


def apply_reading(state: StateView, signed: SignedReading) -> None:
    """Check one signed reading against the chain and record it."""
    r: Reading = signed.reading
    record = state.get(METERS, r.meter)
    if record is None:
        raise UnknownMeter(f"reading from unregistered meter {address_to_text(r.meter)}")
    if record.revoked:
        raise RevokedMeter(f"meter {address_to_text(r.meter)} was revoked by its manufacturer")
    if not is_signed_by(signed, record.meter_key):
        raise ReadingSignatureInvalid(
            f"reading for interval {r.interval} is not signed by meter {address_to_text(r.meter)}"
        )
    key = reading_key(r.meter, r.interval)
    digest = hash32(encode(signed))
    existing = state.get(READINGS, key)
    if existing is not None:
        if existing.digest == digest:
            raise DuplicateReading(f"reading for interval {r.interval} is already recorded")
        raise ConflictingReading(
            f"meter {address_to_text(r.meter)} already reported interval {r.interval} differently"
        )
    if record.has_reading:
        if r.interval < record.last_interval:
            raise ReadingOutOfOrder(
                f"reading for interval {r.interval} comes after interval {record.last_interval}"
            )
        previous = Reading(
            r.meter,
            record.last_interval,
            0,
            0,
            record.last_total_exported_wh,
            record.last_total_imported_wh,
            r.firmware,
        )
        check_follows(previous, r)
    state.put(READINGS, key, ReadingRecord(r.exported_wh, r.imported_wh, digest))
    state.put(
        METERS,
        r.meter,
        replace(
            record,
            has_reading=True,
            last_interval=r.interval,
            last_total_exported_wh=r.total_exported_wh,
            last_total_imported_wh=r.total_imported_wh,
        ),
    )


REGISTER_METER_RULES = TxRules(RegisterMeter, validate_register_meter, apply_register_meter)
REVOKE_METER_RULES = TxRules(RevokeMeter, validate_revoke_meter, apply_revoke_meter)
SUBMIT_READINGS_RULES = TxRules(SubmitReadings, validate_submit_readings, apply_submit_readings)
