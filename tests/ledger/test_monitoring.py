"""Generation monitoring (``ledger/txs/monitoring.py``): a station's meters sign measurements
and switch states; the chain checks each measurement against the switch states and the stored
history and flags a false-data injection, while a real switching transient raises no flag.
Each rule broken, its rejection named."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import MalformedTransaction, MonitoringSignatureInvalid
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.meter import registration
from gridnet.ledger.txs.monitoring import (
    FDI_FLAGS,
    SC,
    SL,
    STATIONS,
    Flag,
    Measurement,
    RegisterStation,
    SubmitMonitoring,
    SwitchState,
    flag_key,
    sign_record,
    station_id,
)
from gridnet.world.smib import Machine
from tests.helpers import ahead_checks_answered, sign
from tests.ledger.test_helios import (
    BUYER,
    BUYER_METER_KEY,
    METER_KEY,
    OWNER,
    START,
    Helios,
    at,
    cert,
    two_meters,
)

SWITCH_KEYS = [PrivateKey.from_label(f"switch-meter-{n}") for n in range(3)]
GEN = METER_KEY
STATION = station_id(OWNER.public_key, "Plant")


@pytest.fixture
def h(tmp_path: Path) -> Helios:
    w = two_meters(tmp_path)
    w.mine(
        *(
            w.tx(OWNER, registration(k, cert(k), "island", OWNER.address, w.chain.chain_id))
            for k in SWITCH_KEYS
        )
    )  # type: ignore[arg-type]
    w.mine(w.tx(OWNER, RegisterStation("Plant", GEN.address, tuple(k.address for k in SWITCH_KEYS))))  # type: ignore[arg-type]
    return w


class Station:
    """The station's meters: each record signed by the meter that makes it, numbered in order."""

    def __init__(self, h: Helios) -> None:
        self.chain_id = h.chain.chain_id
        self.seq = 0
        self.switch_seq = [0, 0, 0]
        self.t = at(START)

    def measure(self, m: Machine, **false: int) -> object:
        s = m.measure()
        self.seq += 1
        self.t += 1_000
        fields = {
            "frequency_mhz": round(s.frequency_hz * 1000), "voltage_upu": round(s.voltage_pu * 1e6),
            "current_upu": round(s.current_pu * 1e6), "power_upu": round(s.power_pu * 1e6),
            "load_current_upu": round(s.load_current_pu * 1e6),
        }  # fmt: skip
        fields.update(false)
        return sign_record(GEN, self.chain_id, Measurement(STATION, self.seq, self.t, **fields))

    def switch(self, n: int, closed: bool, failed: bool = False) -> object:
        self.switch_seq[n] += 1
        self.t += 1
        record = SwitchState(STATION, n, closed, failed, self.switch_seq[n], self.t)
        return sign_record(SWITCH_KEYS[n], self.chain_id, record)


def submit(h: Helios, *records: object) -> None:
    h.mine(h.tx(OWNER, batch(h, *records)), interval=START + 1)


def batch(h: Helios, *records: object) -> SubmitMonitoring:
    return SubmitMonitoring(h.chain.chain_id, tuple(records))  # type: ignore[arg-type]


def flags(h: Helios) -> dict[int, int]:
    view = h.chain.view()
    station = view.get(STATIONS, STATION)
    assert station is not None
    return {
        seq: f.reasons
        for seq in range(1, station.measurements + 1)
        if (f := view.get(FDI_FLAGS, flag_key(STATION, seq))) is not None
    }


def test_a_station_is_registered_by_the_owner_of_its_meters(h: Helios) -> None:
    again = RegisterStation("Plant", GEN.address, tuple(k.address for k in SWITCH_KEYS))  # type: ignore[arg-type]
    assert h.refused(OWNER, again) == "StationExists"
    other = RegisterStation("Other", GEN.address, tuple(k.address for k in SWITCH_KEYS))  # type: ignore[arg-type]
    assert h.refused(BUYER, other) == "MeterNotOwned"
    stranger = PrivateKey.from_label("unregistered-switch")
    bad = RegisterStation("Other", GEN.address, (stranger.address, *(k.address for k in SWITCH_KEYS[1:])))  # type: ignore[arg-type]
    assert h.refused(OWNER, bad) == "UnknownMeter"
    with pytest.raises(MalformedTransaction):
        twice = RegisterStation("X", GEN.address, (GEN.address, *(k.address for k in SWITCH_KEYS[1:])))  # type: ignore[arg-type]
        validate_transaction(sign(h.chain, OWNER, twice, 0), h.chain.params, h.chain.chain_id)


def test_a_registration_copied_by_another_owner_takes_neither_name_nor_station(h: Helios) -> None:
    """A station's id was the hash of its name alone: anyone with four meters of its own who
    saw a RegisterStation pending registered the name first, and the owner's was refused as
    StationExists. Each registrant's names are its own now: both stations are registered,
    the owner's records go to its own, and none of its meters' records to the other."""
    meters = [PrivateKey.from_label(f"copier-switch-meter-{n}") for n in range(3)]
    chain_id = h.chain.chain_id
    h.mine(*(h.tx(BUYER, registration(k, cert(k), "island", BUYER.address, chain_id)) for k in meters))  # type: ignore[arg-type]
    copy = RegisterStation("Plant", BUYER_METER_KEY.address, tuple(k.address for k in meters))  # type: ignore[arg-type]
    h.mine(h.tx(BUYER, copy))
    theirs = station_id(BUYER.public_key, "Plant")
    assert theirs != STATION and h.chain.view().get(STATIONS, theirs) is not None
    ours = Station(h).measure(Machine())
    submit(h, ours)
    view = h.chain.view()
    mine, other = view.get(STATIONS, STATION), view.get(STATIONS, theirs)
    assert mine is not None and other is not None and (mine.measurements, other.measurements) == (1, 0)
    aimed = sign_record(GEN, chain_id, msgspec.structs.replace(ours.record, station=theirs))  # type: ignore[attr-defined]
    assert h.refused(OWNER, batch(h, aimed)) == "NotStationOwner"
    assert h.refused(BUYER, copy) == "StationExists"  # (a registrant's name is taken once)


def test_a_real_load_rejection_with_the_pss_raises_no_flag(h: Helios) -> None:
    st, m = Station(h), Machine()
    records = [st.measure(m) for _ in range(5)]
    m.sl_closed = False  # the operator opens SL: its meter reports it, then the machine swings
    records.append(st.switch(SL, False))
    for _ in range(20):
        m.run(1)
        records.append(st.measure(m))
    submitted = h.tx(OWNER, batch(h, *records))
    with ahead_checks_answered(submitted, h.chain):  # each record's signature
        h.mine(submitted, interval=START + 1)
    station = h.chain.view().get(STATIONS, STATION)
    assert station is not None and station.measurements == 25 and station.flagged == 0
    assert station.switches == 0b110 and station.violations == 0
    assert flags(h) == {}


def test_false_data_hiding_a_tampered_switch_is_flagged(h: Helios) -> None:
    """The attacker opens SL and SC (their meters report them failed) and the compromised
    generator meter keeps reporting the normal values: they contradict the switch states."""
    st, m = Station(h), Machine()
    normal = m.measure()
    records = [st.measure(m) for _ in range(3)]
    records += [st.switch(SL, False, failed=True), st.switch(SC, False, failed=True)]
    load = round(normal.load_current_pu * 1e6)
    records += [st.measure(m, load_current_upu=load) for _ in range(3)]  # the false data
    submit(h, *records)
    assert flags(h) == {
        4: Flag.SWITCH_CONTRADICTION,
        5: Flag.SWITCH_CONTRADICTION,
        6: Flag.SWITCH_CONTRADICTION,
    }
    station = h.chain.view().get(STATIONS, STATION)
    assert station is not None and station.violations == 2 and station.flagged == 3


def test_values_beyond_the_physics_are_flagged(h: Helios) -> None:
    st, m = Station(h), Machine()
    base = st.measure(m)
    records = [
        base,
        st.measure(m, frequency_mhz=56_000),  # out of range and too fast
        st.measure(m),  # back: too fast again
        st.measure(m, voltage_upu=1_500_000),  # a jump with no switch change
        st.measure(m),
        st.measure(m, power_upu=5_000_000),  # more power than voltage x current
    ]
    submit(h, *records)
    got = flags(h)
    assert got[2] == Flag.OUT_OF_RANGE | Flag.ROCOF and got[3] == Flag.ROCOF
    assert got[4] == Flag.VOLTAGE_STEP and got[5] == Flag.VOLTAGE_STEP
    assert got[6] & Flag.POWER_IDENTITY and 1 not in got


def test_records_must_be_signed_by_their_meter_and_in_order(h: Helios) -> None:
    st, m = Station(h), Machine()
    first = st.measure(m)
    forged = sign_record(SWITCH_KEYS[0], h.chain.chain_id, first.record)  # type: ignore[attr-defined]
    assert (
        h.refused(OWNER, batch(h, forged), START + 1) == "MonitoringSignatureInvalid"
    )  # not the generator's
    elsewhere = SubmitMonitoring(b"\x07" * 32, (sign_record(GEN, b"\x07" * 32, first.record),))  # type: ignore[attr-defined]
    assert h.refused(OWNER, elsewhere, START + 1) == "MonitoringSignatureInvalid"  # signed for another chain
    assert h.refused(BUYER, batch(h, first), START + 1) == "NotStationOwner"
    tampered = msgspec.structs.replace(first, record=msgspec.structs.replace(first.record, voltage_upu=1))  # type: ignore[attr-defined,type-var]
    with pytest.raises(MonitoringSignatureInvalid):  # checked once, without the state
        validate_transaction(sign(h.chain, OWNER, batch(h, tampered), 0), h.chain.params, h.chain.chain_id)
    skipped = st.measure(m)
    skipped = st.measure(m)  # seq 3: the second is missing
    assert h.refused(OWNER, batch(h, skipped), START + 1) == "MeasurementOutOfOrder"
    submit(h, first)
    assert h.refused(OWNER, batch(h, first), START + 2) == "MeasurementOutOfOrder"  # a replay
    bad_switch = sign_record(
        SWITCH_KEYS[0], h.chain.chain_id, SwitchState(STATION, 3, True, False, 1, st.t + 1)
    )
    assert h.refused(OWNER, batch(h, bad_switch), START + 2) == "NotStationMeter"
    nowhere = Measurement(b"\x09" * 20, 1, st.t + 1, 50_000, 1_000_000, 1, 0, 1)
    assert (
        h.refused(OWNER, batch(h, sign_record(GEN, h.chain.chain_id, nowhere)), START + 2) == "UnknownStation"
    )
    with pytest.raises(MalformedTransaction):
        validate_transaction(sign(h.chain, OWNER, batch(h), 0), h.chain.params, h.chain.chain_id)
