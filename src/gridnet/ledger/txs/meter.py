"""Meters on chain: registration by their owner, revocation by their manufacturer, and
batches of signed readings.

RegisterMeter: the sender (the owner, a registered identity) registers a meter with
the certificate its manufacturer signed; the manufacturer must be a registered
authority. The owner never holds the meter key: the chain stores the meter's public
key and checks every reading against it. The meter's key binds the registration to its
owner on this chain (``meter/binding.py``): the certificate and the status name neither, so
without it anyone could copy a pending registration, have it mined first and own the meter
on chain (and be paid for its energy), or replay it on another chain (``MeterBindingInvalid``).

The meter signs its status (vendor, model, firmware and the installed release's image hash)
after every update (ReportMeterStatus, anyone may submit it), and a registration carries the
status it signs when registered: the chain records the firmware it runs, which the advisories
judge (``txs/advisory.py``). A status names the firmware its certificate shipped with
(registration only) or a release its own manufacturer published (``txs/firmware.py``). Its
sequence number is the device's own (``meter/status.py``): a registration records whatever
number the meter is at (an updated meter registers above 0), and a report needs a higher number
than the chain holds, so a status the meter signed before an update, seen on any chain, is
``StaleMeterStatus`` (registered at 0 after updating, a meter's older statuses rolled the chain's
view of it back to a vulnerable firmware).

RevokeMeter: the manufacturer that certified a meter revokes it. This is objective:
consensus refuses every later reading of that meter.

SubmitReadings: anyone (typically a collector) submits a batch; every reading in it
must pass every rule, or the whole transaction is invalid. A reading already recorded, the
same signed bytes, is passed over when the batch records another (anyone may copy a reading
out of a pending batch and have it mined first: that sank the whole batch), and a reading
that leaves an interval without a reading after the meter's last waits ``GAP_GRACE_INTERVALS``
after that interval ends (one copied out of a batch and mined first had made the earlier
readings of the batch out of order, so they were lost for good).
"""

from __future__ import annotations

from msgspec.structs import replace

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.crypto.hashing import hash32
from gridnet.crypto.keys import Domain, PrivateKey, SignatureCheck, verify_many
from gridnet.encoding import (
    U63,
    AddressBytes,
    Area,
    HashBytes,
    PublicKeyBytes,
    SignatureBytes,
    Wire,
    encode,
)
from gridnet.errors import (
    ConflictingReading,
    DuplicateReading,
    InvalidCertificate,
    MalformedTransaction,
    MeterAlreadyRegistered,
    MeterBindingInvalid,
    MeterStatusMismatch,
    MeterStatusSignatureInvalid,
    NotAuthorized,
    ReadingGapEarly,
    ReadingOutOfOrder,
    ReadingSignatureInvalid,
    RevokedMeter,
    StaleMeterStatus,
    UnknownMeter,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import StateView, register_table
from gridnet.ledger.txs.authority import AUTHORITIES
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.firmware import check_release
from gridnet.ledger.txs.identity import require_identity
from gridnet.meter.binding import binding_check, is_bound_to, sign_binding
from gridnet.meter.certificate import Label, SignedCertificate, is_valid_certificate, meter_id
from gridnet.meter.reading import Reading, SignedReading, check_follows, is_signed_by
from gridnet.meter.status import (
    FACTORY_IMAGE,
    MeterStatus,
    SignedMeterStatus,
    is_status_signed_by,
    sign_status,
)
from gridnet.security.roles import Role
from gridnet.units import Address, Hash32, Interval, interval_start

MAX_READINGS_PER_TX = 1024

GAP_GRACE_INTERVALS = 4
"""A reading that leaves an interval of its meter without a reading (after the meter's last
recorded one) is taken only once that interval has been over for this many intervals: the
reading of it, made as it ended, has an hour to come first. Readings are recorded in order, so
one taken across the gap makes the missing reading late for good (``ReadingOutOfOrder``)."""


class MeterRecord(Wire, frozen=True):
    meter_key: PublicKeyBytes
    owner: AddressBytes
    manufacturer: AddressBytes
    """Address of the manufacturer authority that certified the meter."""
    vendor: Label
    model: Label
    firmware: Label
    """Firmware version its latest status reports (its certificate's at registration)."""
    serial: Label
    area: Area
    registered_at: U63
    revoked: bool = False
    last_interval: U63 = 0
    """Interval of the latest recorded reading (meaningful when ``has_reading``)."""
    last_total_exported_wh: U63 = 0
    last_total_imported_wh: U63 = 0
    has_reading: bool = False
    status_seq: U63 = 0
    """Sequence number of its latest status."""
    image: HashBytes = FACTORY_IMAGE
    """Image hash of the release its latest status reports (zero: the shipped firmware)."""


class ReadingRecord(Wire, frozen=True):
    """One recorded reading: what settlement and subsidies are checked against."""

    exported_wh: U63
    imported_wh: U63
    digest: HashBytes
    """Digest of the signed reading (tells a duplicate from a conflicting one)."""
    sold_wh: U63 = 0
    """Exported Wh of this interval already paid for: to the seller by energy contracts and
    aggregators, or minted as Helios credits (which take all that is left)."""
    subsidised: bool = False


METERS = register_table("meters", b"M", MeterRecord)
READINGS = register_table("readings", b"R", ReadingRecord)


def reading_key(meter: Address, interval: Interval) -> bytes:
    return meter + interval.to_bytes(8, "big")


class RegisterMeter(Wire, frozen=True, tag=7):
    certificate: SignedCertificate
    area: Area
    """Grid area the meter is connected in (market topics and DSO commands use it)."""
    status: SignedMeterStatus
    """The meter's own signed status at registration (what firmware it runs now, at the
    device's current status number)."""
    binding: SignatureBytes
    """The meter's signature (``Domain.METER_BINDING``) of ``MeterBinding(meter, sender)``
    after this chain's id: it registers to this sender on this chain only."""


class RevokeMeter(Wire, frozen=True, tag=8):
    meter: AddressBytes


class SubmitReadings(Wire, frozen=True, tag=9):
    readings: tuple[SignedReading, ...]


class ReportMeterStatus(Wire, frozen=True, tag=23):
    status: SignedMeterStatus


def factory_status(meter_key: PrivateKey, certificate: SignedCertificate) -> SignedMeterStatus:
    """The status a meter signs before it installs any release: its certificate's firmware, at
    status number 0."""
    cert = certificate.certificate
    status = MeterStatus(meter_id(cert.meter_key), 0, cert.vendor, cert.model, cert.firmware, FACTORY_IMAGE)
    return sign_status(meter_key, status)


def registration(
    meter_key: PrivateKey,
    certificate: SignedCertificate,
    area: str,
    owner: Address,
    chain_id: Hash32,
    status: SignedMeterStatus | None = None,
) -> RegisterMeter:
    """The RegisterMeter payload ``owner`` sends on chain ``chain_id`` for a meter holding
    ``meter_key``: with ``status``, the status the meter signs now (the device's current
    status number and firmware; ``factory_status`` for a meter that never installed a
    release, the default), and the meter's binding of the registration to ``owner`` on that
    chain (only ``owner`` can send it, there)."""
    return RegisterMeter(
        certificate,
        area,
        factory_status(meter_key, certificate) if status is None else status,
        sign_binding(meter_key, chain_id, owner),
    )


def validate_register_meter(payload: RegisterMeter, params: ChainParams) -> None:
    if not is_valid_certificate(payload.certificate):
        raise InvalidCertificate("the certificate is not signed by the manufacturer it names")
    cert, status = payload.certificate.certificate, payload.status.status
    if (status.meter, status.vendor, status.model) != (meter_id(cert.meter_key), cert.vendor, cert.model):
        raise MeterStatusMismatch(
            "the registration status must name the certified meter, its vendor and model"
        )
    if not is_status_signed_by(payload.status, cert.meter_key):
        raise MeterStatusSignatureInvalid(
            "the registration status is not signed by the certified meter's key"
        )


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
    if not is_bound_to(cert.meter_key, env.chain_id, sender, payload.binding):
        raise MeterBindingInvalid(
            f"meter {address_to_text(mid)} did not bind its registration to "
            f"{address_to_text(sender)} on this chain: the meter's key signs its owner and chain "
            "('gridnet meter bind'); a registration copied from another sender or chain is refused"
        )
    if state.get(METERS, mid) is not None:
        raise MeterAlreadyRegistered(f"meter {address_to_text(mid)} is already registered")
    status = payload.status.status
    check_release(state, manufacturer, status, shipped=cert.firmware)
    record = MeterRecord(
        meter_key=cert.meter_key,
        owner=sender,
        manufacturer=manufacturer,
        vendor=cert.vendor,
        model=cert.model,
        firmware=status.firmware,
        serial=cert.serial,
        area=payload.area,
        registered_at=env.height,
        status_seq=status.seq,
        image=status.image,
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


def validate_report_meter_status(payload: ReportMeterStatus, params: ChainParams) -> None:
    """The signature is checked against the registered key, in ``apply``."""


def apply_report_meter_status(
    state: StateView, env: BlockEnv, sender: Address, payload: ReportMeterStatus
) -> None:
    status = payload.status.status
    record = state.get(METERS, status.meter)
    if record is None:
        raise UnknownMeter(f"status of unregistered meter {address_to_text(status.meter)}")
    if record.revoked:
        raise RevokedMeter(f"meter {address_to_text(status.meter)} was revoked by its manufacturer")
    if (status.vendor, status.model) != (record.vendor, record.model):
        raise MeterStatusMismatch(
            f"the status says {status.vendor} {status.model}; the meter is a {record.vendor} {record.model}"
        )
    if not is_status_signed_by(payload.status, record.meter_key):
        raise MeterStatusSignatureInvalid(
            f"the status is not signed by meter {address_to_text(status.meter)}"
        )
    if status.seq <= record.status_seq:
        raise StaleMeterStatus(
            f"status {status.seq} of meter {address_to_text(status.meter)} does not follow "
            f"status {record.status_seq}"
        )
    check_release(state, record.manufacturer, status, shipped=None)
    state.put(
        METERS,
        status.meter,
        replace(record, firmware=status.firmware, image=status.image, status_seq=status.seq),
    )


def validate_submit_readings(payload: SubmitReadings, params: ChainParams) -> None:
    if not 1 <= len(payload.readings) <= MAX_READINGS_PER_TX:
        raise MalformedTransaction(f"a batch holds 1 to {MAX_READINGS_PER_TX} readings")


def apply_submit_readings(state: StateView, env: BlockEnv, sender: Address, payload: SubmitReadings) -> None:
    # The batch's signatures are checked together, on all cores (the readings cannot change
    # a meter's key), then each reading in order.
    records = [state.get(METERS, s.reading.meter) for s in payload.readings]
    signatures = verify_many(
        [
            (Domain.READING, record.meter_key if record else b"", encode(s.reading), s.signature)
            for s, record in zip(payload.readings, records, strict=True)
        ]
    )
    recorded = [
        apply_reading(state, env, signed, ok) for signed, ok in zip(payload.readings, signatures, strict=True)
    ]
    if not any(recorded):
        r = payload.readings[0].reading
        raise DuplicateReading(
            f"every reading of the batch is already recorded (the first: meter "
            f"{address_to_text(r.meter)}, interval {r.interval})"
        )


def apply_reading(
    state: StateView, env: BlockEnv, signed: SignedReading, signature_ok: bool | None = None
) -> bool:
    """Check one signed reading against the chain and record it in the block of ``env``
    (``signature_ok``: the verdict on its signature by the meter's registered key, when it was
    checked already). False when the very same reading is recorded already: passed over."""
    r: Reading = signed.reading
    record = state.get(METERS, r.meter)
    if record is None:
        raise UnknownMeter(f"reading from unregistered meter {address_to_text(r.meter)}")
    if record.revoked:
        raise RevokedMeter(f"meter {address_to_text(r.meter)} was revoked by its manufacturer")
    if not (is_signed_by(signed, record.meter_key) if signature_ok is None else signature_ok):
        raise ReadingSignatureInvalid(
            f"reading for interval {r.interval} is not signed by meter {address_to_text(r.meter)}"
        )
    key = reading_key(r.meter, r.interval)
    digest = hash32(encode(signed))
    existing = state.get(READINGS, key)
    if existing is not None:
        if existing.digest == digest:
            return False
        raise ConflictingReading(
            f"meter {address_to_text(r.meter)} already reported interval {r.interval} differently"
        )
    if record.has_reading and r.interval < record.last_interval:
        raise ReadingOutOfOrder(
            f"reading for interval {r.interval} comes after interval {record.last_interval}"
        )
    missing = record.last_interval + 1  # (the first interval the reading would leave without one)
    # (the block's time is read only across a gap: a template of readings in order is re-stamped)
    taken_from = missing + 1 + GAP_GRACE_INTERVALS
    if record.has_reading and r.interval > missing and not env.time_reached(interval_start(taken_from)):
        raise ReadingGapEarly(
            f"reading for interval {r.interval} of meter {address_to_text(r.meter)} leaves interval "
            f"{missing} without a reading before interval {taken_from}, when "
            "that one's reading may still come"
        )
    # (before a meter's first reading its counters are at 0, as it left the factory: the
    # first reading's counters hold at least its own interval's energy)
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
    return True


def binding_checks(payload: RegisterMeter, chain_id: Hash32, sender: Address) -> list[SignatureCheck]:
    """The meter's binding of its registration to the sender on this chain (``TxRules.carried``;
    ``apply_register_meter``'s check)."""
    meter_key = payload.certificate.certificate.meter_key
    return [binding_check(meter_key, chain_id, sender, payload.binding)]


REGISTER_METER_RULES = TxRules(
    RegisterMeter, validate_register_meter, apply_register_meter, carried=binding_checks
)
REVOKE_METER_RULES = TxRules(RevokeMeter, validate_revoke_meter, apply_revoke_meter)
SUBMIT_READINGS_RULES = TxRules(SubmitReadings, validate_submit_readings, apply_submit_readings)
STATUS_RULES = TxRules(ReportMeterStatus, validate_report_meter_status, apply_report_meter_status)
