"""Helios energy credits (seed 002, sections III-VI): credits minted for metered injection.

A *controller* is run by a consortium of neighbours: its members' keys and how many of them
must sign (``threshold``) are fixed when it is registered (``RegisterController``, itself signed
by that many members). A producer enrolls its meter with a controller (``EnrollProducer``),
choosing how often credits are minted (every ``every_intervals`` 15-minute intervals; hourly by
default) and the smallest mint (``min_wh``, at least 1 Wh). Only the controller mints
(``MintCredits``, signed by ``threshold`` members): one credit per Wh the meter exported in the
intervals since the last mint, as its readings on chain say — every one of those intervals must
have a reading, none is minted twice, so the credits minted for a meter are exactly the energy
its readings show it injected over the minted intervals. Anyone transfers credits
(``TransferCredits``). Redeeming (``RedeemCredits``) hands credits back to the controller, which
must then release that energy to the redeemer's meter within the redemption's window: anyone
closes the redemption (``CloseRedemption``) as *discharged* once the meter's readings show that
much imported from the redemption's first interval on, or as the controller's *default* once the
window has passed without it (every reading of the window on chain), or as *lapsed* once the
window has passed without it and a reading of the window can never come (the meter has reported
a later interval): what the meter imported then is not known, so neither side is blamed.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec.structs import replace

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.crypto.hashing import registered_id
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import U32, U63, AddressBytes, HashBytes, PublicKeyBytes, SignatureBytes, Wire, encode
from gridnet.errors import (
    BelowMinimumMint,
    ControllerExists,
    InsufficientConsortium,
    InsufficientCredits,
    IslandCapExceeded,
    IslandConsentMissing,
    IslandExists,
    MalformedTransaction,
    MeterNotOwned,
    MeterRedemptionOpen,
    MintTooEarly,
    NotEnrolled,
    ProducerEnrolled,
    ReadingsMissing,
    RedemptionOpen,
    UnknownController,
    UnknownMeter,
    UnknownRedemption,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import StateView, register_table
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.meter import METERS, READINGS, ReadingRecord, reading_key
from gridnet.units import INTERVAL_MS, Address, Hash32, PublicKey, interval_of

MAX_MEMBERS = 32
MAX_SPAN_INTERVALS = 7 * 96
"""A mint's intervals, a producer's frequency and a redemption's window: at most a week."""
DEFAULT_EVERY_INTERVALS = 4
"""Hourly, as the seed's controller reads its meters."""
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class MemberSignature(Wire, frozen=True):
    key: PublicKeyBytes
    signature: SignatureBytes
    """Ed25519 over chain id || the encoded act (``consortium_message``), CONSORTIUM domain; for a
    registration, over chain id || the registrant's key || the encoded act
    (``registration_message``), REGISTRATION domain."""


class Controller(Wire, frozen=True):
    name: Name
    members: tuple[PublicKeyBytes, ...]
    threshold: U32
    minted_wh: U63 = 0
    """Credits ever minted (1 credit = 1 Wh)."""
    redeemed_wh: U63 = 0
    """Credits handed back by redemptions (spent: the supply is minted less redeemed)."""
    defaults: U32 = 0
    """Redemptions it failed to release in time (each proven by a CloseRedemption)."""

    @property
    def supply(self) -> int:
        return self.minted_wh - self.redeemed_wh


class CreditBalance(Wire, frozen=True):
    credits: U63


class Enrollment(Wire, frozen=True):
    owner: AddressBytes
    """The meter's owner when it enrolled: it receives the credits."""
    every_intervals: U32
    min_wh: U63
    minted_through: U63
    """Last interval minted for (enrollment: the interval before its first)."""
    minted_wh: U63 = 0


class Redemption(Wire, frozen=True):
    redeemer: AddressBytes
    meter: AddressBytes
    wh: U63
    first_interval: U63
    due_interval: U63
    """The release must show in the meter's imports from ``first_interval`` to this one."""
    status: U32 = 0
    """``OPEN``, ``DISCHARGED``, ``DEFAULTED`` or ``LAPSED`` (the record stays: the history is on
    chain)."""


OPEN, DISCHARGED, DEFAULTED, LAPSED = 0, 1, 2, 3


class MeterRedemption(Wire, frozen=True):
    """The open redemption whose release a meter's imports count for."""

    controller: HashBytes
    redemption: HashBytes
    """Its ``RedeemCredits`` txid."""
    due_interval: U63
    """The last interval of its window: a redemption opened at or after it counts other
    imports (its window starts after its block's interval), whether or not this one is closed."""


class IslandNode(Wire, frozen=True):
    meter: AddressBytes
    inject_w: U63
    """Most power its meter may feed into the island's line [W]."""
    withdraw_w: U63
    """Most power its meter may draw from it [W]."""


class Island(Wire, frozen=True):
    """Helios's smart power island: nodes on one single-phase line and a gateway to the grid,
    which absorbs up to the nodes' injection ratings together and injects up to their
    withdrawal ratings together (both metered by the gateway's meter)."""

    gateway: AddressBytes
    nodes: tuple[IslandNode, ...]

    @property
    def absorb_w(self) -> int:
        return sum(n.inject_w for n in self.nodes)

    @property
    def supply_w(self) -> int:
        return sum(n.withdraw_w for n in self.nodes)


class IslandConsent(Wire, frozen=True):
    """What a meter's owner signs to let the meter into a controller's island, in one role with
    its caps: a node with its own, or the gateway (``meter`` = ``gateway``) with the nodes' sums
    (as ``IslandMember`` stores them). Signed as consortium members sign an act
    (``sign_as_member``: chain id || this encoded, CONSORTIUM domain); untagged, it never
    encodes as a payload does (those start with their tag)."""

    controller: HashBytes
    gateway: AddressBytes
    """The island's gateway meter."""
    meter: AddressBytes
    """The owner's meter."""
    inject_w: U63
    """Most power the meter may feed into the island's line [W]."""
    withdraw_w: U63
    """Most power it may draw from it [W]."""


class IslandMember(Wire, frozen=True):
    controller: HashBytes
    inject_w: U63
    withdraw_w: U63


CONTROLLERS = register_table("helios_controllers", b"E", Controller)
ISLANDS = register_table("helios_islands", b"S", Island)
ISLAND_MEMBERS = register_table("helios_island_members", b"i", IslandMember)
"""Meter -> the island (its controller) it belongs to and its caps."""
CREDITS = register_table("helios_credits", b"B", CreditBalance)
ENROLLMENTS = register_table("helios_enrollments", b"D", Enrollment)
REDEMPTIONS = register_table("helios_redemptions", b"L", Redemption)
OPEN_REDEMPTIONS = register_table("helios_open_redemptions", b"u", MeterRedemption)
"""Meter -> its open redemption: a redemption counts the meter's imports over its window, so
with two windows of one meter overlapping one import discharged both. A new one opens once the
last is closed or its window is over (one whose readings never all come is never closed)."""


def controller_id(registrant: PublicKey, name: str) -> Hash32:
    """The id of the controller ``name`` registered by the key ``registrant`` (the sender of its
    ``RegisterController``): each registrant names its own, so nobody takes a name from another."""
    return registered_id(b"helios-controller/", registrant, name)


class RegisterController(Wire, frozen=True, tag=27):
    name: Name
    members: tuple[PublicKeyBytes, ...]
    """Ordered by key, each once."""
    threshold: U32
    signatures: tuple[MemberSignature, ...]


class EnrollProducer(Wire, frozen=True, tag=28):
    controller: HashBytes
    meter: AddressBytes
    every_intervals: U32 = DEFAULT_EVERY_INTERVALS
    min_wh: U63 = 1
    first_interval: U63 = 0
    """The first interval credited (0: the enrolling block's); never one that has begun before
    the enrolling block's."""


class MintCredits(Wire, frozen=True, tag=29):
    controller: HashBytes
    meter: AddressBytes
    through: U63
    """Mint for the meter's intervals after its last mint up to this one."""
    signatures: tuple[MemberSignature, ...]


class TransferCredits(Wire, frozen=True, tag=30):
    controller: HashBytes
    to: AddressBytes
    credits: U63


class RedeemCredits(Wire, frozen=True, tag=31):
    controller: HashBytes
    credits: U63
    meter: AddressBytes
    """The sender's meter the energy is to be released to."""
    within_intervals: U32
    """The window, from the interval after the redeeming block's."""


class RegisterIsland(Wire, frozen=True, tag=33):
    controller: HashBytes
    gateway: AddressBytes
    nodes: tuple[IslandNode, ...]
    """Ordered by meter, each once; the gateway's meter is none of them."""
    signatures: tuple[MemberSignature, ...]
    """The consortium's, over the act with no signatures and no consents."""
    consents: tuple[MemberSignature, ...]
    """Each meter's owner's over its ``IslandConsent`` (``island_consents``): the gateway's,
    then each node's in the nodes' order."""


class CloseRedemption(Wire, frozen=True, tag=32):
    controller: HashBytes
    redemption: HashBytes
    """The id of the RedeemCredits transaction that opened it."""


# --- the consortium's signatures ------------------------------------------------------------


def consortium_message(chain_id: Hash32, act: Wire) -> bytes:
    """What members sign for ``act`` (the payload with no signatures)."""
    return chain_id + encode(act)


def registration_message(chain_id: Hash32, registrant: PublicKey, act: Wire) -> bytes:
    """What members sign to form a group under ``registrant``, the key that sends the
    registration ``act`` (the payload with no signatures): chain id || that key || the
    encoded act, REGISTRATION domain. Their consent is to that registrant's group: a copy of
    the registration sent by another key carries no valid signature."""
    return chain_id + registrant + encode(act)


def sign_as_member(
    key: PrivateKey, chain_id: Hash32, act: Wire, *, registrant: PublicKey | None = None
) -> MemberSignature:
    """A member's signature of ``act``; of a registration (``registrant``: the key sending it)
    with ``registration_message``."""
    if registrant is None:
        return MemberSignature(key.public_key, key.sign(Domain.CONSORTIUM, consortium_message(chain_id, act)))
    message = registration_message(chain_id, registrant, act)
    return MemberSignature(key.public_key, key.sign(Domain.REGISTRATION, message))


def check_consortium(
    chain_id: Hash32,
    act: Wire,
    members: tuple[bytes, ...],
    threshold: int,
    signatures: tuple[MemberSignature, ...],
    what: str,
    *,
    registrant: PublicKey | None = None,
) -> None:
    """``InsufficientConsortium`` unless ``threshold`` distinct ``members`` signed ``act``
    (a registration sent by ``registrant``: signed for that key, ``registration_message``)."""
    if registrant is None:
        domain, message = Domain.CONSORTIUM, consortium_message(chain_id, act)
    else:
        domain, message = Domain.REGISTRATION, registration_message(chain_id, registrant, act)
    signers: set[bytes] = set()
    for s in signatures:
        if s.key in signers or s.key not in members:
            continue
        if verify_signature(domain, s.key, message, s.signature):
            signers.add(s.key)
    if len(signers) < threshold:
        raise InsufficientConsortium(
            f"{what}: {len(signers)} valid member signature(s); the consortium needs {threshold}"
        )


def island_consents(
    controller: Hash32, gateway: Address, nodes: tuple[IslandNode, ...]
) -> list[IslandConsent]:
    """The consent each meter of an island needs from its owner: the gateway's (its caps the
    nodes' sums: it injects what they withdraw and withdraws what they inject), then each
    node's, in order (as ``RegisterIsland.consents`` holds them)."""
    island = Island(gateway, nodes)
    own = [IslandConsent(controller, gateway, n.meter, n.inject_w, n.withdraw_w) for n in nodes]
    return [IslandConsent(controller, gateway, gateway, island.supply_w, island.absorb_w), *own]


def verify_island_consent(chain_id: Hash32, consent: IslandConsent, signed: MemberSignature) -> bool:
    """Whether ``signed`` is ``signed.key``'s signature over ``consent`` on this chain (whose
    key it is, the meter's owner's, is the caller's to check)."""
    message = consortium_message(chain_id, consent)
    return verify_signature(Domain.CONSORTIUM, signed.key, message, signed.signature)


def _controller(state: StateView, cid: bytes) -> Controller:
    found = state.get(CONTROLLERS, cid)
    if found is None:
        raise UnknownController(f"no Helios controller {cid.hex()[:16]}")
    return found


def _require_own_meter(state: StateView, meter: bytes, owner: Address) -> None:
    record = state.get(METERS, meter)
    if record is None or record.revoked:
        raise UnknownMeter(f"meter {address_to_text(meter)} is not registered (or revoked)")
    if record.owner != owner:
        raise MeterNotOwned(f"meter {address_to_text(meter)} belongs to another owner")


def credits_of(state: StateView, cid: bytes, holder: Address) -> int:
    found = state.get(CREDITS, cid + holder)
    return 0 if found is None else found.credits


def _set_credits(state: StateView, cid: bytes, holder: Address, credits: int) -> None:
    state.put(CREDITS, cid + holder, CreditBalance(credits) if credits else None)


# --- rules ------------------------------------------------------------------------------------


def check_consortium_shape(
    members: tuple[bytes, ...], threshold: int, signatures: tuple[MemberSignature, ...]
) -> None:
    """A consortium's registration lists 1 to 32 member keys, ordered, each once, a threshold
    of 1 to their number and at most 32 signatures (``MalformedTransaction``)."""
    if not 1 <= len(members) <= MAX_MEMBERS or list(members) != sorted(set(members)):
        raise MalformedTransaction(f"a consortium lists 1 to {MAX_MEMBERS} member keys, ordered, each once")
    if not 1 <= threshold <= len(members):
        raise MalformedTransaction(f"threshold {threshold} is not 1 to {len(members)} members")
    if len(signatures) > MAX_MEMBERS:
        raise MalformedTransaction(f"at most {MAX_MEMBERS} signatures")


def validate_register_controller(payload: RegisterController, params: ChainParams) -> None:
    check_consortium_shape(payload.members, payload.threshold, payload.signatures)


def apply_register_controller(
    state: StateView, env: BlockEnv, sender: Address, payload: RegisterController
) -> None:
    cid = controller_id(env.sender_key, payload.name)
    if state.get(CONTROLLERS, cid) is not None:
        raise ControllerExists(
            f"{address_to_text(sender)} has registered a Helios controller named {payload.name!r} already"
        )
    act = replace(payload, signatures=())
    check_consortium(
        env.chain_id, act, payload.members, payload.threshold, payload.signatures, "registering",
        registrant=env.sender_key,
    )  # fmt: skip
    state.put(CONTROLLERS, cid, Controller(payload.name, payload.members, payload.threshold))


def validate_enroll(payload: EnrollProducer, params: ChainParams) -> None:
    if not 1 <= payload.every_intervals <= MAX_SPAN_INTERVALS:
        raise MalformedTransaction(f"every_intervals must be 1 to {MAX_SPAN_INTERVALS}")
    if payload.min_wh < 1:
        raise MalformedTransaction("min_wh must be at least 1 Wh")


def apply_enroll(state: StateView, env: BlockEnv, sender: Address, payload: EnrollProducer) -> None:
    _controller(state, payload.controller)
    _require_own_meter(state, payload.meter, sender)
    key = payload.controller + payload.meter
    if state.get(ENROLLMENTS, key) is not None:
        raise ProducerEnrolled(
            f"meter {address_to_text(payload.meter)} is enrolled with this controller already"
        )
    now = interval_of(env.timestamp)
    first = payload.first_interval or now
    if first < now:
        raise MintTooEarly(
            f"interval {first} began before the enrolling block's ({now}): only what comes is credited"
        )
    state.put(ENROLLMENTS, key, Enrollment(sender, payload.every_intervals, payload.min_wh, first - 1))


def validate_mint(payload: MintCredits, params: ChainParams) -> None:
    if len(payload.signatures) > MAX_MEMBERS:
        raise MalformedTransaction(f"at most {MAX_MEMBERS} signatures")


def apply_mint(state: StateView, env: BlockEnv, sender: Address, payload: MintCredits) -> None:
    controller = _controller(state, payload.controller)
    key = payload.controller + payload.meter
    enrollment = state.get(ENROLLMENTS, key)
    if enrollment is None:
        raise NotEnrolled(f"meter {address_to_text(payload.meter)} is not enrolled with {controller.name}")
    act = replace(payload, signatures=())
    members, threshold = controller.members, controller.threshold
    check_consortium(
        env.chain_id, act, members, threshold, payload.signatures, f"minting by {controller.name}"
    )
    first, through = enrollment.minted_through + 1, payload.through
    span = through - enrollment.minted_through
    if (
        through >= interval_of(env.timestamp)
        or span < enrollment.every_intervals
        or span > MAX_SPAN_INTERVALS
    ):
        raise MintTooEarly(
            f"a mint covers {enrollment.every_intervals} to {MAX_SPAN_INTERVALS} ended intervals after "
            f"interval {enrollment.minted_through}; through {through} does not"
        )
    readings = _readings(state, payload.meter, first, through, skipped=True)
    wh = sum(reading.exported_wh - reading.sold_wh for _, reading in readings)
    if wh < enrollment.min_wh and span < MAX_SPAN_INTERVALS:  # (a week's mint is taken: none is stuck)
        raise BelowMinimumMint(
            f"{wh} Wh exported and not paid for otherwise in intervals {first}-{through}; the producer's "
            f"minimum is {enrollment.min_wh}"
        )
    for reading_at, reading in readings:  # (the Wh is paid once: not sold, nor minted again elsewhere)
        if reading.sold_wh < reading.exported_wh:
            state.put(READINGS, reading_at, replace(reading, sold_wh=reading.exported_wh))
    state.put(
        ENROLLMENTS, key, replace(enrollment, minted_through=through, minted_wh=enrollment.minted_wh + wh)
    )
    state.put(CONTROLLERS, payload.controller, replace(controller, minted_wh=controller.minted_wh + wh))
    _set_credits(
        state,
        payload.controller,
        enrollment.owner,
        credits_of(state, payload.controller, enrollment.owner) + wh,
    )


def _readings(
    state: StateView, meter: bytes, first: int, last: int, *, skipped: bool = False
) -> list[tuple[bytes, ReadingRecord]]:
    """The meter's readings of intervals ``first`` to ``last`` (each one's key and record), every
    one on chain (``ReadingsMissing`` otherwise). With ``skipped``, an interval with no reading
    below the meter's latest reading is passed over: a meter's readings are recorded in order,
    so that one can never come (withheld, or the meter was offline), and a mint that had to
    cover it would never be taken (it counts as nothing exported)."""
    record = state.get(METERS, meter) if skipped else None
    latest = record.last_interval if record is not None and record.has_reading else -1
    found = []
    for interval in range(first, last + 1):
        key = reading_key(meter, interval)
        reading = state.get(READINGS, key)
        if reading is None:
            if interval < latest:
                continue
            raise ReadingsMissing(
                f"meter {address_to_text(meter)} has no reading on chain for interval {interval}"
            )
        found.append((key, reading))
    return found


def validate_transfer_credits(payload: TransferCredits, params: ChainParams) -> None:
    if payload.credits < 1:
        raise MalformedTransaction("a transfer moves at least 1 credit")


def apply_transfer_credits(
    state: StateView, env: BlockEnv, sender: Address, payload: TransferCredits
) -> None:
    cid = payload.controller
    _controller(state, cid)
    held = credits_of(state, cid, sender)
    if held < payload.credits:
        raise InsufficientCredits(f"{address_to_text(sender)} holds {held} credits, not {payload.credits}")
    _set_credits(state, cid, sender, held - payload.credits)
    _set_credits(state, cid, payload.to, credits_of(state, cid, payload.to) + payload.credits)


def validate_redeem(payload: RedeemCredits, params: ChainParams) -> None:
    if payload.credits < 1 or not 1 <= payload.within_intervals <= MAX_SPAN_INTERVALS:
        raise MalformedTransaction(
            f"a redemption hands back at least 1 credit, within 1 to {MAX_SPAN_INTERVALS} intervals"
        )


def apply_redeem(state: StateView, env: BlockEnv, sender: Address, payload: RedeemCredits) -> None:
    cid = payload.controller
    controller = _controller(state, cid)
    _require_own_meter(state, payload.meter, sender)
    held = credits_of(state, cid, sender)
    if held < payload.credits:
        raise InsufficientCredits(f"{address_to_text(sender)} holds {held} credits, not {payload.credits}")
    per_interval = -(-payload.credits // payload.within_intervals)
    refuse_over_cap(state, payload.meter, per_interval, inject=False, what="the redemption's release")
    open_one = state.get(OPEN_REDEMPTIONS, payload.meter)
    now = interval_of(env.timestamp)
    if open_one is not None and now < open_one.due_interval:  # (the windows would overlap)
        raise MeterRedemptionOpen(
            f"meter {address_to_text(payload.meter)} has redemption {open_one.redemption.hex()[:16]} open "
            f"to interval {open_one.due_interval} (one import would count for both): close it first, or "
            "wait for its window to end"
        )
    _set_credits(state, cid, sender, held - payload.credits)
    state.put(CONTROLLERS, cid, replace(controller, redeemed_wh=controller.redeemed_wh + payload.credits))
    first = interval_of(env.timestamp) + 1
    redemption = Redemption(
        sender, payload.meter, payload.credits, first, first + payload.within_intervals - 1
    )
    state.put(REDEMPTIONS, cid + env.txid, redemption)
    state.put(OPEN_REDEMPTIONS, payload.meter, MeterRedemption(cid, env.txid, redemption.due_interval))


def apply_close_redemption(
    state: StateView, env: BlockEnv, sender: Address, payload: CloseRedemption
) -> None:
    cid = payload.controller
    controller = _controller(state, cid)
    key = cid + payload.redemption
    redemption = state.get(REDEMPTIONS, key)
    if redemption is None or redemption.status != OPEN:
        raise UnknownRedemption(f"no open redemption {payload.redemption.hex()[:16]} at {controller.name}")
    now = interval_of(env.timestamp)
    last = min(redemption.due_interval, now - 1)  # (intervals that have ended)
    released = 0
    for interval in range(redemption.first_interval, last + 1):
        reading = state.get(READINGS, reading_key(redemption.meter, interval))
        released += 0 if reading is None else reading.imported_wh
        if released >= redemption.wh:
            state.put(REDEMPTIONS, key, replace(redemption, status=DISCHARGED))
            _closed_on_meter(state, redemption.meter, payload.redemption)
            return
    if now <= redemption.due_interval:
        raise RedemptionOpen(
            f"{released} of {redemption.wh} Wh released so far; the window runs to interval "
            f"{redemption.due_interval}"
        )
    window = (redemption.first_interval, redemption.due_interval)
    # (ReadingsMissing while a reading of the window may still come)
    found = _readings(state, redemption.meter, *window, skipped=True)
    if len(found) < redemption.due_interval - redemption.first_interval + 1:
        # (a reading withheld, or the meter offline: the release cannot be judged, and the
        # record would stay open for ever)
        state.put(REDEMPTIONS, key, replace(redemption, status=LAPSED))
        _closed_on_meter(state, redemption.meter, payload.redemption)
        return
    state.put(REDEMPTIONS, key, replace(redemption, status=DEFAULTED))
    _closed_on_meter(state, redemption.meter, payload.redemption)
    state.put(CONTROLLERS, cid, replace(controller, defaults=controller.defaults + 1))


def _closed_on_meter(state: StateView, meter: bytes, redemption: bytes) -> None:
    """The meter's open-redemption entry goes with its redemption (not a later one's, opened
    once this one's window was over)."""
    entry = state.get(OPEN_REDEMPTIONS, meter)
    if entry is not None and entry.redemption == redemption:
        state.put(OPEN_REDEMPTIONS, meter, None)


MAX_ISLAND_NODES = 64
MIN_CAP_W = -(-3_600_000 // INTERVAL_MS)
"""The smallest cap above 0 W that allows a Wh an interval [W] (1 to 3 W allow none)."""
U63_MAX = 2**63 - 1


def island_problem(gateway: Address, nodes: tuple[IslandNode, ...]) -> str | None:
    """What makes an island of ``nodes`` behind ``gateway`` one the chain refuses (None:
    nothing): what ``validate_register_island`` checks of it, and what a meter's owner checks
    before consenting (``gridnet tx consent-island``)."""
    meters = [n.meter for n in nodes]
    if not 1 <= len(meters) <= MAX_ISLAND_NODES or meters != sorted(set(meters)):
        return f"an island lists 1 to {MAX_ISLAND_NODES} node meters, ordered, each once"
    if gateway in meters:
        return "the gateway's meter is not one of the island's nodes"
    if any(n.inject_w == 0 and n.withdraw_w == 0 for n in nodes):
        return "an island node may inject or withdraw something"
    for n in nodes:  # (a cap that allows nothing an interval is 0 W, and says so)
        for watts in (n.inject_w, n.withdraw_w):
            if not 0 <= watts <= U63_MAX:
                return f"node {address_to_text(n.meter)}: a cap is 0 to {U63_MAX} W"
            if cap_wh(watts) == 0 < watts:
                return (
                    f"node {address_to_text(n.meter)}: a cap of {watts} W allows 0 Wh an interval; give 0 W "
                    f"or at least {MIN_CAP_W} W"
                )
    island = Island(gateway, nodes)
    if max(island.absorb_w, island.supply_w) > U63_MAX:  # (the gateway's caps are their sums)
        return f"the nodes' caps add up to more than {U63_MAX} W"
    return None


def validate_register_island(payload: RegisterIsland, params: ChainParams) -> None:
    if (problem := island_problem(payload.gateway, payload.nodes)) is not None:
        raise MalformedTransaction(problem)
    if len(payload.signatures) > MAX_MEMBERS:
        raise MalformedTransaction(f"at most {MAX_MEMBERS} signatures")
    meters = len(payload.nodes) + 1
    if len(payload.consents) != meters:
        raise MalformedTransaction(
            f"{len(payload.consents)} owners' consents for {meters} meters: one for the gateway, "
            "then one for each node"
        )


def apply_register_island(state: StateView, env: BlockEnv, sender: Address, payload: RegisterIsland) -> None:
    controller = _controller(state, payload.controller)
    if state.get(ISLANDS, payload.controller) is not None:
        raise IslandExists(f"{controller.name} runs an island already")
    consents = island_consents(payload.controller, payload.gateway, payload.nodes)
    for consent, signed in zip(consents, payload.consents, strict=True):
        meter = consent.meter
        record = state.get(METERS, meter)
        if record is None or record.revoked:
            raise UnknownMeter(f"meter {address_to_text(meter)} is not registered (or revoked)")
        if state.get(ISLAND_MEMBERS, meter) is not None:
            raise IslandExists(f"meter {address_to_text(meter)} is in an island already")
        if address_from_public_key(signed.key) != record.owner:
            raise IslandConsentMissing(
                f"meter {address_to_text(meter)}: its consent is not signed by its owner "
                f"{address_to_text(record.owner)}"
            )
    # The signatures last (the costly checks).
    act = replace(payload, signatures=(), consents=())
    members, threshold = controller.members, controller.threshold
    check_consortium(env.chain_id, act, members, threshold, payload.signatures, f"{controller.name}'s island")
    for consent, signed in zip(consents, payload.consents, strict=True):
        if not verify_island_consent(env.chain_id, consent, signed):
            role = "gateway" if consent.meter == payload.gateway else "node"
            raise IslandConsentMissing(
                f"meter {address_to_text(consent.meter)}: its owner's signature is not over this island's "
                f"consent (to {controller.name}'s island as its {role}, injecting up to {consent.inject_w} W "
                f"and withdrawing up to {consent.withdraw_w} W)"
            )
    island = Island(payload.gateway, payload.nodes)
    state.put(ISLANDS, payload.controller, island)
    for n in payload.nodes:
        state.put(ISLAND_MEMBERS, n.meter, IslandMember(payload.controller, n.inject_w, n.withdraw_w))
    # The gateway injects into the island what its nodes withdraw, and withdraws from it what
    # they inject (to the grid beyond).
    gateway = IslandMember(payload.controller, island.supply_w, island.absorb_w)
    state.put(ISLAND_MEMBERS, payload.gateway, gateway)


def cap_wh(watts: int) -> int:
    """The energy a power cap allows in one 15-minute interval [Wh]."""
    return watts * INTERVAL_MS // 3_600_000


def refuse_over_cap(state: StateView, meter: bytes, wh_per_interval: int, *, inject: bool, what: str) -> None:
    """Raise ``IslandCapExceeded`` when ``meter`` is an island node (or gateway) whose cap does
    not allow ``wh_per_interval`` fed in (``inject``) or drawn per interval."""
    member = state.get(ISLAND_MEMBERS, meter)
    if member is None:
        return
    watts = member.inject_w if inject else member.withdraw_w
    if wh_per_interval > cap_wh(watts):
        way = "inject" if inject else "withdraw"
        raise IslandCapExceeded(
            f"{what}: {wh_per_interval} Wh an interval; meter {address_to_text(meter)} may {way} at most "
            f"{watts} W ({cap_wh(watts)} Wh an interval) in its island"
        )


def _no_check(payload: object, params: ChainParams) -> None:
    """Nothing to check without the state."""


REGISTER_CONTROLLER_RULES = TxRules(
    RegisterController, validate_register_controller, apply_register_controller
)
ENROLL_RULES = TxRules(EnrollProducer, validate_enroll, apply_enroll)
MINT_RULES = TxRules(MintCredits, validate_mint, apply_mint)
TRANSFER_CREDITS_RULES = TxRules(TransferCredits, validate_transfer_credits, apply_transfer_credits)
REDEEM_RULES = TxRules(RedeemCredits, validate_redeem, apply_redeem)
CLOSE_REDEMPTION_RULES = TxRules(CloseRedemption, _no_check, apply_close_redemption)
REGISTER_ISLAND_RULES = TxRules(RegisterIsland, validate_register_island, apply_register_island)
