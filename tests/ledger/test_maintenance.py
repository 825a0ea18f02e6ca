"""Maintenance tenders (``ledger/txs/maintenance.py``): within warranty the vendor services the
equipment and the deposit returns; otherwise registered teams (and the vendor) bid, the lowest
price wins, a winner that withdraws forfeits its penalty deposit. Each rule broken, its
rejection named."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

import gridnet.ledger.txs.maintenance as maintenance_rules
from gridnet.encoding import decode_lenient, encode
from gridnet.errors import (
    BidBelowReserve,
    DisputeWindowClosed,
    DisputeWindowOutOfRange,
    EmptyBid,
    EmptyDeposit,
    InvalidTransaction,
    PenaltyOutOfRange,
    ReserveAboveDeposit,
    ServiceTimeOutOfRange,
    UnknownMaintenanceMode,
)
from gridnet.ledger.registry import Payload
from gridnet.ledger.state import DESTROYED, DESTROYED_KEY
from gridnet.ledger.transactions import tx_id
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.maintenance import (
    CREDITS,
    DISPUTE_INTERVALS,
    MAX_DISPUTE_INTERVALS,
    TENDERS,
    AwardTender,
    BidTender,
    ClaimTender,
    CompleteTender,
    DisputeTender,
    Mode,
    OpenTender,
    RegisterEquipment,
    Status,
    Tender,
    WithdrawFromTender,
    equipment_id,
)
from gridnet.security.roles import Role
from gridnet.units import interval_of
from tests.helpers import register_identity, sign
from tests.ledger.test_helios import BUYER, COLLECTOR, MAKER, OWNER, START, STRANGER, Helios, two_meters

TEAM, VENDOR = COLLECTOR, MAKER  # a registered maintenance team; the manufacturer sells the equipment
OLD = equipment_id(VENDOR.address, "INV-1")  # an inverter out of warranty
NEW = equipment_id(VENDOR.address, "INV-2")  # one within it
FILES = b"\x11" * 32
DEPOSIT = 50_000


@pytest.fixture
def h(tmp_path: Path) -> Helios:
    w = two_meters(tmp_path)
    w.mine(register_identity(w.chain, TEAM))
    w.nonces[TEAM.address] = 1
    w.mine(w.tx(TEAM, RegisterAuthority(int(Role.MAINTENANCE), "Fix-It Team")))
    w.mine(
        w.tx(VENDOR, RegisterEquipment("INV-1", OWNER.address, "inverter", START - 1)),
        w.tx(VENDOR, RegisterEquipment("INV-2", OWNER.address, "inverter", START + 500)),
        interval=START,
    )
    return w


def balance(h: Helios, who: bytes) -> int:
    return h.chain.view().account(who).balance


def open_tender(
    h: Helios, equipment: bytes = OLD, bid_until: int = START + 2, **terms: int
) -> tuple[bytes, int]:
    """OWNER's tender (penalty deposits 10 %, 8 intervals to serve, unless ``terms`` say)."""
    act = OpenTender(equipment, DEPOSIT, FILES, Mode.ON_SITE, bid_until, 10, 8)
    tx = h.tx(OWNER, msgspec.structs.replace(act, **terms))
    h.mine(tx)
    return tx_id(tx), tx.fee


def test_equipment_is_registered_by_its_vendor(h: Helios) -> None:
    assert h.refused(OWNER, RegisterEquipment("X", OWNER.address, "pump", START)) == "NotAuthorized"
    assert (
        h.refused(VENDOR, RegisterEquipment("INV-1", OWNER.address, "inverter", START)) == "EquipmentExists"
    )


def test_within_warranty_the_vendor_services_it_and_the_deposit_returns(h: Helios) -> None:
    before = balance(h, OWNER.address)
    tid, fee = open_tender(h, NEW)
    tender = h.chain.view().get(TENDERS, tid)
    assert tender is not None and tender.warranty and tender.status == Status.AGREED
    assert tender.diagnosis_node == VENDOR.address and tender.value == 0 and tender.device_type == "inverter"
    assert h.refused(TEAM, BidTender(tid, 1_000)) == "TenderNotOpen"  # nothing to bid on
    assert h.refused(OWNER, AwardTender(tid)) == "TenderNotOpen"
    assert h.refused(VENDOR, WithdrawFromTender(tid)) == "VendorBoundByWarranty"
    assert h.refused(BUYER, CompleteTender(tid)) == "NotEquipmentOwner"
    complete = h.tx(OWNER, CompleteTender(tid))
    h.mine(complete)
    assert balance(h, OWNER.address) == before - fee - complete.fee  # the deposit came back
    view = h.chain.view()
    assert view.get(TENDERS, tid).status == Status.COMPLETED  # type: ignore[union-attr]
    assert view.get(CREDITS, VENDOR.address).completed == 1  # type: ignore[union-attr]


def test_out_of_warranty_the_lowest_registered_bid_wins(h: Helios) -> None:
    assert h.refused(BUYER, OpenTender(OLD, DEPOSIT, FILES, 1, START + 2, 10, 8)) == "NotEquipmentOwner"
    assert (
        h.refused(OWNER, OpenTender(b"\x01" * 20, DEPOSIT, FILES, 1, START + 2, 10, 8)) == "UnknownEquipment"
    )
    too_late = OpenTender(OLD, DEPOSIT, FILES, 1, START + 1 + 7 * 96, 10, 8)
    assert h.refused(OWNER, too_late, START) == "BiddingDeadlineOutOfRange"  # more than a week ahead
    in_the_past = OpenTender(OLD, DEPOSIT, FILES, 1, START - 1, 10, 8)
    assert h.refused(OWNER, in_the_past) == "BiddingDeadlineOutOfRange"
    assert h.refused(OWNER, OpenTender(OLD, 10**18, FILES, 1, START + 2, 10, 8)) == "InsufficientBalance"
    tid, _ = open_tender(h)
    assert h.refused(OWNER, OpenTender(OLD, DEPOSIT, FILES, 1, START + 2, 10, 8)) == "TenderExists"
    assert h.refused(STRANGER, BidTender(tid, 1_000)) == "UnregisteredBidder"
    assert h.refused(TEAM, BidTender(tid, DEPOSIT + 1)) == "BidAboveDeposit"
    team0, vendor0 = balance(h, TEAM.address), balance(h, VENDOR.address)
    bids = [h.tx(TEAM, BidTender(tid, 30_000)), h.tx(VENDOR, BidTender(tid, 40_000))]
    h.mine(*bids)
    assert team0 - balance(h, TEAM.address) == 3_000 + bids[0].fee  # its 10 % penalty deposit is locked
    assert h.refused(TEAM, BidTender(tid, 20_000)) == "AlreadyBid"  # one bid each
    assert h.refused(OWNER, AwardTender(tid)) == "BiddingOpen"
    assert h.refused(TEAM, WithdrawFromTender(tid)) == "TenderNotAgreed"
    assert h.refused(OWNER, CompleteTender(tid)) == "TenderNotAgreed"
    assert h.refused(VENDOR, BidTender(tid, 1_000), START + 3) == "BiddingClosed"  # past bid_until
    h.mine(h.tx(BUYER, AwardTender(tid)), interval=START + 3)  # anyone awards once bidding closed
    assert h.refused(TEAM, BidTender(tid, 1_000)) == "TenderNotOpen"
    assert h.refused(BUYER, AwardTender(tid)) == "TenderNotOpen"
    tender = h.chain.view().get(TENDERS, tid)
    assert tender is not None and tender.status == Status.AGREED
    assert (tender.diagnosis_node, tender.value, tender.credit) == (TEAM.address, 30_000, 0)
    assert [b.bidder for b in tender.bids] == [TEAM.address, VENDOR.address]  # the record keeps every bid
    assert balance(h, VENDOR.address) == vendor0 - bids[1].fee  # the loser's penalty deposit returned

    owner0, team1 = balance(h, OWNER.address), balance(h, TEAM.address)
    h.mine(h.tx(OWNER, CompleteTender(tid)))
    assert balance(h, TEAM.address) - team1 == 30_000 + 3_000  # its price and its penalty deposit
    assert h.chain.view().get(CREDITS, TEAM.address).completed == 1  # type: ignore[union-attr]
    assert balance(h, OWNER.address) > owner0 + DEPOSIT - 30_000 - 10_000  # the rest returned (less a fee)
    assert h.refused(OWNER, CompleteTender(tid)) == "TenderClosed"
    assert h.refused(OWNER, AwardTender(tid)) == "TenderClosed"
    assert h.refused(TEAM, BidTender(tid, 1_000)) == "TenderClosed"
    assert h.refused(OWNER, AwardTender(b"\x02" * 32)) == "UnknownTender"


@pytest.mark.parametrize(
    ("bad", "rule"),
    [
        (OpenTender(OLD, DEPOSIT, FILES, 1, START + 2, 10, 0), ServiceTimeOutOfRange),
        (OpenTender(OLD, DEPOSIT, FILES, 1, START + 2, 10, 7 * 96 + 1), ServiceTimeOutOfRange),
        (OpenTender(OLD, 0, FILES, 1, START + 2, 10, 8), EmptyDeposit),
        (OpenTender(OLD, DEPOSIT, FILES, 2, START + 2, 10, 8), UnknownMaintenanceMode),
        (OpenTender(OLD, DEPOSIT, FILES, 1, START + 2, 101, 8), PenaltyOutOfRange),
        (BidTender(b"\x02" * 32, 0), EmptyBid),
        (OpenTender(OLD, DEPOSIT, FILES, 1, START + 2, 10, 8, dispute_intervals=0), DisputeWindowOutOfRange),
        (OpenTender(OLD, DEPOSIT, FILES, 1, START + 2, 10, 8, 7 * 96 + 1), DisputeWindowOutOfRange),
        (OpenTender(OLD, DEPOSIT, FILES, 1, START + 2, 10, 8, reserve=DEPOSIT + 1), ReserveAboveDeposit),
    ],
    ids=[
        "no-service-time",
        "service-time-over-a-week",
        "no-deposit",
        "mode-2",
        "penalty-101",
        "bid-of-0",
        "no-dispute-window",
        "dispute-window-over-a-week",
        "reserve-above-deposit",
    ],
)
def test_a_tender_or_bid_out_of_range_is_refused_before_the_state(
    h: Helios, bad: Payload, rule: type[InvalidTransaction]
) -> None:
    with pytest.raises(rule):
        validate_transaction(sign(h.chain, OWNER, bad, 0), h.chain.params, h.chain.chain_id)


def test_a_tender_takes_at_most_max_bids(h: Helios, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maintenance_rules, "MAX_BIDS", 1)  # (32 teams registered otherwise)
    tid, _ = open_tender(h)
    h.mine(h.tx(TEAM, BidTender(tid, 30_000)))
    assert h.refused(VENDOR, BidTender(tid, 40_000)) == "TooManyBids"


def test_a_winner_that_withdraws_forfeits_its_penalty_deposit_to_the_owner(h: Helios) -> None:
    tid, _ = open_tender(h)
    h.mine(h.tx(TEAM, BidTender(tid, 20_000)))
    h.mine(h.tx(OWNER, AwardTender(tid)), interval=START + 3)
    assert h.refused(VENDOR, WithdrawFromTender(tid)) == "NotTheWinner"  # a bidder that lost
    owner0 = balance(h, OWNER.address)
    h.mine(h.tx(TEAM, WithdrawFromTender(tid)))
    assert balance(h, OWNER.address) - owner0 == DEPOSIT + 2_000  # its deposit and the penalty
    view = h.chain.view()
    assert view.get(TENDERS, tid).status == Status.WITHDRAWN  # type: ignore[union-attr]
    assert view.get(CREDITS, TEAM.address).withdrawn == 1  # type: ignore[union-attr]
    open_tender(h, bid_until=START + 5)  # the equipment may be tendered again


def test_a_tender_nobody_bids_on_returns_the_deposit(h: Helios) -> None:
    tid, _ = open_tender(h)
    owner0 = balance(h, OWNER.address)
    award: Payload = AwardTender(tid)
    tx = h.tx(OWNER, award)
    h.mine(tx, interval=START + 3)
    assert balance(h, OWNER.address) - owner0 == DEPOSIT - tx.fee
    assert h.chain.view().get(TENDERS, tid).status == Status.UNSERVED  # type: ignore[union-attr]


def test_no_bid_wins_for_nothing_at_stake_and_an_overdue_service_can_be_ended(h: Helios) -> None:
    """A bid of 1 base unit still locks a penalty deposit (rounded up); once the winner lets the
    service run past its deadline, the owner ends the agreement and takes the penalty."""
    tid, _ = open_tender(h)
    team0 = balance(h, TEAM.address)
    bid = h.tx(TEAM, BidTender(tid, 1))
    h.mine(bid)
    assert team0 - balance(h, TEAM.address) == 1 + bid.fee  # 10 % of 1, rounded up
    h.mine(h.tx(OWNER, AwardTender(tid)), interval=START + 3)
    tender = h.chain.view().get(TENDERS, tid)
    assert tender is not None and tender.service_until == START + 3 + 8
    assert h.refused(OWNER, WithdrawFromTender(tid), START + 11) == "ServiceNotOverdue"
    owner0 = balance(h, OWNER.address)
    end = h.tx(OWNER, WithdrawFromTender(tid))
    h.mine(end, interval=START + 12)
    assert balance(h, OWNER.address) - owner0 == DEPOSIT + 1 - end.fee
    assert h.chain.view().get(CREDITS, TEAM.address).withdrawn == 1  # type: ignore[union-attr]


def test_under_warranty_the_vendor_cannot_back_out_but_the_owner_can_end_an_overdue_repair(h: Helios) -> None:
    tid, _ = open_tender(h, NEW)
    assert h.refused(OWNER, WithdrawFromTender(tid)) == "ServiceNotOverdue"
    owner0 = balance(h, OWNER.address)
    end = h.tx(OWNER, WithdrawFromTender(tid))
    h.mine(end, interval=START + 20)
    assert balance(h, OWNER.address) - owner0 == DEPOSIT - end.fee
    assert h.chain.view().get(TENDERS, tid).status == Status.WITHDRAWN  # type: ignore[union-attr]


def agreed(h: Helios, price: int = 30_000) -> bytes:
    """A tender TEAM won at ``price`` (penalty deposit 10 %), to be served by START + 11."""
    tid, _ = open_tender(h)
    h.mine(h.tx(TEAM, BidTender(tid, price)))
    h.mine(h.tx(BUYER, AwardTender(tid)), interval=START + 3)
    return tid


def test_a_winner_that_claims_its_service_is_paid_once_no_dispute_came(h: Helios) -> None:
    """The owner, served, never confirmed and ended the agreement as overdue: it kept its
    50,000 deposit and took the team's 3,000 penalty deposit for a repair priced 30,000. The
    winner now claims the service done in time; undisputed for a day, its claim is paid."""
    tid = agreed(h)
    assert h.refused(OWNER, DisputeTender(tid)) == "NothingToDispute"  # no claim yet
    assert h.refused(VENDOR, ClaimTender(tid)) == "NotTheWinner"
    h.mine(h.tx(TEAM, ClaimTender(tid)), interval=START + 5)
    tender = h.chain.view().get(TENDERS, tid)
    assert tender is not None and tender.status == Status.CLAIMED and tender.claimed_at == START + 5
    assert h.refused(OWNER, WithdrawFromTender(tid), START + 12) == "ServiceClaimed"  # claimed: not overdue
    assert h.refused(TEAM, WithdrawFromTender(tid), START + 12) == "ServiceClaimed"
    assert h.refused(TEAM, ClaimTender(tid), START + 5 + DISPUTE_INTERVALS) == "ClaimTooEarly"
    team0, owner0 = balance(h, TEAM.address), balance(h, OWNER.address)
    claim = h.tx(TEAM, ClaimTender(tid))
    h.mine(claim, interval=START + 6 + DISPUTE_INTERVALS)
    assert balance(h, TEAM.address) - team0 == 30_000 + 3_000 - claim.fee  # its price and penalty deposit
    assert balance(h, OWNER.address) - owner0 == DEPOSIT - 30_000  # the rest of the deposit
    view = h.chain.view()
    assert view.get(TENDERS, tid).status == Status.COMPLETED  # type: ignore[union-attr]
    assert view.get(CREDITS, TEAM.address).completed == 1  # type: ignore[union-attr]
    assert h.refused(TEAM, ClaimTender(tid)) == "TenderClosed"  # paid once
    assert h.refused(OWNER, DisputeTender(tid)) == "TenderClosed"
    assert h.refused(OWNER, CompleteTender(tid)) == "TenderClosed"
    assert h.refused(OWNER, WithdrawFromTender(tid)) == "TenderClosed"


def test_a_claim_comes_within_the_service_time_and_an_owner_may_confirm_it_at_once(h: Helios) -> None:
    tid, _ = open_tender(h)
    assert h.refused(TEAM, ClaimTender(tid)) == "TenderNotAgreed"  # still open
    h.mine(h.tx(TEAM, BidTender(tid, 30_000)))
    h.mine(h.tx(BUYER, AwardTender(tid)), interval=START + 3)
    assert h.refused(TEAM, ClaimTender(tid), START + 12) == "ServiceOverdue"  # past START + 11
    h.mine(h.tx(TEAM, ClaimTender(tid)), interval=START + 11)
    team0 = balance(h, TEAM.address)
    h.mine(h.tx(OWNER, CompleteTender(tid)), interval=START + 12)  # the owner pays without waiting
    assert balance(h, TEAM.address) - team0 == 33_000
    assert h.refused(TEAM, ClaimTender(tid), START + 200) == "TenderClosed"


def test_a_dispute_leaves_neither_party_better_off_than_the_truth(h: Helios) -> None:
    """Nothing on chain tells a served owner that lies from a winner that claims a service it
    did not do, so a dispute pays neither: the price is destroyed, the rest of the deposit and
    the winner's penalty deposit go to the owner. A served owner that disputes pays what it
    would have paid (less the penalty); a winner that claims falsely loses what a no-show loses."""
    tid = agreed(h)
    h.mine(h.tx(TEAM, ClaimTender(tid)), interval=START + 5)
    assert h.refused(BUYER, DisputeTender(tid)) == "NotEquipmentOwner"
    assert h.refused(OWNER, DisputeTender(tid), START + 6 + DISPUTE_INTERVALS) == "DisputeWindowClosed"
    team0, owner0 = balance(h, TEAM.address), balance(h, OWNER.address)
    dispute = h.tx(OWNER, DisputeTender(tid))
    h.mine(dispute, interval=START + 5 + DISPUTE_INTERVALS)  # the window's last interval
    assert balance(h, OWNER.address) - owner0 == DEPOSIT - 30_000 + 3_000 - dispute.fee
    assert balance(h, TEAM.address) == team0  # (the 30,000 price is destroyed)
    assert h.chain.view().get(TENDERS, tid).status == Status.DISPUTED  # type: ignore[union-attr]
    assert h.refused(TEAM, ClaimTender(tid), START + 500) == "TenderClosed"
    open_tender(h, bid_until=START + 5 + DISPUTE_INTERVALS)  # the equipment may be tendered again


def test_under_warranty_the_vendors_claim_returns_the_deposit(h: Helios) -> None:
    tid, _ = open_tender(h, NEW)
    owner0 = balance(h, OWNER.address)
    h.mine(h.tx(VENDOR, ClaimTender(tid)), interval=START + 2)
    h.mine(h.tx(VENDOR, ClaimTender(tid)), interval=START + 3 + DISPUTE_INTERVALS)
    assert balance(h, OWNER.address) - owner0 == DEPOSIT
    assert h.chain.view().get(CREDITS, VENDOR.address).completed == 1  # type: ignore[union-attr]


def test_the_owner_sets_the_dispute_window_of_its_tender(h: Helios) -> None:
    """A day to dispute a claim was fixed for every tender; the owner now sets it (1 to a week),
    and a tender that does not say keeps a day."""
    assert OpenTender(OLD, DEPOSIT, FILES, 1, START + 2, 10, 8).dispute_intervals == DISPUTE_INTERVALS
    tid, _ = open_tender(h, dispute_intervals=3)
    tender = h.chain.view().get(TENDERS, tid)
    assert tender is not None and tender.dispute_intervals == 3
    h.mine(h.tx(TEAM, BidTender(tid, 30_000)))
    h.mine(h.tx(BUYER, AwardTender(tid)), interval=START + 3)
    h.mine(h.tx(TEAM, ClaimTender(tid)), interval=START + 5)
    assert h.refused(TEAM, ClaimTender(tid), START + 8) == "ClaimTooEarly"  # the window runs to START + 8
    assert h.refused(OWNER, DisputeTender(tid), START + 9) == "DisputeWindowClosed"
    team0 = balance(h, TEAM.address)
    claim = h.tx(TEAM, ClaimTender(tid))
    h.mine(claim, interval=START + 9)
    assert balance(h, TEAM.address) - team0 == 30_000 + 3_000 - claim.fee


def test_a_tender_stored_before_its_dispute_window_was_a_field_reads_as_a_day() -> None:
    """State entries decode leniently: a record written without the later fields takes their
    defaults (its canonical encoding, written anew, carries them)."""
    record = Tender(OLD, "inverter", OWNER.address, VENDOR.address, DEPOSIT, FILES, 1, START, 10, 8)
    fields = msgspec.msgpack.decode(encode(record))
    older = msgspec.msgpack.encode(fields[:18])  # up to claimed_at
    assert decode_lenient(older, Tender).dispute_intervals == DISPUTE_INTERVALS


def sabotage(h: Helios, price: int, bid_until: int, **terms: int) -> tuple[int, int]:
    """TEAM wins OWNER's tender (penalty deposits 100 %, ``terms``) at ``price`` against the
    vendor's 40,000, claims the repair done at once and does nothing; the owner disputes at
    once. What it cost TEAM and OWNER [base units, fees aside]."""
    team0, owner0 = balance(h, TEAM.address), balance(h, OWNER.address)
    tid, open_fee = open_tender(h, bid_until=bid_until, penalty_pct=100, **terms)
    txs = [h.tx(TEAM, BidTender(tid, price)), h.tx(VENDOR, BidTender(tid, 40_000))]
    h.mine(*txs)
    award = h.tx(BUYER, AwardTender(tid))
    h.mine(award, interval=bid_until + 1)
    claim = h.tx(TEAM, ClaimTender(tid))
    h.mine(claim)
    dispute = h.tx(OWNER, DisputeTender(tid))
    h.mine(dispute)
    assert h.chain.view().get(TENDERS, tid).status == Status.DISPUTED  # type: ignore[union-attr]
    team_cost = team0 - balance(h, TEAM.address) - txs[0].fee - claim.fee
    owner_cost = owner0 - balance(h, OWNER.address) - open_fee - dispute.fee
    return team_cost, owner_cost


def test_a_reserve_makes_underbidding_to_delay_a_repair_cost_the_saboteur(h: Helios) -> None:
    """A self-declared team won with a bid of 1 base unit and delayed the repair (claimed it at
    once, the owner's only remedy a dispute): its penalty deposit, a share of its own price,
    was all a dispute took from it, 1 base unit even at penalty_pct 100. The owner's reserve is
    the least price it accepts: the winner stakes at least penalty_pct of it, and loses it."""
    assert sabotage(h, 1, START + 2) == (1, 0)  # no reserve: the sabotage cost the saboteur 1
    tid, _ = open_tender(h, bid_until=START + 5, reserve=20_000, penalty_pct=100)
    assert h.chain.view().get(TENDERS, tid).reserve == 20_000  # type: ignore[union-attr]
    assert h.refused(TEAM, BidTender(tid, 1)) == "BidBelowReserve"
    assert h.refused(TEAM, BidTender(tid, 19_999)) == "BidBelowReserve"
    h.mine(h.tx(BUYER, AwardTender(tid)), interval=START + 6)  # nobody bid: the deposit returned
    team_cost, owner_cost = sabotage(h, 20_000, START + 8, reserve=20_000)
    assert (team_cost, owner_cost) == (20_000, 0)  # the saboteur forfeits the reserve, the owner is whole


def test_a_saboteur_that_does_nothing_forfeits_its_stake_on_the_reserve(h: Helios) -> None:
    tid, _ = open_tender(h, reserve=20_000, penalty_pct=50)
    assert h.refused(TEAM, BidTender(tid, 1)) == "BidBelowReserve"  # its stake would be 1
    team0 = balance(h, TEAM.address)
    bid = h.tx(TEAM, BidTender(tid, 20_000))
    h.mine(bid)
    h.mine(h.tx(BUYER, AwardTender(tid)), interval=START + 3)
    owner0 = balance(h, OWNER.address)
    end = h.tx(OWNER, WithdrawFromTender(tid))
    h.mine(end, interval=START + 12)  # the service was due by START + 11
    assert balance(h, OWNER.address) - owner0 == DEPOSIT + 10_000 - end.fee
    assert team0 - balance(h, TEAM.address) == 10_000 + bid.fee  # half the reserve


def destroyed(h: Helios) -> int:
    found = h.chain.view().get(DESTROYED, DESTROYED_KEY)
    return 0 if found is None else found.total


def test_tender_vectors_pin_the_reserve_the_dispute_window_and_the_destroyed_price(h: Helios) -> None:
    """The consensus vectors (tests/vectors/tender_*.json) of the tender's reserve, its own
    dispute window and a dispute's destroyed price: each rule once kept, once broken by name.
    Two tenders of OLD: one with a reserve of 20,000 and a week to dispute, won at the reserve,
    its claim disputed on the week's last interval; one with the reserve at the deposit and
    one interval to dispute, whose claim is paid once that interval has passed."""
    o = OpenTender(OLD, DEPOSIT, FILES, Mode.ON_SITE, START + 2, 50, 8)

    def terms(**changes: int) -> OpenTender:
        return msgspec.structs.replace(o, **changes)

    h.refuse_vector(
        "tender_reserve_above_the_deposit",
        "the owner opens a tender whose reserve is one base unit above its deposit",
        OWNER,
        terms(reserve=DEPOSIT + 1),
        ReserveAboveDeposit,
    )
    h.refuse_vector(
        "tender_dispute_window_of_zero",
        "the owner opens a tender with dispute_intervals 0 (the least is 1)",
        OWNER,
        terms(dispute_intervals=0),
        DisputeWindowOutOfRange,
    )
    h.refuse_vector(
        "tender_dispute_window_over_a_week",
        "the owner opens a tender with dispute_intervals 673 (the most is 672, a week)",
        OWNER,
        terms(dispute_intervals=MAX_DISPUTE_INTERVALS + 1),
        DisputeWindowOutOfRange,
    )
    week = terms(reserve=20_000, dispute_intervals=MAX_DISPUTE_INTERVALS)
    opening = h.tx(OWNER, week)
    h.mine_vector(
        "tender_opened_with_a_reserve_and_a_week_to_dispute",
        "the owner opens a tender out of warranty: deposit 50,000, reserve 20,000, penalty deposits "
        "50 %, dispute_intervals 672 (a week, the most); the deposit leaves its balance",
        opening,
    )
    tid = tx_id(opening)
    assert h.chain.view().get(TENDERS, tid).reserve == 20_000  # type: ignore[union-attr]
    h.refuse_vector(
        "tender_bid_below_the_reserve",
        "a maintenance team bids 19,999 on a tender whose reserve is 20,000",
        TEAM,
        BidTender(tid, 19_999),
        BidBelowReserve,
    )
    team0, vendor0 = balance(h, TEAM.address), balance(h, VENDOR.address)
    bids = [h.tx(TEAM, BidTender(tid, 20_000)), h.tx(VENDOR, BidTender(tid, 25_000))]
    h.mine_vector(
        "tender_bids_at_and_above_the_reserve",
        "on a tender with reserve 20,000 and penalty deposits of 50 %, a maintenance team bids the "
        "reserve and the vendor 25,000: each locks half its price (10,000 and 12,500)",
        *bids,
    )
    assert team0 - balance(h, TEAM.address) == 10_000 + bids[0].fee  # half the reserve at stake
    h.mine_vector(
        "tender_won_at_the_reserve",
        "once bidding has closed a stranger awards the tender: the team's bid at the reserve "
        "(20,000) wins, the vendor's 12,500 penalty deposit returns",
        h.tx(BUYER, AwardTender(tid)),
        interval=START + 3,
    )
    assert balance(h, VENDOR.address) == vendor0 - bids[1].fee
    won = h.chain.view().get(TENDERS, tid)
    assert won is not None and (won.diagnosis_node, won.value) == (TEAM.address, 20_000)
    h.mine(h.tx(TEAM, ClaimTender(tid)), interval=START + 5)
    owner0, burnt = balance(h, OWNER.address), destroyed(h)
    dispute = h.tx(OWNER, DisputeTender(tid))
    h.mine_vector(
        "tender_dispute_destroys_the_price",
        "the owner disputes the team's claim in the last interval of the tender's week-long "
        "window (672 intervals after the claim; the default is 96): the price of 20,000 is "
        "destroyed (destroyed/total), the other 30,000 of the deposit and the team's 10,000 "
        "penalty deposit go to the owner",
        dispute,
        interval=START + 5 + MAX_DISPUTE_INTERVALS,
    )
    assert destroyed(h) - burnt == 20_000
    assert balance(h, OWNER.address) - owner0 == DEPOSIT - 20_000 + 10_000 - dispute.fee

    now = interval_of(h.clock) + 2
    opening = h.tx(OWNER, terms(bid_until=now + 1, reserve=DEPOSIT, dispute_intervals=1))
    h.mine_vector(
        "tender_opened_with_the_reserve_at_the_deposit_and_one_interval_to_dispute",
        "the owner tenders the same equipment again with its reserve equal to its deposit "
        "(50,000, the most) and dispute_intervals 1 (the least)",
        opening,
        interval=now,
    )
    tid = tx_id(opening)
    h.mine(h.tx(TEAM, BidTender(tid, DEPOSIT)))
    h.mine(h.tx(BUYER, AwardTender(tid)), interval=now + 2)
    h.mine(h.tx(TEAM, ClaimTender(tid)))
    claimed = h.chain.view().get(TENDERS, tid)
    assert claimed is not None and claimed.claimed_at == now + 2 and claimed.dispute_until == now + 3
    h.refuse_vector(
        "tender_disputed_after_its_window",
        "the owner disputes a claim two intervals after it, on a tender whose dispute_intervals "
        "is 1 (the default 96 would take it)",
        OWNER,
        DisputeTender(tid),
        DisputeWindowClosed,
        now + 4,
    )
    team0, burnt = balance(h, TEAM.address), destroyed(h)
    claim = h.tx(TEAM, ClaimTender(tid))
    h.mine_vector(
        "tender_claim_paid_after_its_window",
        "two intervals after its claim on a tender whose dispute_intervals is 1, undisputed, the "
        "team claims again and is paid: its price of 50,000 and its 25,000 penalty deposit",
        claim,
        interval=now + 4,
    )
    assert balance(h, TEAM.address) - team0 == DEPOSIT + DEPOSIT // 2 - claim.fee
    assert destroyed(h) == burnt
