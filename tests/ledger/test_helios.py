"""Helios energy credits (``ledger/txs/helios.py``): a consortium controller mints credits for
the energy a meter's on-chain readings show injected; each rule broken, its rejection named;
and a property: over random days the credits minted equal the energy injected."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import (
    BlockTransactionInvalid,
    InsufficientConsortium,
    InvalidTransaction,
    IslandConsentMissing,
    MalformedTransaction,
    ReadingsMissing,
)
from gridnet.ledger.chain import AddStatus, Chain
from gridnet.ledger.params import MARKET_ON_CHAIN
from gridnet.ledger.registry import Payload
from gridnet.ledger.state import StateView
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.transition import apply_transaction, validate_transaction
from gridnet.ledger.txs.auction import AUCTIONS, PlaceOrder, auction_key
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.base import BlockEnv
from gridnet.ledger.txs.helios import (
    CONTROLLERS,
    DEFAULTED,
    DISCHARGED,
    ENROLLMENTS,
    ISLAND_MEMBERS,
    ISLANDS,
    LAPSED,
    MAX_SPAN_INTERVALS,
    OPEN,
    OPEN_REDEMPTIONS,
    REDEMPTIONS,
    CloseRedemption,
    EnrollProducer,
    IslandNode,
    MemberSignature,
    MintCredits,
    RedeemCredits,
    RegisterController,
    RegisterIsland,
    TransferCredits,
    controller_id,
    credits_of,
    island_consents,
    sign_as_member,
)
from gridnet.ledger.txs.meter import SubmitReadings, registration
from gridnet.market.orders import Side
from gridnet.meter.certificate import issue_certificate
from gridnet.meter.reading import Reading, sign_reading
from gridnet.meter.telemetry import SimulatedMeter
from gridnet.security.roles import Role
from gridnet.units import INTERVAL_MS, interval_of
from tests.helpers import (
    GENESIS_TIME,
    extend,
    new_chain,
    next_block,
    register_identity,
    sign,
    test_keys,
    test_params,
)
from tests.ledger.forge import forge_block
from tests.ledger.vectors import record_rejection, record_valid, snapshot

MAKER, OWNER, COLLECTOR, BUYER, STRANGER = test_keys(5)
METER_KEY = PrivateKey.from_label("helios-meter")
BUYER_METER_KEY = PrivateKey.from_label("helios-buyer-meter")
MEMBERS = sorted((PrivateKey.from_label(f"neighbour-{i}") for i in range(3)), key=lambda k: k.public_key)
NAME = "Island"


def controller_named(name: str, registrant: PrivateKey | None = None) -> bytes:
    """The id of the controller ``name`` that ``registrant`` (default: OWNER) registers."""
    return controller_id((registrant or OWNER).public_key, name)


CID = controller_named(NAME)
START = interval_of(GENESIS_TIME) + 4  # the first interval the tests meter


def at(interval: int, offset_s: int = 0) -> int:
    return interval * INTERVAL_MS + 1_000 + offset_s * 1_000


class Helios:
    """A chain with a manufacturer, two owners with a meter each, and a controller."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.nonces = {k.address: 0 for k in test_keys(5)}
        self.meter = SimulatedMeter(METER_KEY)
        self.buyer_meter = SimulatedMeter(BUYER_METER_KEY)
        self.clock = GENESIS_TIME

    def tx(self, key: PrivateKey, payload: Payload) -> Transaction:
        tx = sign(self.chain, key, payload, self.nonces[key.address])
        self.nonces[key.address] += 1
        return tx

    def timestamp(self, interval: int | None) -> int:
        """The next block's timestamp: a second after the last, or ``interval``'s start if later."""
        return max(self.clock + 1_000, at(interval) if interval is not None else 0)

    def mine(self, *txs: Transaction, interval: int | None = None) -> None:
        ts = self.timestamp(interval)
        self.clock = ts
        extend(self.chain, list(txs), timestamp=ts)

    def mine_vector(
        self, name: str, description: str, *txs: Transaction, interval: int | None = None
    ) -> None:
        """``mine``, and record the block as the consensus vector ``name`` (tests/vectors)."""
        pre = snapshot(self.chain)
        ts = self.timestamp(interval)
        block = next_block(self.chain, txs, timestamp=ts)
        assert self.chain.add_block(block, now=ts).status is AddStatus.EXTENDED
        self.clock = ts
        record_valid(name, description, pre, block, ts, self.chain)

    def refuse_vector(
        self,
        name: str,
        description: str,
        key: PrivateKey,
        payload: Payload,
        error: type[InvalidTransaction],
        interval: int | None = None,
    ) -> None:
        """A block at ``interval`` holding ``payload`` (signed by ``key``) is refused with
        ``error``, and recorded as the consensus vector ``name``. The block is forged with the
        transaction in it (the block builder would leave it out) and leaves the chain as it was."""
        pre = snapshot(self.chain)
        ts = self.timestamp(interval)
        tx = sign(self.chain, key, payload, self.nonces[key.address])
        block = forge_block(self.chain, [tx], timestamp=ts)
        head = self.chain.head.hash
        with pytest.raises(BlockTransactionInvalid) as info:
            self.chain.add_block(block, now=ts)
        assert type(info.value.error) is error and info.value.index == 1
        assert self.chain.head.hash == head
        record_rejection(name, description, pre, block, ts, info.value)

    def refused(self, key: PrivateKey, payload: Payload, interval: int | None = None) -> str:
        """The rule a block at ``interval`` (default: the head's) refuses ``payload`` with."""
        tx = sign(self.chain, key, payload, self.nonces[key.address])
        ts = self.timestamp(interval)
        template = self.chain.build_block(
            PrivateKey.from_label("test-miner").address,
            [validate_transaction(tx, self.chain.params, self.chain.chain_id)],
            now=ts,
            timestamp=ts,
        )
        assert template.rejected, "accepted"
        return template.rejected[0][1].rule

    def signed_by(
        self, act: MintCredits | RegisterController, keys: list[PrivateKey], registrant: PrivateKey = OWNER
    ) -> Payload:
        """``act`` signed by ``keys``; a registration, for ``registrant`` to send."""
        sent_by = registrant.public_key if isinstance(act, RegisterController) else None
        sigs = tuple(sign_as_member(k, self.chain.chain_id, act, registrant=sent_by) for k in keys)
        return msgspec.structs.replace(act, signatures=sigs)

    def mint(self, through: int, keys: list[PrivateKey] = MEMBERS[:2]) -> Payload:
        return self.signed_by(MintCredits(CID, METER_KEY.address, through, ()), keys)

    def readings(self, meter: SimulatedMeter, first: int, energy: list[tuple[int, int]]) -> None:
        batch = tuple(meter.read(first + i, exp, imp) for i, (exp, imp) in enumerate(energy))
        self.mine(self.tx(COLLECTOR, SubmitReadings(batch)), interval=first + len(energy))


def cert(meter: PrivateKey) -> object:
    return issue_certificate(MAKER, meter.public_key, vendor="Sun", model="H1", firmware="1", serial="1")


def two_meters(tmp_path: Path, area: str = "island", **params: object) -> Helios:
    """A chain (``params`` changed) where OWNER and BUYER have identities and a meter each in
    ``area``, certified by MAKER (a manufacturer authority)."""
    w = Helios(new_chain(tmp_path / "c", test_params(test_keys(5), **params)))
    w.mine(*(register_identity(w.chain, k) for k in (MAKER, OWNER, BUYER)))
    for k in (MAKER, OWNER, BUYER):
        w.nonces[k.address] = 1
    w.mine(w.tx(MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Sun Meters")))
    w.mine(
        w.tx(OWNER, registration(METER_KEY, cert(METER_KEY), area, OWNER.address, w.chain.chain_id)),  # type: ignore[arg-type]
        w.tx(
            BUYER, registration(BUYER_METER_KEY, cert(BUYER_METER_KEY), area, BUYER.address, w.chain.chain_id)
        ),  # type: ignore[arg-type]
    )
    return w


@pytest.fixture
def h(tmp_path: Path) -> Helios:
    return with_controller(two_meters(tmp_path))


def with_controller(w: Helios) -> Helios:
    """``w`` with the controller NAME of MEMBERS (two of them sign), OWNER's meter enrolled."""
    members = tuple(k.public_key for k in MEMBERS)
    w.mine(w.tx(OWNER, w.signed_by(RegisterController(NAME, members, 2, ()), MEMBERS[:2])))
    w.mine(w.tx(OWNER, EnrollProducer(CID, METER_KEY.address)), interval=START)
    return w


# --- the controller --------------------------------------------------------------------------


def test_a_controller_is_registered_by_its_consortium(h: Helios) -> None:
    found = h.chain.view().get(CONTROLLERS, CID)
    assert found is not None and found.threshold == 2 and found.supply == 0
    members = tuple(k.public_key for k in MEMBERS)
    other = RegisterController("Other", members, 2, ())
    assert h.refused(OWNER, h.signed_by(other, MEMBERS[:1])) == "InsufficientConsortium"
    forged = h.signed_by(other, [STRANGER, MEMBERS[0]])
    assert h.refused(OWNER, forged) == "InsufficientConsortium"
    again = h.signed_by(RegisterController(NAME, members, 2, ()), MEMBERS)
    assert h.refused(OWNER, again) == "ControllerExists"
    with pytest.raises(MalformedTransaction):
        validate_transaction(
            sign(h.chain, OWNER, RegisterController("X", members, 4, ()), 0), h.chain.params, h.chain.chain_id
        )


def test_a_registration_copied_by_another_key_is_refused_and_takes_nothing(tmp_path: Path) -> None:
    """A controller's id was the hash of its name alone: a stranger who saw the owner's
    RegisterController pending sent a copy first, and the owner's was refused as
    ControllerExists, the name blocked for good. Each registrant's names are its own, and the
    members sign a registration for the key that sends it: a copy carries no valid signature
    (it made a look-alike controller, the same name and members, under the copier's key).
    The members can still form a group of the same name under another registrant, who asks
    them: its own id."""
    w = two_meters(tmp_path)
    act = w.signed_by(RegisterController(NAME, tuple(k.public_key for k in MEMBERS), 2, ()), MEMBERS[:2])
    w.refuse_vector(
        "helios_controller_registration_copied_by_another_key",
        "a stranger sends a copy of the owner's RegisterController: its members signed it for the "
        "owner's key, so no signature holds for the stranger's",
        STRANGER,
        act,
        InsufficientConsortium,
    )
    theirs = controller_named(NAME, STRANGER)
    members = tuple(k.public_key for k in MEMBERS)
    asked = w.signed_by(RegisterController(NAME, members, 2, ()), MEMBERS[:2], STRANGER)
    w.mine(w.tx(STRANGER, asked), w.tx(OWNER, act))
    view = w.chain.view()
    assert theirs != CID and None not in (view.get(CONTROLLERS, CID), view.get(CONTROLLERS, theirs))
    w.mine(w.tx(OWNER, EnrollProducer(CID, METER_KEY.address)), interval=START)
    view = w.chain.view()
    assert view.get(ENROLLMENTS, CID + METER_KEY.address) is not None
    assert view.get(ENROLLMENTS, theirs + METER_KEY.address) is None
    assert w.refused(STRANGER, asked) == "ControllerExists"  # (a registrant's name is taken once)


def test_enrollment_rules(h: Helios) -> None:
    record = h.chain.view().get(ENROLLMENTS, CID + METER_KEY.address)
    assert record is not None and record.every_intervals == 4 and record.minted_through == START - 1
    assert h.refused(OWNER, EnrollProducer(CID, METER_KEY.address)) == "ProducerEnrolled"
    assert h.refused(OWNER, EnrollProducer(CID, BUYER_METER_KEY.address)) == "MeterNotOwned"
    assert h.refused(OWNER, EnrollProducer(CID, STRANGER.address)) == "UnknownMeter"
    assert (
        h.refused(BUYER, EnrollProducer(controller_named("nowhere"), BUYER_METER_KEY.address))
        == "UnknownController"
    )
    with pytest.raises(MalformedTransaction):
        validate_transaction(
            sign(h.chain, BUYER, EnrollProducer(CID, BUYER_METER_KEY.address, 1, 0), 0),
            h.chain.params,
            h.chain.chain_id,
        )


# --- minting ---------------------------------------------------------------------------------


def test_the_controller_mints_what_the_readings_show_injected(h: Helios) -> None:
    h.readings(h.meter, START, [(100, 0), (250, 5), (0, 40), (650, 0)])
    h.mine(h.tx(COLLECTOR, h.mint(START + 3)))
    view = h.chain.view()
    assert credits_of(view, CID, OWNER.address) == 1_000
    controller = view.get(CONTROLLERS, CID)
    assert controller is not None and controller.supply == controller.minted_wh == 1_000
    # The same intervals are never minted twice.
    assert h.refused(COLLECTOR, h.mint(START + 3)) == "MintTooEarly"


def test_mint_rules(h: Helios) -> None:
    h.readings(h.meter, START, [(100, 0), (100, 0)])
    assert h.refused(COLLECTOR, h.mint(START + 1)) == "MintTooEarly"  # hourly: four intervals
    # START + 2 and START + 3 have no reading yet (they may still come): no mint through them.
    assert h.refused(COLLECTOR, h.mint(START + 3), interval=START + 5) == "ReadingsMissing"
    assert h.refused(COLLECTOR, h.mint(START + 8), interval=START + 6) == "MintTooEarly"  # not ended
    assert h.refused(COLLECTOR, h.mint(START + 3, MEMBERS[:1])) == "InsufficientConsortium"
    stranger_signed = h.mint(START + 3, [MEMBERS[0], STRANGER])
    assert h.refused(COLLECTOR, stranger_signed) == "InsufficientConsortium"
    other = MintCredits(CID, BUYER_METER_KEY.address, START + 3, ())
    assert h.refused(COLLECTOR, h.signed_by(other, MEMBERS)) == "NotEnrolled"


def test_a_reading_that_can_never_come_is_passed_over_by_the_mint(h: Helios) -> None:
    """A meter's readings are recorded in order: once START + 1 is on chain, START's (withheld
    by a collector, or never sent by a meter offline) can never be. Every mint had to cover it
    (ReadingsMissing) and the enrollment could not be made again (ProducerEnrolled): the
    producer was never credited again. The mint now counts it as nothing exported."""
    withheld = h.meter.read(START, 500, 0)
    h.readings(h.meter, START + 1, [(500, 0)] * 3)
    assert h.refused(COLLECTOR, SubmitReadings((withheld,))) == "ReadingOutOfOrder"
    h.mine(h.tx(COLLECTOR, h.mint(START + 3)))
    view = h.chain.view()
    assert credits_of(view, CID, OWNER.address) == 1_500
    enrollment = view.get(ENROLLMENTS, CID + METER_KEY.address)
    assert enrollment is not None and enrollment.minted_through == START + 3


def test_a_mint_below_the_producers_minimum_is_refused(h: Helios) -> None:
    h.mine(h.tx(BUYER, EnrollProducer(CID, BUYER_METER_KEY.address, 2, 500)), interval=START + 10)
    h.readings(h.buyer_meter, START + 10, [(200, 0), (200, 0)])
    act = MintCredits(CID, BUYER_METER_KEY.address, START + 11, ())
    assert h.refused(COLLECTOR, h.signed_by(act, MEMBERS)) == "BelowMinimumMint"


def test_a_mint_past_what_the_ledgers_counters_hold_is_refused(h: Helios) -> None:
    """Two meters that each injected 2^63 - 1 Wh (one reading each: the most a counter holds)
    minted 2^64 - 2 credits in all: stored, the controller's supply made it unreadable (and
    past 2^64, every miner's template failed to encode). The second mint is refused."""
    top = 2**63 - 1
    h.mine(h.tx(BUYER, EnrollProducer(CID, BUYER_METER_KEY.address, 2, 1)), interval=START + 10)

    def injected(meter: PrivateKey, first: int, count: int) -> None:
        batch = tuple(
            sign_reading(meter, Reading(meter.address, first + i, top if i == 0 else 0, 0, top, 0, "1"))
            for i in range(count)
        )
        h.mine(h.tx(COLLECTOR, SubmitReadings(batch)), interval=first + count)

    injected(METER_KEY, START, 4)
    h.mine(h.tx(COLLECTOR, h.mint(START + 3)))
    assert credits_of(h.chain.view(), CID, OWNER.address) == top
    injected(BUYER_METER_KEY, START + 10, 2)
    act = MintCredits(CID, BUYER_METER_KEY.address, START + 11, ())
    assert h.refused(COLLECTOR, h.signed_by(act, MEMBERS)) == "StateOutOfRange"
    assert credits_of(h.chain.view(), CID, BUYER.address) == 0


# --- transfers and redemptions ---------------------------------------------------------------


def test_credits_move_and_are_redeemed_for_energy_the_meter_then_shows(h: Helios) -> None:
    h.readings(h.meter, START, [(500, 0)] * 4)
    h.mine(h.tx(COLLECTOR, h.mint(START + 3)))
    assert h.refused(OWNER, TransferCredits(CID, BUYER.address, 2_001)) == "InsufficientCredits"
    h.mine(h.tx(OWNER, TransferCredits(CID, BUYER.address, 800)))
    view = h.chain.view()
    assert (credits_of(view, CID, OWNER.address), credits_of(view, CID, BUYER.address)) == (1_200, 800)
    assert h.refused(BUYER, RedeemCredits(CID, 801, BUYER_METER_KEY.address, 4)) == "InsufficientCredits"
    assert h.refused(BUYER, RedeemCredits(CID, 100, METER_KEY.address, 4)) == "MeterNotOwned"
    redeem = h.tx(BUYER, RedeemCredits(CID, 600, BUYER_METER_KEY.address, 4))
    h.mine(redeem, interval=START + 5)
    controller = h.chain.view().get(CONTROLLERS, CID)
    assert controller is not None and controller.supply == 1_400 and controller.redeemed_wh == 600
    rid = redeem_id(redeem)
    first = START + 6
    h.readings(h.buyer_meter, first, [(0, 250)])
    assert h.refused(STRANGER, CloseRedemption(CID, rid)) == "RedemptionOpen"  # 250 of 600, window open
    h.readings(h.buyer_meter, first + 1, [(0, 400)])
    h.mine(h.tx(COLLECTOR, CloseRedemption(CID, rid)))
    record = h.chain.view().get(REDEMPTIONS, CID + rid)
    assert record is not None and record.status == DISCHARGED
    assert h.refused(COLLECTOR, CloseRedemption(CID, rid)) == "UnknownRedemption"


def test_a_controller_that_does_not_release_in_time_is_in_default(h: Helios) -> None:
    h.readings(h.meter, START, [(500, 0)] * 4)
    h.mine(h.tx(COLLECTOR, h.mint(START + 3)))
    redeem = h.tx(OWNER, RedeemCredits(CID, 1_000, METER_KEY.address, 2))
    h.mine(redeem, interval=START + 5)
    rid = redeem_id(redeem)
    h.readings(h.meter, START + 4, [(0, 0), (0, 0), (0, 300)])  # START + 6: 300 Wh of the 1,000
    assert h.refused(COLLECTOR, CloseRedemption(CID, rid), interval=START + 9) == "ReadingsMissing"
    h.readings(h.meter, START + 7, [(0, 100)])
    h.mine(h.tx(COLLECTOR, CloseRedemption(CID, rid)), interval=START + 9)
    view = h.chain.view()
    record, controller = view.get(REDEMPTIONS, CID + rid), view.get(CONTROLLERS, CID)
    assert record is not None and record.status == DEFAULTED
    assert controller is not None and controller.defaults == 1


def test_a_redemption_whose_reading_never_comes_lapses_blaming_no_one(h: Helios) -> None:
    """A reading of the window withheld (or the meter offline) leaves the release unknown: the
    redemption could be neither discharged nor defaulted, and stayed open in the record for
    ever. Once the meter has reported a later interval the missing one can never come: closing
    then records it as lapsed, the controller's defaults unchanged; before that it may still
    come (``ReadingsMissing``)."""
    h.readings(h.meter, START, [(500, 0)] * 4)
    h.mine(h.tx(COLLECTOR, h.mint(START + 3)))
    redeem = h.tx(OWNER, RedeemCredits(CID, 1_000, METER_KEY.address, 2))
    h.mine(redeem, interval=START + 5)  # (its window: START + 6 and START + 7)
    rid = redeem_id(redeem)
    h.readings(h.meter, START + 4, [(0, 0), (0, 0), (0, 300)])  # START + 7 not (yet) reported
    h.refuse_vector(
        "helios_redemption_missing_a_reading_that_may_come",
        "a redemption whose window is over, a reading of it not on chain but the meter's latest: "
        "it may still come, so the redemption is neither defaulted nor lapsed",
        COLLECTOR,
        CloseRedemption(CID, rid),
        ReadingsMissing,
        interval=START + 9,
    )
    # (START + 8's reading across the gap, once START + 7's has had its grace: it can never come)
    h.mine(h.tx(COLLECTOR, SubmitReadings((h.meter.read(START + 8, 0, 0),))), interval=START + 12)
    h.mine_vector(
        "helios_redemption_lapses_when_a_reading_never_comes",
        "a redemption whose window is over short of its Wh, a reading of the window never to come "
        "(the meter reported a later interval): closed as lapsed, the controller's defaults unchanged",
        h.tx(COLLECTOR, CloseRedemption(CID, rid)),
        interval=START + 12,
    )
    view = h.chain.view()
    record, controller = view.get(REDEMPTIONS, CID + rid), view.get(CONTROLLERS, CID)
    assert record is not None and record.status == LAPSED
    assert controller is not None and controller.defaults == 0
    assert view.get(OPEN_REDEMPTIONS, METER_KEY.address) is None
    assert h.refused(COLLECTOR, CloseRedemption(CID, rid)) == "UnknownRedemption"


def test_a_redemption_lapses_only_once_its_window_is_over(h: Helios) -> None:
    h.readings(h.meter, START, [(500, 0)] * 4)
    h.mine(h.tx(COLLECTOR, h.mint(START + 3)))
    redeem = h.tx(OWNER, RedeemCredits(CID, 1_000, METER_KEY.address, 8))
    h.mine(redeem, interval=START + 5)  # (its window: START + 6 to START + 13)
    h.readings(h.meter, START + 4, [(0, 0), (0, 0)])
    # (START + 6 skipped: once it has had its grace, START + 7's is taken, and START + 6's can
    # never come)
    h.mine(h.tx(COLLECTOR, SubmitReadings((h.meter.read(START + 7, 0, 100),))), interval=START + 11)
    close = CloseRedemption(CID, redeem_id(redeem))
    assert h.refused(COLLECTOR, close, interval=START + 11) == "RedemptionOpen"


def test_a_meter_has_one_open_redemption_so_one_import_discharges_one(h: Helios) -> None:
    """Two redemptions of 400 on one meter, opened in one block, were both discharged by the
    400 Wh it imported once (each summed the meter's imports over its window): the controller
    escaped the default it owed. A meter now has one open redemption at a time, at any
    controller; once it is closed (discharged or in default) the next may open."""
    h.readings(h.meter, START, [(500, 0)] * 4)
    h.mine(h.tx(COLLECTOR, h.mint(START + 3)))
    h.mine(h.tx(OWNER, TransferCredits(CID, BUYER.address, 800)))
    first = h.tx(BUYER, RedeemCredits(CID, 400, BUYER_METER_KEY.address, 4))
    h.mine(first, interval=START + 5)
    second = RedeemCredits(CID, 400, BUYER_METER_KEY.address, 4)
    assert h.refused(BUYER, second) == "MeterRedemptionOpen"
    h.readings(h.buyer_meter, START + 6, [(0, 400)])
    h.mine(h.tx(COLLECTOR, CloseRedemption(CID, redeem_id(first))))
    again = h.tx(BUYER, second)
    h.mine(again, interval=START + 7)  # (its window starts after the import the first one used)
    record = h.chain.view().get(REDEMPTIONS, CID + redeem_id(again))
    assert record is not None and record.status == OPEN and record.first_interval == START + 8


def test_a_redemption_never_closed_holds_its_meter_only_until_its_window_ends(h: Helios) -> None:
    """One whose readings never all come (a withheld one) cannot be judged: the meter's next
    redemption opens once the first's window is over (the windows cannot overlap), and closing
    the first later leaves the second's entry alone."""
    h.readings(h.meter, START, [(500, 0)] * 4)
    h.mine(h.tx(COLLECTOR, h.mint(START + 3)))
    h.mine(h.tx(OWNER, TransferCredits(CID, BUYER.address, 800)))
    first = h.tx(BUYER, RedeemCredits(CID, 400, BUYER_METER_KEY.address, 4))
    h.mine(first, interval=START + 5)  # (its window: START + 6 to START + 9)
    second = RedeemCredits(CID, 400, BUYER_METER_KEY.address, 4)
    assert h.refused(BUYER, second, interval=START + 8) == "MeterRedemptionOpen"
    later = h.tx(BUYER, second)
    h.mine(later, interval=START + 9)
    entry = h.chain.view().get(OPEN_REDEMPTIONS, BUYER_METER_KEY.address)
    assert entry is not None and entry.redemption == redeem_id(later)
    h.readings(h.buyer_meter, START + 6, [(0, 400)])
    h.mine(h.tx(COLLECTOR, CloseRedemption(CID, redeem_id(first))))
    view = h.chain.view()
    closed = view.get(REDEMPTIONS, CID + redeem_id(first))
    assert closed is not None and closed.status == DISCHARGED
    assert view.get(OPEN_REDEMPTIONS, BUYER_METER_KEY.address) == entry


def redeem_id(tx: Transaction) -> bytes:
    from gridnet.ledger.transactions import tx_id

    return tx_id(tx)


# --- the property ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    exports=st.lists(st.integers(0, 5_000), min_size=8, max_size=96),
    cuts=st.lists(st.integers(1, 96), max_size=12),
)
def test_credits_minted_never_diverge_from_the_energy_injected(
    h: Helios, exports: list[int], cuts: list[int]
) -> None:
    """A random day of readings and random mints (some refused): the credits minted always
    equal what the readings show exported over the minted intervals, and no more."""
    chain = h.chain
    view = StateView(dict(chain.values))
    meter = SimulatedMeter(METER_KEY)
    meter.total_exported_wh = h.meter.total_exported_wh
    meter.total_imported_wh = h.meter.total_imported_wh
    nonces = dict(h.nonces)

    def apply(key: PrivateKey, payload: Payload, interval: int) -> bool:
        tx = sign(chain, key, payload, nonces[key.address])
        env = BlockEnv(chain.params, chain.chain_id, chain.height + 1, bytes(20), at(interval))
        mark = view.checkpoint()
        try:
            apply_transaction(view, env, validate_transaction(tx, chain.params, chain.chain_id))
        except InvalidTransaction:
            view.rollback(mark)
            return False
        nonces[key.address] += 1
        return True

    batch = tuple(meter.read(START + i, e, 0) for i, e in enumerate(exports))
    assert apply(COLLECTOR, SubmitReadings(batch), START + len(exports))
    minted_through = START - 1
    for cut in sorted(set(cuts)):
        through = START + cut - 1
        act = MintCredits(CID, METER_KEY.address, through, ())
        if apply(COLLECTOR, h.signed_by(act, MEMBERS[:2]), START + len(exports)):
            minted_through = through
    expected = sum(exports[: minted_through - START + 1])
    controller = view.get(CONTROLLERS, CID)
    enrollment = view.get(ENROLLMENTS, CID + METER_KEY.address)
    assert controller is not None and enrollment is not None
    assert enrollment.minted_through == minted_through
    assert controller.minted_wh == enrollment.minted_wh == credits_of(view, CID, OWNER.address) == expected


# --- queries: API and CLI --------------------------------------------------------------------


def test_supply_and_balances_are_queryable(h: Helios, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from fastapi.testclient import TestClient

    from gridnet.crypto.address import address_to_text
    from gridnet.node.api import create_app
    from gridnet.node.node import Node

    h.readings(h.meter, START, [(300, 0)] * 4)
    h.mine(h.tx(COLLECTOR, h.mint(START + 3)))
    h.mine(h.tx(OWNER, TransferCredits(CID, BUYER.address, 200)))
    node = Node("n", h.chain)
    with TestClient(create_app(node, clock=lambda: h.clock, broadcast=lambda _out: None)) as client:
        owner = {"registrant": OWNER.public_key.hex()}
        holder = {**owner, "holder": address_to_text(BUYER.address)}
        body = client.get(f"/credits/{NAME}", params=holder).json()
        assert (body["supply"], body["minted_wh"], body["balance"]) == (1_200, 1_200, 200)
        missing = client.get("/credits/nowhere", params=owner)
        assert missing.status_code == 404 and missing.json()["code"] == "NotFound"
        bad = client.get("/credits/nowhere", params={**owner, "holder": "gnbad"})  # (the query first)
        assert bad.status_code == 400 and bad.json()["code"] == "InvalidAddress"
        # The name is the registrant's: under another key's, no controller of that name.
        theirs = client.get(f"/credits/{NAME}", params={"registrant": BUYER.public_key.hex()})
        assert theirs.status_code == 404 and theirs.json()["code"] == "NotFound"
        for bad_key in ({}, {"registrant": "00" * 31}, {"registrant": "zz"}):
            answer = client.get(f"/credits/{NAME}", params=bad_key)
            assert answer.status_code == 400 and "registrant" in answer.json()["message"], answer.json()
    h.chain.close()
    out = subprocess.run(
        [sys.executable, "-m", "gridnet", "chain", "credits", "--data-dir", str(tmp_path / "c"),
         "--controller", NAME, "--registrant", OWNER.public_key.hex(),
         "--holder", address_to_text(OWNER.address), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["balance"] == 1_000 and json.loads(out.stdout)["supply"] == 1_200


def test_an_enrollment_credits_from_a_later_interval_never_an_earlier_one(h: Helios) -> None:
    past = EnrollProducer(CID, BUYER_METER_KEY.address, 4, 1, START - 1)
    assert h.refused(BUYER, past, interval=START + 10) == "MintTooEarly"
    later = EnrollProducer(CID, BUYER_METER_KEY.address, 4, 1, START + 20)
    h.mine(h.tx(BUYER, later), interval=START + 10)
    record = h.chain.view().get(ENROLLMENTS, CID + BUYER_METER_KEY.address)
    assert record is not None and record.minted_through == START + 19


# --- the island --------------------------------------------------------------------------------


GATEWAY_KEY = PrivateKey.from_label("helios-gateway")
OWNERS = {METER_KEY.address: OWNER, BUYER_METER_KEY.address: BUYER, GATEWAY_KEY.address: OWNER}
"""Each island meter's owner (OWNER registers the gateway's meter)."""


def island(h: Helios, keys: list[PrivateKey] = MEMBERS[:2], **changes: object) -> RegisterIsland:
    """The island of OWNER's and BUYER's meters, signed by ``keys`` and by each meter's owner
    (a meter no one here owns, by STRANGER), with ``changes``."""
    nodes = sorted(
        (IslandNode(METER_KEY.address, 130, 500), IslandNode(BUYER_METER_KEY.address, 130, 100)),
        key=lambda n: n.meter,
    )
    act = msgspec.structs.replace(RegisterIsland(CID, GATEWAY_KEY.address, tuple(nodes), (), ()), **changes)
    signed = h.signed_by(act, keys)  # type: ignore[arg-type]
    if "consents" in changes:
        return signed  # type: ignore[return-value]
    return msgspec.structs.replace(signed, consents=consents(h, act))  # type: ignore[return-value]


def consents(h: Helios, act: RegisterIsland) -> tuple[MemberSignature, ...]:
    """Each meter's consent, signed by its owner (STRANGER for a meter nobody here owns)."""
    wanted = island_consents(act.controller, act.gateway, act.nodes)
    return tuple(sign_as_member(OWNERS.get(c.meter, STRANGER), h.chain.chain_id, c) for c in wanted)


def with_gateway(h: Helios) -> None:
    h.mine(
        h.tx(OWNER, registration(GATEWAY_KEY, cert(GATEWAY_KEY), "island", OWNER.address, h.chain.chain_id))
    )  # type: ignore[arg-type]


def test_an_island_caps_what_its_nodes_trade_and_redeem(h: Helios) -> None:
    from gridnet.contracts.channel import ContractTerms, SignedTerms, sign_terms
    from gridnet.ledger.txs.contract import OpenContract

    with_gateway(h)
    assert h.refused(OWNER, island(h, MEMBERS[:1])) == "InsufficientConsortium"
    assert h.refused(OWNER, island(h, gateway=STRANGER.address)) == "UnknownMeter"
    h.mine(h.tx(OWNER, island(h)))
    view = h.chain.view()
    found, gateway = view.get(ISLANDS, CID), view.get(ISLAND_MEMBERS, GATEWAY_KEY.address)
    assert found is not None and (found.absorb_w, found.supply_w) == (260, 600)
    assert gateway is not None and (gateway.inject_w, gateway.withdraw_w) == (600, 260)
    assert h.refused(OWNER, island(h)) == "IslandExists"
    with pytest.raises(MalformedTransaction):
        validate_transaction(
            sign(h.chain, OWNER, island(h, gateway=METER_KEY.address), 0), h.chain.params, h.chain.chain_id
        )

    # A trade: OWNER's node may inject 130 W (32 Wh an interval), BUYER's withdraw 100 W (25 Wh).
    def contract(max_wh: int, intervals: int = 1) -> OpenContract:
        t = ContractTerms(
            h.chain.chain_id, BUYER.address, OWNER.address, BUYER_METER_KEY.address, METER_KEY.address, (),
            100_000, START + 50, START + 49 + intervals, max_wh, 2, 0,
        )  # fmt: skip
        return OpenContract(SignedTerms(t, (sign_terms(t, BUYER), sign_terms(t, OWNER))))

    assert h.refused(BUYER, contract(33)) == "IslandCapExceeded"  # over the seller's injection cap
    assert h.refused(BUYER, contract(52, 2)) == "IslandCapExceeded"  # 26 Wh an interval: over the buyer's
    h.mine(h.tx(BUYER, contract(50, 2)))
    # A redemption: BUYER's node may withdraw 25 Wh an interval.
    h.readings(h.meter, START, [(500, 0)] * 4)
    h.mine(h.tx(COLLECTOR, h.mint(START + 3)))
    h.mine(h.tx(OWNER, TransferCredits(CID, BUYER.address, 1_000)))
    assert h.refused(BUYER, RedeemCredits(CID, 101, BUYER_METER_KEY.address, 4)) == "IslandCapExceeded"
    h.mine(h.tx(BUYER, RedeemCredits(CID, 100, BUYER_METER_KEY.address, 4)))


def test_an_island_caps_the_orders_its_nodes_place_in_an_auction(tmp_path: Path) -> None:
    """An auction's clearing opens a contract per trade, which no cap checked: a node could
    sell or buy past its island's caps there, as it cannot under a contract its parties open.
    An order is now held to the cap like a contract (a trade is at most its order)."""
    h = with_controller(two_meters(tmp_path, market_mode=MARKET_ON_CHAIN))
    with_gateway(h)
    h.mine(h.tx(OWNER, island(h)))
    delivery = interval_of(h.clock) + 8
    # OWNER's node may inject 130 W (32 Wh an interval), BUYER's withdraw 100 W (25 Wh).
    offer, bid = (
        PlaceOrder(Side.OFFER, METER_KEY.address, "island", delivery, 33, 100_000),
        PlaceOrder(Side.BID, BUYER_METER_KEY.address, "island", delivery, 26, 200_000),
    )
    assert h.refused(OWNER, offer) == "IslandCapExceeded"
    assert h.refused(BUYER, bid) == "IslandCapExceeded"
    h.mine(
        h.tx(OWNER, msgspec.structs.replace(offer, wh=32)), h.tx(BUYER, msgspec.structs.replace(bid, wh=25))
    )
    auction = h.chain.view().get(AUCTIONS, auction_key(delivery, "island"))
    assert auction is not None and auction.orders == 2


def test_a_stranger_cannot_put_other_peoples_meters_in_its_island(h: Helios) -> None:
    """Anyone could register a one-member controller and then an island of other people's
    meters with caps of about 0 W: island membership is for good, so those meters could sell
    under no contract and redeem nothing for ever, and their owners could found no island of
    their own. Every meter an island names now needs its owner's consent."""
    squatter = PrivateKey.from_label("squatter-member")
    squat = RegisterController("Squat", (squatter.public_key,), 1, ())
    h.mine(h.tx(STRANGER, h.signed_by(squat, [squatter], STRANGER)))
    nodes = (IslandNode(METER_KEY.address, 0, 4),)  # (1 Wh an interval for OWNER's meter)
    act = RegisterIsland(controller_named("Squat", STRANGER), BUYER_METER_KEY.address, nodes, (), ())
    signed: RegisterIsland = h.signed_by(act, [squatter])  # type: ignore[arg-type,assignment]
    wanted = island_consents(act.controller, act.gateway, act.nodes)
    own = tuple(sign_as_member(STRANGER, h.chain.chain_id, c) for c in wanted)
    h.refuse_vector(
        "helios_island_without_its_owners_consent",
        "a stranger's controller registers an island of other people's meters, the consents signed "
        "by the stranger's own key: refused",
        STRANGER,
        msgspec.structs.replace(signed, consents=own),
        IslandConsentMissing,
    )
    # The owners' keys under signatures they never made are no consent either.
    forged = tuple(
        MemberSignature(OWNERS[c.meter].public_key, sign_as_member(STRANGER, h.chain.chain_id, c).signature)
        for c in wanted
    )
    assert h.refused(STRANGER, msgspec.structs.replace(signed, consents=forged)) == "IslandConsentMissing"
    # The red-teamer's caps: 1 W allows 0 Wh an interval.
    tiny = msgspec.structs.replace(signed, nodes=(IslandNode(METER_KEY.address, 0, 1),), consents=own)
    with pytest.raises(MalformedTransaction, match="allows 0 Wh an interval"):
        validate_transaction(sign(h.chain, STRANGER, tiny, 0), h.chain.params, h.chain.chain_id)
    view = h.chain.view()
    assert view.get(ISLAND_MEMBERS, METER_KEY.address) is None
    assert view.get(ISLAND_MEMBERS, BUYER_METER_KEY.address) is None


def test_each_meter_of_an_island_needs_its_owners_consent_to_its_place(h: Helios) -> None:
    """The gateway's owner and each node's sign their meter's consent (controller, gateway,
    meter, caps) on this chain; a consent missing, forged, or given for another meter, other
    caps, another controller or another chain is refused, naming the meter."""
    with_gateway(h)
    good = island(h)
    meters = [GATEWAY_KEY.address, *(n.meter for n in good.nodes)]
    wanted = island_consents(CID, GATEWAY_KEY.address, good.nodes)
    at_meter, at_buyer = meters.index(METER_KEY.address), meters.index(BUYER_METER_KEY.address)

    def refused(i: int, consent: MemberSignature, members: list[PrivateKey] = MEMBERS[:2]) -> str:
        """The rule ``good`` is refused with, ``consent`` in place ``i``, signed by ``members``."""
        given = list(good.consents)
        given[i] = consent
        signatures = island(h, members).signatures
        return h.refused(OWNER, msgspec.structs.replace(good, consents=tuple(given), signatures=signatures))

    chain_id = h.chain.chain_id
    # Missing: BUYER's meter's consent signed by OWNER, not its owner.
    not_owner = sign_as_member(OWNER, chain_id, wanted[at_buyer])
    assert refused(at_buyer, not_owner) == "IslandConsentMissing"
    # Forged: BUYER's key, another key's signature.
    forged = MemberSignature(BUYER.public_key, sign_as_member(STRANGER, chain_id, wanted[at_buyer]).signature)
    assert refused(at_buyer, forged) == "IslandConsentMissing"
    # Another meter's: OWNER's consent for its gateway meter, in its node meter's place.
    assert refused(at_meter, good.consents[0]) == "IslandConsentMissing"
    # Other caps, another controller, another chain.
    node = wanted[at_meter]
    for other, other_chain in (
        (msgspec.structs.replace(node, withdraw_w=node.withdraw_w + 100), chain_id),
        (msgspec.structs.replace(node, controller=controller_named("Other")), chain_id),
        (node, bytes(32)),
    ):
        consent = sign_as_member(OWNER, other_chain, other)
        assert refused(at_meter, consent) == "IslandConsentMissing"
    # The gateway's consent binds its caps: the nodes' sums.
    gateway = msgspec.structs.replace(wanted[0], inject_w=wanted[0].inject_w - 1)
    assert refused(0, sign_as_member(OWNER, chain_id, gateway)) == "IslandConsentMissing"
    # The cheap checks first: a consent by another key before the members' signatures, and
    # those before the owners' signatures.
    assert refused(at_buyer, not_owner, MEMBERS[:1]) == "IslandConsentMissing"
    assert refused(at_buyer, forged, MEMBERS[:1]) == "InsufficientConsortium"
    # One consent for each meter: the gateway's, then each node's.
    for short in ((), good.consents[:-1], (*good.consents, good.consents[0])):
        with pytest.raises(MalformedTransaction, match="one for the gateway"):
            payload = msgspec.structs.replace(good, consents=short)
            validate_transaction(sign(h.chain, OWNER, payload, 0), h.chain.params, h.chain.chain_id)
    h.mine_vector(
        "helios_island_with_its_owners_consents",
        "a controller's island of two meters with their owners' consents and the gateway's owner's "
        "(its caps the nodes' sums), signed by the consortium",
        h.tx(OWNER, good),
    )
    view = h.chain.view()
    found = view.get(ISLANDS, CID)
    assert found is not None and found.nodes == good.nodes
    for meter in meters:
        member = view.get(ISLAND_MEMBERS, meter)
        assert member is not None and member.controller == CID


def test_the_owners_consents_from_the_command_line_found_an_island(h: Helios, tmp_path: Path) -> None:
    """Each owner prints its meter's consent (``gridnet tx consent-island``), and
    ``gridnet tx register-island --consent ...`` finds each meter's among them: the island the
    chain accepts (into the data directory's pending pool, checked as a miner applies it)."""
    import subprocess
    import sys

    from gridnet.crypto.address import address_to_text
    from gridnet.crypto.keys import write_key_file

    with_gateway(h)
    h.chain.close()
    for name, key in (("owner", OWNER), ("buyer", BUYER), *((f"m{i}", k) for i, k in enumerate(MEMBERS))):
        write_key_file(tmp_path / f"{name}.key", key)
    data = str(tmp_path / "c")
    meter, buyer_meter = address_to_text(METER_KEY.address), address_to_text(BUYER_METER_KEY.address)
    island = (
        "--controller", NAME, "--registrant", OWNER.public_key.hex(),
        "--gateway", address_to_text(GATEWAY_KEY.address),
        "--island-node", f"{meter}:130:500", "--island-node", f"{buyer_meter}:130:100",
    )  # fmt: skip

    def gridnet(*args: str) -> str:
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
        command = [sys.executable, "-m", "gridnet", *args]
        out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    owners = (("owner", GATEWAY_KEY), ("owner", METER_KEY), ("buyer", BUYER_METER_KEY))
    consents = [
        gridnet("tx", "consent-island", "--key", f"{who}.key", "--data-dir", data, *island,
                "--meter", address_to_text(m.address))
        for who, m in owners
    ]  # fmt: skip
    out = gridnet(
        "tx", "register-island", "--key", "owner.key", "--data-dir", data, *island, "--member-key", "m0.key",
        "--member-key", "m1.key", *(f"--consent={c}" for c in consents),
    )  # fmt: skip
    assert out.startswith("pending "), out


@pytest.mark.parametrize(
    ("inject_w", "withdraw_w", "refused"),
    [(0, 4, False), (4, 0, False), (0, 1, True), (3, 100, True), (130, 3, True), (2**63 - 1, 0, False)],
)
def test_a_node_cap_that_allows_no_wh_an_interval_is_malformed(
    h: Helios, inject_w: int, withdraw_w: int, refused: bool
) -> None:
    """A cap of 1 to 3 W allows 0 Wh an interval (``cap_wh`` rounds down): it says 0 W, and is
    refused as one that does not; 0 W (none) and 4 W (1 Wh) are caps."""
    nodes = (IslandNode(METER_KEY.address, inject_w, withdraw_w),)
    act = RegisterIsland(CID, GATEWAY_KEY.address, nodes, (), ())
    payload = msgspec.structs.replace(act, consents=consents(h, act))
    tx = sign(h.chain, OWNER, payload, 0)
    if refused:
        with pytest.raises(MalformedTransaction, match="allows 0 Wh an interval"):
            validate_transaction(tx, h.chain.params, h.chain.chain_id)
    else:
        validate_transaction(tx, h.chain.params, h.chain.chain_id)


def test_an_island_whose_caps_add_up_past_what_the_gateway_holds_is_malformed(h: Helios) -> None:
    nodes = sorted(
        (IslandNode(METER_KEY.address, 2**62, 4), IslandNode(BUYER_METER_KEY.address, 2**62, 4)),
        key=lambda n: n.meter,
    )
    act = RegisterIsland(CID, GATEWAY_KEY.address, tuple(nodes), (), ())
    payload = msgspec.structs.replace(act, consents=(consents(h, act)[0],) * 3)
    with pytest.raises(MalformedTransaction, match="caps add up"):
        validate_transaction(sign(h.chain, OWNER, payload, 0), h.chain.params, h.chain.chain_id)


def test_a_wh_is_paid_once_whether_minted_by_any_controller_or_sold(h: Helios) -> None:
    """The meter's exported Wh of an interval is credited once: a mint takes what contracts have
    not paid (and marks it paid), a contract cannot then sell it, and a second controller the
    meter also enrolled with mints none of it (each minted the same 2,500 Wh before)."""
    from gridnet.contracts.channel import (
        ContractState,
        ContractTerms,
        Delivery,
        SignedTerms,
        contract_id,
        sign_state,
        sign_terms,
    )
    from gridnet.ledger.txs.contract import OpenContract, SettleContract
    from gridnet.ledger.txs.meter import READINGS, reading_key

    other = h.signed_by(RegisterController("Other", tuple(k.public_key for k in MEMBERS), 2, ()), MEMBERS[:2])
    h.mine(h.tx(OWNER, other), h.tx(OWNER, EnrollProducer(controller_named("Other"), METER_KEY.address)))
    t = ContractTerms(
        h.chain.chain_id, BUYER.address, OWNER.address, BUYER_METER_KEY.address, METER_KEY.address, (),
        100, START + 1, START + 4, 1_000, 2, 0,
    )  # fmt: skip
    h.mine(h.tx(BUYER, OpenContract(SignedTerms(t, (sign_terms(t, BUYER), sign_terms(t, OWNER))))))
    h.readings(h.meter, START, [(500, 0)] * 5)

    def settle(seq: int, *deliveries: tuple[int, int]) -> SettleContract:
        state = ContractState(contract_id(t), seq, tuple(Delivery(START + i, wh) for i, wh in deliveries))
        return SettleContract(sign_state(state, BUYER))

    h.mine(h.tx(OWNER, settle(1, (1, 200))))
    h.mine(h.tx(COLLECTOR, h.mint(START + 4)))
    view = h.chain.view()
    assert credits_of(view, CID, OWNER.address) == 2_500 - 200  # the 200 Wh sold are not minted
    for i in range(5):
        reading = view.get(READINGS, reading_key(METER_KEY.address, START + i))
        assert reading is not None and reading.sold_wh == reading.exported_wh == 500
    assert h.refused(OWNER, settle(2, (1, 200), (2, 100))) == "DoubleSelling"
    other_mint = MintCredits(controller_named("Other"), METER_KEY.address, START + 4, ())
    second = h.signed_by(other_mint, MEMBERS[:2])
    assert h.refused(COLLECTOR, second) == "BelowMinimumMint"


def test_a_weeks_mint_below_the_minimum_is_taken_so_no_enrollment_is_stuck(h: Helios) -> None:
    """A mint covers at most a week from the last one: when a whole week holds less than the
    producer's minimum unpaid (no sun, its export all sold, or minted by another controller it
    enrolled with), the week's mint is taken, crediting what there is, and the next week can be
    minted (it was BelowMinimumMint below a week and MintTooEarly past it, for ever)."""
    h.readings(h.meter, START, [(0, 0)] * MAX_SPAN_INTERVALS + [(300, 0)] * 4)
    assert h.refused(COLLECTOR, h.mint(START + MAX_SPAN_INTERVALS - 2)) == "BelowMinimumMint"
    assert h.refused(COLLECTOR, h.mint(START + MAX_SPAN_INTERVALS)) == "MintTooEarly"  # over a week
    h.mine(h.tx(COLLECTOR, h.mint(START + MAX_SPAN_INTERVALS - 1)))
    view = h.chain.view()
    enrollment = view.get(ENROLLMENTS, CID + METER_KEY.address)
    assert enrollment is not None and enrollment.minted_through == START + MAX_SPAN_INTERVALS - 1
    assert credits_of(view, CID, OWNER.address) == 0
    h.mine(h.tx(COLLECTOR, h.mint(START + MAX_SPAN_INTERVALS + 3)))
    assert credits_of(h.chain.view(), CID, OWNER.address) == 1_200
