"""Generation and distribution monitoring (seed 003, section 3.4): a generating station's
signed measurements and switch states on chain, each new measurement checked against the
stored history, and a false-data injection flagged.

A station (a generator G on an infinite bus with the load switch SL, the PSS's control switch
SC and the stabiliser PSS; ``world/smib.py``) is registered by the owner of its meters
(``RegisterStation``): the generator's meter and one meter per switch. ``SubmitMonitoring``
carries time-stamped records, each signed (``Domain.MONITORING``) by the meter that made it:
*switch states* (open or closed, and *failed* when the switch changed without a command: the
seed's violations) and *measurements* (frequency, terminal voltage, current, active power and
the current through SL). Records of one meter come in order (sequence and timestamp).

The switch states a station's switch meters report are the reference the generator's
measurements are checked against. A measurement is accepted and stored as the station's
history, and *flagged* (``fdi_flags``) when it contradicts the switch states or the physics:

* ``OUT_OF_RANGE``: frequency outside 45-55 Hz, voltage outside 0-2 pu, current above 5 pu;
* ``ROCOF``: the frequency moved faster than ``MAX_ROCOF_MHZ_PER_S`` since the last
  measurement (a machine's inertia bounds it);
* ``POWER_IDENTITY``: more active power than voltage × current allows (plus 5 %);
* ``SWITCH_CONTRADICTION``: current through SL while its meter reports it open, or none while
  it reports it closed;
* ``VOLTAGE_STEP``: the voltage jumped more than ``MAX_VOLTAGE_STEP`` with no switch change
  reported since the last measurement.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec
from msgspec.structs import replace

from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import registered_id
from gridnet.crypto.keys import Domain, PrivateKey, SignatureCheck, verify_signature
from gridnet.encoding import (
    U8,
    U32,
    U63,
    AddressBytes,
    HashBytes,
    PublicKeyBytes,
    SignatureBytes,
    Wire,
    encode,
)
from gridnet.errors import (
    MalformedTransaction,
    MeasurementOutOfOrder,
    MeterNotOwned,
    MonitoringSignatureInvalid,
    NotStationMeter,
    NotStationOwner,
    StationExists,
    UnknownMeter,
    UnknownStation,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import StateView, register_table
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.meter import METERS
from gridnet.units import Address, PublicKey

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
I63 = Annotated[int, msgspec.Meta(ge=-(2**63) + 1, le=2**63 - 1)]
MAX_RECORDS = 256
MAX_ROCOF_MHZ_PER_S = 5_000
"""5 Hz/s: a full-load step on a machine with H ≈ 1 s; a real machine's frequency moves slower."""
MAX_VOLTAGE_STEP = 300_000
"""0.3 pu [micro-pu] between two measurements with no switch change."""
MAX_AHEAD_MS = 15 * 60_000
"""A record may be stamped at most this long after the block that takes it (meters' clocks
and the block's differ; a record far in the future would block its meter's later ones)."""
SL, SC, PSS = 0, 1, 2
SWITCHES = ("SL", "SC", "PSS")


class Flag(enum.IntFlag):
    OUT_OF_RANGE = 1
    ROCOF = 2
    POWER_IDENTITY = 4
    SWITCH_CONTRADICTION = 8
    VOLTAGE_STEP = 16


class SwitchState(Wire, frozen=True, tag=1):
    station: AddressBytes
    switch: U8
    """0 SL (the load switch), 1 SC (the PSS's control switch), 2 PSS."""
    closed: bool
    failed: bool
    """It changed without a command (the seed's violation)."""
    seq: U63
    timestamp_ms: U63


class Measurement(Wire, frozen=True, tag=2):
    station: AddressBytes
    seq: U63
    timestamp_ms: U63
    frequency_mhz: U63
    voltage_upu: U63
    """Terminal voltage [micro-pu]."""
    current_upu: U63
    power_upu: I63
    load_current_upu: U63
    """Through SL [micro-pu]."""


class SignedRecord(Wire, frozen=True):
    record: SwitchState | Measurement
    key: PublicKeyBytes
    """The key of the meter that signed it (the chain checks it is that meter's)."""
    signature: SignatureBytes


class Station(Wire, frozen=True):
    name: Name
    owner: AddressBytes
    generator_meter: AddressBytes
    switch_meters: tuple[AddressBytes, AddressBytes, AddressBytes]
    """SL's, SC's and PSS's meters."""
    switches: U32 = 0b111
    """Bit i set: switch i is closed, as its meter last reported."""
    switch_seq: tuple[U63, U63, U63] = (0, 0, 0)
    switch_changed_ms: U63 = 0
    """When a switch last changed [ms]."""
    violations: U32 = 0
    """Failed-switch reports so far."""
    last: Measurement | None = None
    """The latest measurement: the history new ones are checked against."""
    measurements: U63 = 0
    flagged: U63 = 0


class FdiFlag(Wire, frozen=True):
    reasons: U32
    """``Flag`` bits."""
    timestamp_ms: U63


STATIONS = register_table("stations", b"m", Station)
FDI_FLAGS = register_table("fdi_flags", b"f", FdiFlag)
"""Station ‖ measurement seq (8 bytes) -> why the chain flagged it."""


def station_id(registrant: PublicKey, name: str) -> bytes:
    """The id of the station ``name`` registered by the key ``registrant`` (the sender of its
    ``RegisterStation``, its owner): each registrant names its own, so nobody takes a name from
    another."""
    return registered_id(b"station/", registrant, name)[:20]


def flag_key(station: bytes, seq: int) -> bytes:
    return station + seq.to_bytes(8, "big")


def record_message(chain_id: bytes, record: SwitchState | Measurement) -> bytes:
    return chain_id + encode(record)


def sign_record(meter: PrivateKey, chain_id: bytes, record: SwitchState | Measurement) -> SignedRecord:
    """``record`` signed by its meter for the chain ``chain_id`` (never valid on another)."""
    return SignedRecord(
        record, meter.public_key, meter.sign(Domain.MONITORING, record_message(chain_id, record))
    )


class RegisterStation(Wire, frozen=True, tag=47):
    name: Name
    generator_meter: AddressBytes
    switch_meters: tuple[AddressBytes, AddressBytes, AddressBytes]


class SubmitMonitoring(Wire, frozen=True, tag=48):
    chain: HashBytes
    """The chain id the records are signed for (each signature covers it: no replay elsewhere)."""
    records: tuple[SignedRecord, ...]


# --- the checks -------------------------------------------------------------------------------


def check(station: Station, m: Measurement) -> Flag:
    """Why ``m`` is a false-data injection given the station's switch states and history (0:
    it is not)."""
    flags = Flag(0)
    if not 45_000 <= m.frequency_mhz <= 55_000 or m.voltage_upu > 2_000_000 or m.current_upu > 5_000_000:
        flags |= Flag.OUT_OF_RANGE
    if abs(m.power_upu) * 100 > m.voltage_upu * m.current_upu // 1_000_000 * 105 + 1_000_000:
        flags |= Flag.POWER_IDENTITY
    sl_closed = bool(station.switches & (1 << SL))
    if (sl_closed and m.load_current_upu == 0) or (not sl_closed and m.load_current_upu > 10_000):
        flags |= Flag.SWITCH_CONTRADICTION
    last = station.last
    if last is not None:
        dt_ms = m.timestamp_ms - last.timestamp_ms
        if abs(m.frequency_mhz - last.frequency_mhz) * 1000 > MAX_ROCOF_MHZ_PER_S * dt_ms:
            flags |= Flag.ROCOF
        steady = station.switch_changed_ms <= last.timestamp_ms
        if steady and abs(m.voltage_upu - last.voltage_upu) > MAX_VOLTAGE_STEP:
            flags |= Flag.VOLTAGE_STEP
    return flags


# --- rules ------------------------------------------------------------------------------------


def validate_register(payload: RegisterStation, params: ChainParams) -> None:
    meters = (payload.generator_meter, *payload.switch_meters)
    if len(set(meters)) != 4:
        raise MalformedTransaction("a station's four meters are distinct")


def apply_register(state: StateView, env: BlockEnv, sender: Address, payload: RegisterStation) -> None:
    sid = station_id(env.sender_key, payload.name)
    if state.get(STATIONS, sid) is not None:
        raise StationExists(
            f"{address_to_text(sender)} has registered a station named {payload.name!r} already"
        )
    for meter in (payload.generator_meter, *payload.switch_meters):
        record = state.get(METERS, meter)
        if record is None or record.revoked:
            raise UnknownMeter(f"meter {address_to_text(meter)} is not registered (or revoked)")
        if record.owner != sender:
            raise MeterNotOwned(f"meter {address_to_text(meter)} belongs to another owner")
    state.put(STATIONS, sid, Station(payload.name, sender, payload.generator_meter, payload.switch_meters))


def validate_submit(payload: SubmitMonitoring, params: ChainParams) -> None:
    """The signatures are checked here, once (against the keys the records name; which meter
    each key must be is checked against the state)."""
    if not 1 <= len(payload.records) <= MAX_RECORDS:
        raise MalformedTransaction(f"1 to {MAX_RECORDS} records")
    for check in carried_checks(payload, payload.chain):
        if not verify_signature(*check):
            raise MonitoringSignatureInvalid("a record's signature does not verify with the key it names")


def carried_checks(payload: SubmitMonitoring, _chain_id: bytes) -> list[SignatureCheck]:
    """Each record's signature check (``TxRules.carried``, and ``validate_submit``'s)."""
    return [
        (Domain.MONITORING, signed.key, record_message(payload.chain, signed.record), signed.signature)
        for signed in payload.records
    ]


def _signed_by(state: StateView, meter: bytes, signed: SignedRecord) -> None:
    """The record's (verified) signature is by ``meter``'s key."""
    record = state.get(METERS, meter)
    if record is None or record.revoked or record.meter_key != signed.key:
        raise MonitoringSignatureInvalid(
            f"a record is not signed by meter {address_to_text(meter)} (or it is revoked)"
        )


def apply_submit(state: StateView, env: BlockEnv, sender: Address, payload: SubmitMonitoring) -> None:
    if payload.chain != env.chain_id:
        raise MonitoringSignatureInvalid("the records are signed for another chain")
    for signed in payload.records:
        r = signed.record
        station = state.get(STATIONS, r.station)
        if station is None:
            raise UnknownStation(f"no station {address_to_text(r.station)}")
        if sender != station.owner:
            raise NotStationOwner("only the station's owner submits its records")
        if isinstance(r, SwitchState):
            if r.switch > PSS:
                raise NotStationMeter(f"switch {r.switch} is none of SL, SC, PSS")
            _signed_by(state, station.switch_meters[r.switch], signed)
            if r.seq != station.switch_seq[r.switch] + 1 or r.timestamp_ms > env.timestamp + MAX_AHEAD_MS:
                raise MeasurementOutOfOrder(f"{SWITCHES[r.switch]}'s report {r.seq} is not the next")
            bit = 1 << r.switch
            switches = station.switches | bit if r.closed else station.switches & ~bit
            seqs = list(station.switch_seq)
            seqs[r.switch] = r.seq
            station = replace(
                station,
                switches=switches,
                switch_seq=(seqs[0], seqs[1], seqs[2]),
                switch_changed_ms=r.timestamp_ms
                if switches != station.switches
                else station.switch_changed_ms,
                violations=station.violations + r.failed,
            )
        else:
            _signed_by(state, station.generator_meter, signed)
            last = station.last
            expected = 1 if last is None else last.seq + 1
            late = last is not None and r.timestamp_ms <= last.timestamp_ms
            if r.seq != expected or late or r.timestamp_ms > env.timestamp + MAX_AHEAD_MS:
                raise MeasurementOutOfOrder(f"measurement {r.seq} is not the station's next ({expected})")
            flags = check(station, r)
            if flags:
                state.put(FDI_FLAGS, flag_key(r.station, r.seq), FdiFlag(int(flags), r.timestamp_ms))
            station = replace(
                station, last=r, measurements=station.measurements + 1, flagged=station.flagged + bool(flags)
            )
        state.put(STATIONS, r.station, station)


REGISTER_STATION_RULES = TxRules(RegisterStation, validate_register, apply_register)
SUBMIT_MONITORING_RULES = TxRules(
    SubmitMonitoring,
    validate_submit,
    apply_submit,
    carried=lambda p, chain_id, _sender: carried_checks(p, chain_id),
)
