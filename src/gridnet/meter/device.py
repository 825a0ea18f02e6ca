"""A Helios smart meter as a device (seed 002, section IV): meters that answer signed
readings, relays that obey signed commands, and the physics feed that tells it what flowed.

Pure: no I/O. ``gridnet.meter.server`` puts a :class:`Meter` behind HTTP and
``gridnet.meter.client.MeterClient`` reaches it there; both implement :class:`MeterDevice`,
so a simulator drives a meter in its own process or in another one through the same calls.

Channels. A meter has ``ac`` AC meters and ``dc`` DC meters, each numbered from 0. Relays
share one numbering, AC first: relay ``i < ac`` cuts AC meter ``i``, relay ``ac + j`` cuts
DC meter ``j``. Every relay starts closed (conducting).

Signs and units. Power and current are positive when energy leaves the site through the
meter (export, injection into the line or bus) and negative when it enters (import). Every
value is an integer: voltage [mV], current [mA], power [mW], energy [Wh], time [ms] on the
meter's local clock. Current is power over voltage (unity power factor), rounded toward zero.

What is measured. The physics feed reports steps: "``power_w`` flowed for the
``duration_ms`` ending now". A step through an open relay carries nothing (the feed returns
0 Wh, so the world sees the energy was not delivered); the relay's state when the step is
fed applies to the whole step (the world commands relays between its steps).

- voltage: the channel's nominal voltage (230 V AC, 12 V DC: the Helios node's battery bus).
  The sensor is on the line side of the relay, so an open relay still reads it.
- current, instant_power: those of the latest step fed; 0 while the relay is open, and from
  its opening until the next step.
- average_power: the energy of the steps within the last ``AVERAGE_WINDOW_MS`` (15 min)
  over that window, rounded toward zero; the window is shorter while the channel has been
  fed for less (and 0 before its first step). Time between steps counts as no flow.
- exported_energy, imported_energy: the channel's cumulative counters [Wh], rounded down
  (the exact energy is kept, so rounding never accumulates).

Relay commands are accepted only when signed (``Domain.RELAY_COMMAND``) by the meter's owner
or a DSO authority, addressed to this meter, and not replayed: each issuer's nonces must
strictly increase. Every accepted command is logged with the meter's time and the signer's
role, the signed command kept so anyone can check it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal, Protocol, get_args

import msgspec

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import U8, U63, AddressBytes, PublicKeyBytes, SignatureBytes, Wire, encode
from gridnet.errors import GridnetError
from gridnet.units import INTERVAL_MS, Address, Millis, PublicKey, Wh

Kind = Literal["ac", "dc"]
Quantity = Literal[
    "voltage", "current", "instant_power", "average_power", "exported_energy", "imported_energy"
]
Action = Literal["open", "close"]
Role = Literal["owner", "dso"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
QUANTITIES: Final[tuple[Quantity, ...]] = get_args(Quantity)
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)
UNITS: Final[dict[Quantity, str]] = {
    "voltage": "mV",
    "current": "mA",
    "instant_power": "mW",
    "average_power": "mW",
    "exported_energy": "Wh",
    "imported_energy": "Wh",
}
"""The unit of each quantity's value."""
I63 = Annotated[int, msgspec.Meta(ge=-(2**63) + 1, le=2**63 - 1)]
"""Signed integer of a 64-bit word."""

NOMINAL_MV: Final[dict[Kind, int]] = {"ac": 230_000, "dc": 12_000}
"""Voltage of each kind of channel [mV]."""
AVERAGE_WINDOW_MS: Final = INTERVAL_MS
"""Window of ``average_power`` [ms]: one 15-minute interval."""
MAX_POWER_W: Final = 1_000_000
"""Largest power one step may carry either way [W]."""
MAX_STEP_MS: Final = 24 * 3_600_000
"""Longest step [ms]."""
MAX_STEPS: Final = 10_000
"""Steps a channel keeps for its average (the window shrinks to the kept ones beyond that)."""
MAX_CHANNELS: Final = 64
"""Most AC plus DC meters one device has."""
MAX_LOG: Final = 1_000
"""Relay log entries kept (the oldest are dropped; ``log_total`` counts them all)."""
MW_MS_PER_WH: Final = 1_000 * 3_600_000
"""[mW·ms] in one [Wh]."""
MAX_CLOCK_STEP_MS: Final = 366 * 24 * 3_600_000
"""Furthest one ``set_clock`` moves a simulated clock ahead [ms]: a (leap) year."""
MAX_CLOCK_MS: Final = 253_402_300_799_999
"""Latest time ``set_clock`` sets [ms since 1970]: the last millisecond of the year 9999 (UTC)."""


# --- errors ------------------------------------------------------------------------------


class MeterDeviceError(GridnetError):
    """A meter refuses a request; the subclass names the rule."""


class NoSuchChannel(MeterDeviceError):
    """The meter has no such AC or DC meter, or no such relay."""


class UnknownQuantity(MeterDeviceError):
    """A read names a quantity the meter does not measure."""


class InvalidFeed(MeterDeviceError):
    """A physics step the meter cannot take (a power or duration out of range, or a step
    that starts before the channel's previous one ended)."""


class InvalidRelayCommand(MeterDeviceError):
    """A relay command breaks a rule; the subclass names it."""


class RelayCommandSignatureInvalid(InvalidRelayCommand):
    """The command is not signed by the issuer key it names (forged or altered)."""


class RelayCommandWrongMeter(InvalidRelayCommand):
    """The command is addressed to another meter."""


class RelayCommandNotAuthorized(InvalidRelayCommand):
    """The issuer is neither the meter's owner nor one of its DSO authorities."""


class RelayCommandReplayed(InvalidRelayCommand):
    """The command's nonce is not above the last one accepted from its issuer."""


class RelayCommandMismatch(InvalidRelayCommand):
    """The command was sent for another relay or action than the one it names."""


class ClockNotSimulated(MeterDeviceError):
    """Only a meter on a simulated clock can have its clock set."""


class ClockWentBackwards(MeterDeviceError):
    """A simulated clock is only set forward."""


class ClockJumpTooFar(MeterDeviceError):
    """A simulated clock is set forward by at most ``MAX_CLOCK_STEP_MS`` at a time, and never
    past ``MAX_CLOCK_MS`` (a clock moved to the end of time could never be fed again)."""


# --- signed structures -------------------------------------------------------------------


class MeterAnswer(Wire, frozen=True):
    meter: AddressBytes
    """The meter's address (of its key)."""
    kind: Kind
    index: U8
    """The AC or DC meter's number."""
    quantity: Quantity
    value: I63
    """The measurement, in ``UNITS[quantity]`` (mV, mA, mW or Wh)."""
    timestamp_ms: U63
    """The meter's local clock when it measured [ms]."""
    sequence: U63
    """Counts the meter's answers: a later answer has a higher one."""


class SignedMeterAnswer(Wire, frozen=True):
    answer: MeterAnswer
    signature: SignatureBytes
    """The meter's signature (METER_ANSWER domain) of the encoded answer."""


class RelayCommand(Wire, frozen=True):
    meter: AddressBytes
    """The meter addressed."""
    relay: U8
    action: Action
    issuer: PublicKeyBytes
    """The key that signs: the owner's or a DSO authority's."""
    nonce: U63
    """Above every nonce of the issuer's earlier commands to this meter (e.g. the time [ms])."""
    reason: Annotated[str, msgspec.Meta(max_length=120)]
    """Why, for the log (e.g. "redemption 7: 500 Wh released", "DSO emergency")."""


class SignedRelayCommand(Wire, frozen=True):
    command: RelayCommand
    signature: SignatureBytes
    """The issuer's signature (RELAY_COMMAND domain) of the encoded command."""


class RelayLogEntry(Wire, frozen=True):
    at_ms: U63
    """The meter's local clock when it accepted the command [ms]."""
    role: Role
    signed: SignedRelayCommand


class RelayState(msgspec.Struct, frozen=True):
    relay: int
    closed: bool
    """True: conducting; False: open, the channel carries nothing."""
    kind: Kind
    index: int
    """The AC or DC meter it cuts."""
    changed_ms: int
    """The meter's clock at the last accepted command that changed it (0: never) [ms]."""


def sign_relay_command(
    key: PrivateKey, meter: Address, relay: int, action: Action, nonce: int, reason: str = ""
) -> SignedRelayCommand:
    """A relay command from ``key`` (the owner's or a DSO authority's)."""
    command = RelayCommand(meter, relay, action, key.public_key, nonce, reason)
    return SignedRelayCommand(command, key.sign(Domain.RELAY_COMMAND, encode(command)))


def is_relay_command_signed(signed: SignedRelayCommand) -> bool:
    """True when the issuer key named in the command signed exactly this command."""
    c = signed.command
    return verify_signature(Domain.RELAY_COMMAND, c.issuer, encode(c), signed.signature)


def is_answer_signed_by(signed: SignedMeterAnswer, meter_key: PublicKey) -> bool:
    """True when ``meter_key`` signed exactly this answer and it names that key's meter."""
    return signed.answer.meter == address_from_public_key(meter_key) and verify_signature(
        Domain.METER_ANSWER, meter_key, encode(signed.answer), signed.signature
    )


def validate_relay_command(signed: SignedRelayCommand) -> None:
    """The stateless check: the command is signed by the key it names."""
    if not is_relay_command_signed(signed):
        raise RelayCommandSignatureInvalid(
            f"the relay command is not signed by its issuer key {signed.command.issuer.hex()[:16]}…"
        )


# --- the device --------------------------------------------------------------------------


class SimClock:
    """A simulated clock [ms]: it reads ``now_ms`` until set forward."""

    def __init__(self, now_ms: Millis) -> None:
        self.now_ms = now_ms

    def __call__(self) -> Millis:
        return self.now_ms

    def set(self, now_ms: Millis) -> None:
        if now_ms < self.now_ms:
            raise ClockWentBackwards(
                f"the meter's clock reads {self.now_ms} ms; it cannot go back to {now_ms}"
            )
        self.now_ms = now_ms


@dataclass(frozen=True, slots=True)
class _Step:
    start_ms: Millis
    end_ms: Millis
    power_mw: int
    """What flowed (0 through an open relay) [mW]."""


@dataclass(slots=True)
class _Channel:
    kind: Kind
    index: int
    nominal_mv: int
    closed: bool = True
    changed_ms: Millis = 0
    power_mw: int = 0
    """The latest step's flow, or 0 since the relay opened [mW]."""
    exported: int = 0
    """Energy out of the site, exactly [mW·ms]."""
    imported: int = 0
    """Energy into the site, exactly [mW·ms]."""
    steps: deque[_Step] = field(default_factory=deque)
    known_since_ms: Millis | None = None
    """Start of the oldest step the average can count (None: never fed)."""
    fed_until_ms: Millis | None = None


class MeterDevice(Protocol):
    """What a simulator calls on a meter, in its process (:class:`Meter`) or over HTTP
    (``MeterClient``)."""

    def feed(self, kind: Kind, index: int, power_w: int, duration_ms: Millis) -> Wh:
        """The world's step: ``power_w`` [W] pushed through the channel for the ``duration_ms``
        ending at the meter's now; the energy that flowed [Wh] (0 through an open relay)."""
        ...

    def read(self, kind: Kind, index: int, quantity: Quantity) -> SignedMeterAnswer: ...

    def command(self, signed: SignedRelayCommand) -> RelayState:
        """Apply a signed relay command; the relay's state after it."""
        ...

    def relays(self) -> tuple[RelayState, ...]: ...

    def log(self) -> tuple[RelayLogEntry, ...]:
        """The accepted relay commands kept, oldest first."""
        ...

    def set_clock(self, now_ms: Millis) -> None:
        """Move a simulated clock forward to ``now_ms``."""
        ...


class Meter:
    """The device: its key, owner, DSO authorities, channels and relays (implements
    :class:`MeterDevice`)."""

    def __init__(
        self,
        key: PrivateKey,
        owner: Address,
        dso: frozenset[PublicKey] = frozenset(),
        *,
        ac: int = 1,
        dc: int = 1,
        clock: Callable[[], Millis],
        nonces: Mapping[PublicKey, int] | None = None,
        record_nonces: Callable[[Mapping[PublicKey, int]], None] | None = None,
    ) -> None:
        """``clock`` is the meter's local clock [ms]: a :class:`SimClock` (settable with
        :meth:`set_clock`) or any callable, such as the wall clock. ``nonces``: the last nonce
        accepted from each issuer before (a restarted meter's, so no command is replayed);
        ``record_nonces`` is given them, once a command is checked and before it acts (if it
        raises, the command does not act)."""
        if ac < 0 or dc < 0 or ac + dc > MAX_CHANNELS:
            raise ValueError(f"a meter has 0 to {MAX_CHANNELS} AC plus DC meters, not {ac} + {dc}")
        self.key = key
        self.address: Address = key.address
        self.owner = owner
        self.dso = dso
        self.clock = clock
        self.ac, self.dc = ac, dc
        self._channels = [_Channel("ac", i, NOMINAL_MV["ac"]) for i in range(ac)] + [
            _Channel("dc", j, NOMINAL_MV["dc"]) for j in range(dc)
        ]
        self._sequence = 0
        self._nonces: dict[PublicKey, int] = dict(nonces or {})
        self._record_nonces = record_nonces
        self._log: deque[RelayLogEntry] = deque(maxlen=MAX_LOG)
        self.log_total = 0
        """Commands accepted since the meter started (the log keeps the last MAX_LOG)."""

    # --- the physics feed ---

    def feed(self, kind: Kind, index: int, power_w: int, duration_ms: Millis) -> Wh:
        channel = self._channel(kind, index)
        now = self.clock()
        start = now - duration_ms
        if not 0 < duration_ms <= MAX_STEP_MS:
            raise InvalidFeed(f"a step lasts 1 to {MAX_STEP_MS} ms, not {duration_ms}")
        if abs(power_w) > MAX_POWER_W:
            raise InvalidFeed(f"a step carries at most {MAX_POWER_W} W either way, not {power_w}")
        # A channel's steps do not overlap: energy is counted once.
        if channel.fed_until_ms is not None and start < channel.fed_until_ms:
            raise InvalidFeed(
                f"{kind} meter {index} was fed until {channel.fed_until_ms} ms; a step of "
                f"{duration_ms} ms ending at {now} ms would overlap it"
            )
        power_mw = power_w * 1_000 if channel.closed else 0
        before = _net_wh(channel)
        if power_mw > 0:
            channel.exported += power_mw * duration_ms
        else:
            channel.imported -= power_mw * duration_ms
        channel.power_mw = power_mw
        channel.fed_until_ms = now
        if channel.known_since_ms is None:
            channel.known_since_ms = start
        channel.steps.append(_Step(start, now, power_mw))
        while channel.steps[0].end_ms <= now - AVERAGE_WINDOW_MS:  # (out of every later window)
            channel.steps.popleft()
        if len(channel.steps) > MAX_STEPS:
            channel.steps.popleft()
            channel.known_since_ms = channel.steps[0].start_ms
        return _net_wh(channel) - before

    # --- read commands ---

    def read(self, kind: Kind, index: int, quantity: Quantity) -> SignedMeterAnswer:
        channel = self._channel(kind, index)
        if quantity not in QUANTITIES:
            raise UnknownQuantity(f"the meter measures {', '.join(QUANTITIES)}, not {quantity!r}")
        now = self.clock()
        self._sequence += 1
        answer = MeterAnswer(
            self.address, kind, index, quantity, _compute_value(channel, quantity, now), now, self._sequence
        )
        return SignedMeterAnswer(answer, self.key.sign(Domain.METER_ANSWER, encode(answer)))

    # --- relays ---

    def command(self, signed: SignedRelayCommand, sent_to: tuple[int, str] | None = None) -> RelayState:
        """Check ``signed`` top to bottom, then switch its relay and log it. ``sent_to``: the
        relay and action the command was sent for (HTTP ``/relay/{n}/{action}``), checked last."""
        validate_relay_command(signed)
        c = signed.command
        if c.meter != self.address:
            raise RelayCommandWrongMeter(
                f"the command is for meter {address_to_text(c.meter)}, "
                f"this is {address_to_text(self.address)}"
            )
        role = self.role_of(c.issuer)
        if role is None:
            raise RelayCommandNotAuthorized(
                f"{address_to_text(address_from_public_key(c.issuer))} is neither the owner of meter "
                f"{address_to_text(self.address)} nor one of its DSO authorities"
            )
        channel = self._relay(c.relay)
        last = self._nonces.get(c.issuer)
        if last is not None and c.nonce <= last:
            raise RelayCommandReplayed(
                f"nonce {c.nonce} is not above {last}, the issuer's last accepted command (a replay?)"
            )
        if sent_to is not None and (c.relay, c.action) != sent_to:
            raise RelayCommandMismatch(
                f"the command would {c.action} relay {c.relay}; "
                f"it was sent to /relay/{sent_to[0]}/{sent_to[1]}"
            )
        now = self.clock()
        if self._record_nonces is not None:
            self._record_nonces({**self._nonces, c.issuer: c.nonce})  # (kept before it acts)
        self._nonces[c.issuer] = c.nonce
        closed = c.action == "close"
        if channel.closed != closed:
            channel.closed, channel.changed_ms = closed, now
        if not closed:
            channel.power_mw = 0  # nothing flows through an open relay, from now on
        self._log.append(RelayLogEntry(now, role, signed))
        self.log_total += 1
        return _state(c.relay, channel)

    def role_of(self, issuer: PublicKey) -> Role | None:
        """Why ``issuer`` may command the relays (None: it may not)."""
        if address_from_public_key(issuer) == self.owner:
            return "owner"
        return "dso" if issuer in self.dso else None

    def relays(self) -> tuple[RelayState, ...]:
        return tuple(_state(i, c) for i, c in enumerate(self._channels))

    def log(self) -> tuple[RelayLogEntry, ...]:
        return tuple(self._log)

    def set_clock(self, now_ms: Millis) -> None:
        if not isinstance(self.clock, SimClock):
            raise ClockNotSimulated("this meter runs on the wall clock; its clock cannot be set")
        now = self.clock()
        if now_ms > now + MAX_CLOCK_STEP_MS:
            raise ClockJumpTooFar(
                f"the meter's clock reads {now} ms; one step moves it at most {MAX_CLOCK_STEP_MS} ms "
                f"(a year) ahead, not to {now_ms}"
            )
        if now_ms > MAX_CLOCK_MS:
            raise ClockJumpTooFar(f"the meter's clock goes up to {MAX_CLOCK_MS} ms (year 9999), not {now_ms}")
        self.clock.set(now_ms)

    def _channel(self, kind: Kind, index: int) -> _Channel:
        count = {"ac": self.ac, "dc": self.dc}.get(kind)
        if count is None or not 0 <= index < count:
            raise NoSuchChannel(
                f"the meter has {self.ac} AC and {self.dc} DC meters; no {kind} meter {index}"
            )
        return self._channels[index if kind == "ac" else self.ac + index]

    def _relay(self, relay: int) -> _Channel:
        if not 0 <= relay < len(self._channels):
            raise NoSuchChannel(f"the meter has relays 0 to {len(self._channels) - 1}; no relay {relay}")
        return self._channels[relay]


# --- measurements (pure) -----------------------------------------------------------------


def _compute_value(channel: _Channel, quantity: Quantity, now: Millis) -> int:
    """The channel's ``quantity`` at ``now``, in ``UNITS[quantity]``."""
    if quantity == "voltage":
        return channel.nominal_mv
    if quantity == "current":
        return _div_toward_zero(channel.power_mw * 1_000, channel.nominal_mv)
    if quantity == "instant_power":
        return channel.power_mw
    if quantity == "average_power":
        return _compute_average_mw(channel, now)
    if quantity == "exported_energy":
        return channel.exported // MW_MS_PER_WH
    return channel.imported // MW_MS_PER_WH


def _compute_average_mw(channel: _Channel, now: Millis) -> int:
    """Mean power [mW] over the last AVERAGE_WINDOW_MS before ``now`` (or since the oldest
    step kept, when that is later); 0 when the window is empty."""
    if channel.known_since_ms is None:
        return 0
    low = max(now - AVERAGE_WINDOW_MS, channel.known_since_ms)
    if now <= low:
        return 0
    energy = sum(s.power_mw * max(0, min(s.end_ms, now) - max(s.start_ms, low)) for s in channel.steps)
    return _div_toward_zero(energy, now - low)


def _net_wh(channel: _Channel) -> Wh:
    return channel.exported // MW_MS_PER_WH - channel.imported // MW_MS_PER_WH


def _div_toward_zero(a: int, b: int) -> int:
    """``a / b`` rounded toward zero (``b > 0``)."""
    return a // b if a >= 0 else -(-a // b)


def _state(relay: int, channel: _Channel) -> RelayState:
    return RelayState(relay, channel.closed, channel.kind, channel.index, channel.changed_ms)
