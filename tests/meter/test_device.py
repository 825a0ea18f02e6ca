"""The meter device's rules: signed answers, the physics feed, relays and their commands.

Rejections are vectors: a command (or request), and the rule the meter names."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

from gridnet.crypto.keys import Domain, PrivateKey
from gridnet.encoding import decode, encode
from gridnet.meter.device import (
    AVERAGE_WINDOW_MS,
    MAX_CLOCK_MS,
    MAX_CLOCK_STEP_MS,
    MAX_POWER_W,
    Kind,
    Meter,
    MeterDevice,
    MeterDeviceError,
    Quantity,
    RelayCommandNotAuthorized,
    SignedRelayCommand,
    SimClock,
    is_answer_signed_by,
    is_relay_command_signed,
    sign_relay_command,
)

METER_KEY = PrivateKey.from_label("device-test-meter")
OWNER = PrivateKey.from_label("device-test-owner")
DSO = PrivateKey.from_label("device-test-dso")
STRANGER = PrivateKey.from_label("device-test-stranger")
START_MS = 1_767_225_600_000
QUARTER = 15 * 60 * 1000  # [ms]


def new_meter() -> tuple[Meter, SimClock]:
    """Two AC meters and one DC meter (relays 0, 1: AC; relay 2: DC meter 0) on a sim clock."""
    clock = SimClock(START_MS)
    return Meter(METER_KEY, OWNER.address, frozenset({DSO.public_key}), ac=2, dc=1, clock=clock), clock


def value(meter: MeterDevice, quantity: Quantity, kind: Kind = "ac", index: int = 0) -> int:
    return meter.read(kind, index, quantity).answer.value


def step(meter: Meter, clock: SimClock, power_w: int, duration_ms: int = QUARTER, index: int = 0) -> int:
    """Advance the clock by ``duration_ms`` and feed that step to AC meter ``index``."""
    clock.set(clock() + duration_ms)
    return meter.feed("ac", index, power_w, duration_ms)


# --- answers -------------------------------------------------------------------------------


def test_answers_are_signed_with_the_local_clock_and_a_rising_sequence() -> None:
    meter, clock = new_meter()
    first = meter.read("ac", 0, "voltage")
    clock.set(START_MS + 1_234)
    second = meter.read("dc", 0, "voltage")
    assert (first.answer.value, second.answer.value) == (230_000, 12_000)  # [mV]
    assert (first.answer.timestamp_ms, second.answer.timestamp_ms) == (START_MS, START_MS + 1_234)
    assert second.answer.sequence == first.answer.sequence + 1
    assert second.answer.meter == METER_KEY.address
    assert is_answer_signed_by(second, METER_KEY.public_key)
    assert not is_answer_signed_by(second, STRANGER.public_key)
    altered = msgspec.structs.replace(second, answer=msgspec.structs.replace(second.answer, value=1))
    assert not is_answer_signed_by(altered, METER_KEY.public_key)
    assert decode(encode(second), type(second)) == second  # canonical round trip


def test_a_signature_from_another_domain_does_not_make_an_answer() -> None:
    meter, _ = new_meter()
    signed = meter.read("ac", 0, "voltage")
    foreign = METER_KEY.sign(Domain.METER_STATUS, encode(signed.answer))
    assert not is_answer_signed_by(msgspec.structs.replace(signed, signature=foreign), METER_KEY.public_key)


# --- the physics feed ----------------------------------------------------------------------


def test_energy_is_integrated_into_integer_counters_without_losing_the_remainders() -> None:
    meter, clock = new_meter()
    assert step(meter, clock, 2_000) == 500  # 2 kW for 15 min [Wh]
    assert step(meter, clock, -1_000, 2 * QUARTER) == -500  # import is negative
    # 1 W for 20 min is a third of a Wh: the counter shows it once the thirds make one.
    assert [step(meter, clock, 1, 20 * 60 * 1000) for _ in range(3)] == [0, 0, 1]
    assert value(meter, "exported_energy") == 501
    assert value(meter, "imported_energy") == 500
    assert value(meter, "exported_energy", index=1) == 0  # another channel


def test_current_is_power_over_voltage_rounded_toward_zero() -> None:
    meter, clock = new_meter()
    step(meter, clock, -2_000)
    assert value(meter, "instant_power") == -2_000_000  # [mW]
    assert value(meter, "current") == -8_695  # -2000 W / 230 V = -8.6956 A [mA]
    clock.set(clock() + 1_000)
    assert meter.feed("dc", 0, 120, 1_000) == 0  # 120 W for 1 s on the 12 V bus
    assert value(meter, "current", "dc") == 10_000


def test_average_power_is_the_energy_of_the_last_window_over_the_window() -> None:
    meter, clock = new_meter()
    assert value(meter, "average_power") == 0  # never fed
    step(meter, clock, 3_000, QUARTER // 3)
    assert value(meter, "average_power") == 3_000_000  # fed 5 min: the window is those 5 min
    step(meter, clock, 0, 2 * QUARTER // 3)
    assert value(meter, "average_power") == 1_000_000  # 3 kW for 5 of the last 15 min
    step(meter, clock, 1_000)
    assert value(meter, "average_power") == 1_000_000
    clock.set(clock() + QUARTER // 2)  # no step for 7.5 min: no flow reported
    assert value(meter, "average_power") == 500_000
    assert value(meter, "instant_power") == 1_000_000  # the latest step's flow
    clock.set(clock() + AVERAGE_WINDOW_MS)
    assert value(meter, "average_power") == 0


@pytest.mark.parametrize(
    ("feed", "rule"),
    [
        (lambda m: m.feed("ac", 0, 100, 0), "InvalidFeed"),
        (lambda m: m.feed("ac", 0, MAX_POWER_W + 1, 1_000), "InvalidFeed"),
        (lambda m: m.feed("ac", 0, 100, QUARTER), "InvalidFeed"),  # overlaps the step fed before
        (lambda m: m.feed("ac", 2, 100, 1_000), "NoSuchChannel"),
        (lambda m: m.feed("dc", 1, 100, 1_000), "NoSuchChannel"),
        (lambda m: m.feed("xx", 0, 100, 1_000), "NoSuchChannel"),
        (lambda m: m.read("ac", 0, "frequency"), "UnknownQuantity"),
        (lambda m: m.set_clock(START_MS), "ClockWentBackwards"),
    ],
)
def test_bad_steps_and_reads_are_refused_by_rule(feed: Callable[[Meter], object], rule: str) -> None:
    meter, clock = new_meter()
    step(meter, clock, 100, QUARTER)
    with pytest.raises(MeterDeviceError) as refused:
        feed(meter)
    assert refused.value.rule == rule


def test_only_a_simulated_clock_is_set() -> None:
    meter = Meter(METER_KEY, OWNER.address, clock=lambda: START_MS)
    with pytest.raises(MeterDeviceError) as refused:
        meter.set_clock(START_MS + 1)
    assert refused.value.rule == "ClockNotSimulated"


def test_a_simulated_clock_moves_at_most_a_year_at_a_time_and_not_past_9999() -> None:
    meter, clock = new_meter()
    for now_ms in (START_MS + MAX_CLOCK_STEP_MS + 1, 2**63 - 1):
        with pytest.raises(MeterDeviceError) as refused:
            meter.set_clock(now_ms)
        assert refused.value.rule == "ClockJumpTooFar"
        assert clock() == START_MS
    meter.set_clock(START_MS + MAX_CLOCK_STEP_MS)
    assert clock() == START_MS + MAX_CLOCK_STEP_MS
    end = Meter(METER_KEY, OWNER.address, clock=SimClock(MAX_CLOCK_MS - 1))
    end.set_clock(MAX_CLOCK_MS)
    with pytest.raises(MeterDeviceError) as refused:
        end.set_clock(MAX_CLOCK_MS + 1)
    assert refused.value.rule == "ClockJumpTooFar"


# --- relays --------------------------------------------------------------------------------


def test_an_open_relay_reads_zero_flow_and_delivers_nothing() -> None:
    meter, clock = new_meter()
    step(meter, clock, 2_000)
    opened = meter.command(sign_relay_command(OWNER, METER_KEY.address, 0, "open", 1, "owner away"))
    assert (opened.relay, opened.closed, opened.kind, opened.index) == (0, False, "ac", 0)
    assert opened.changed_ms == clock()
    assert value(meter, "instant_power") == 0  # at once, before any new step
    assert value(meter, "current") == 0
    assert value(meter, "voltage") == 230_000  # the sensor is on the line side
    assert step(meter, clock, 2_000) == 0  # the world sees the energy was not delivered
    assert value(meter, "exported_energy") == 500
    assert step(meter, clock, 2_000, index=1) == 500  # the other AC meter has its own relay
    meter.command(sign_relay_command(DSO, METER_KEY.address, 0, "close", 1, "restore"))
    assert value(meter, "instant_power") == 0  # nothing flowed since it closed
    assert step(meter, clock, 2_000) == 500
    assert value(meter, "instant_power") == 2_000_000


def test_relays_are_numbered_ac_first_then_dc() -> None:
    meter, clock = new_meter()
    state = meter.command(sign_relay_command(OWNER, METER_KEY.address, 2, "open", 1))
    assert (state.kind, state.index) == ("dc", 0)
    clock.set(clock() + 3_600_000)
    assert meter.feed("dc", 0, 120, 3_600_000) == 0
    assert [s.closed for s in meter.relays()] == [True, True, False]


def test_accepted_commands_are_logged_with_time_and_role() -> None:
    meter, clock = new_meter()
    owner_open = sign_relay_command(OWNER, METER_KEY.address, 1, "open", 7, "redemption 3 delivered")
    dso_close = sign_relay_command(DSO, METER_KEY.address, 1, "close", 1, "DSO restores")  # own nonces
    meter.command(owner_open)
    clock.set(START_MS + 60_000)
    meter.command(dso_close)
    with pytest.raises(RelayCommandNotAuthorized):
        meter.command(sign_relay_command(STRANGER, METER_KEY.address, 1, "open", 8))
    log = meter.log()
    assert [(e.at_ms, e.role, e.signed) for e in log] == [
        (START_MS, "owner", owner_open),
        (START_MS + 60_000, "dso", dso_close),
    ]
    assert meter.log_total == 2
    assert all(is_relay_command_signed(e.signed) for e in log)


def _tampered() -> SignedRelayCommand:
    signed = sign_relay_command(OWNER, METER_KEY.address, 0, "close", 1)
    return msgspec.structs.replace(signed, command=msgspec.structs.replace(signed.command, action="open"))


def _foreign_signature() -> SignedRelayCommand:
    signed = sign_relay_command(OWNER, METER_KEY.address, 0, "open", 1)
    return msgspec.structs.replace(signed, signature=OWNER.sign(Domain.COMMAND, encode(signed.command)))


def _other_issuer() -> SignedRelayCommand:
    """Signed by the stranger, claiming the owner's key."""
    command = sign_relay_command(STRANGER, METER_KEY.address, 0, "open", 1).command
    claimed = msgspec.structs.replace(command, issuer=OWNER.public_key)
    return SignedRelayCommand(claimed, STRANGER.sign(Domain.RELAY_COMMAND, encode(claimed)))


REJECTIONS: list[tuple[str, Callable[[], SignedRelayCommand], str]] = [
    ("tampered after signing", _tampered, "RelayCommandSignatureInvalid"),
    ("signed for another domain", _foreign_signature, "RelayCommandSignatureInvalid"),
    ("claims another issuer", _other_issuer, "RelayCommandSignatureInvalid"),
    (
        "for another meter",
        lambda: sign_relay_command(OWNER, STRANGER.address, 0, "open", 1),
        "RelayCommandWrongMeter",
    ),
    (
        "from a stranger",
        lambda: sign_relay_command(STRANGER, METER_KEY.address, 0, "open", 1),
        "RelayCommandNotAuthorized",
    ),
    (
        "from the meter itself",
        lambda: sign_relay_command(METER_KEY, METER_KEY.address, 0, "open", 1),
        "RelayCommandNotAuthorized",
    ),
    ("no such relay", lambda: sign_relay_command(OWNER, METER_KEY.address, 3, "open", 11), "NoSuchChannel"),
    (
        "nonce replayed",
        lambda: sign_relay_command(OWNER, METER_KEY.address, 0, "open", 10),
        "RelayCommandReplayed",
    ),
    (
        "nonce lower",
        lambda: sign_relay_command(OWNER, METER_KEY.address, 0, "close", 9),
        "RelayCommandReplayed",
    ),
]


@pytest.mark.parametrize(("case", "build", "rule"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_a_refused_command_names_its_rule_and_changes_nothing(
    case: str, build: Callable[[], SignedRelayCommand], rule: str
) -> None:
    meter, _ = new_meter()
    meter.command(sign_relay_command(OWNER, METER_KEY.address, 0, "close", 10))  # the owner's last nonce
    before = (meter.relays(), meter.log())
    with pytest.raises(MeterDeviceError) as refused:
        meter.command(build())
    assert refused.value.rule == rule
    assert (meter.relays(), meter.log()) == before


@pytest.mark.parametrize(("case", "build", "rule"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_a_command_sent_to_another_relay_or_action_is_refused_by_its_first_rule(
    case: str, build: Callable[[], SignedRelayCommand], rule: str
) -> None:
    """The mismatch with the path it was sent to is the last rule: a forged or unauthorised
    command is named as such wherever it is sent."""
    meter, _ = new_meter()
    meter.command(sign_relay_command(OWNER, METER_KEY.address, 0, "close", 10))
    with pytest.raises(MeterDeviceError) as refused:
        meter.command(build(), sent_to=(2, "close"))
    assert refused.value.rule == rule
    honest = sign_relay_command(OWNER, METER_KEY.address, 0, "open", 11)
    with pytest.raises(MeterDeviceError) as mismatch:
        meter.command(honest, sent_to=(0, "close"))
    assert mismatch.value.rule == "RelayCommandMismatch"
    assert meter.command(honest, sent_to=(0, "open")).closed is False


def test_nonces_given_at_start_are_kept_and_recorded_before_a_command_acts() -> None:
    """A restarted meter starts from the nonces it accepted before; a command whose nonce
    cannot be recorded does not act."""
    recorded: list[dict[bytes, int]] = []
    clock = SimClock(START_MS)
    meter = Meter(
        METER_KEY, OWNER.address, clock=clock, nonces={OWNER.public_key: 10}, record_nonces=recorded.append
    )
    with pytest.raises(MeterDeviceError) as refused:
        meter.command(sign_relay_command(OWNER, METER_KEY.address, 0, "open", 10))
    assert refused.value.rule == "RelayCommandReplayed"
    meter.command(sign_relay_command(OWNER, METER_KEY.address, 0, "open", 11))
    assert recorded == [{OWNER.public_key: 11}]

    def unwritable(nonces: object) -> None:
        raise MeterDeviceError("disk full")

    stuck = Meter(METER_KEY, OWNER.address, clock=clock, record_nonces=unwritable)
    with pytest.raises(MeterDeviceError):
        stuck.command(sign_relay_command(OWNER, METER_KEY.address, 0, "open", 1))
    assert stuck.relays()[0].closed and stuck.log() == ()
