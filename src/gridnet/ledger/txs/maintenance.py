"""Maintenance tenders (seed 003, section 3.5): a failing device's owner deposits coin for its
repair; within warranty the vendor repairs it and the deposit returns, otherwise registered
maintenance teams (and the vendor) bid, the best bid wins, and a winner that withdraws after
the agreement forfeits its penalty deposit.

A vendor (a manufacturer authority) registers the *equipment* it sold (``RegisterEquipment``):
its id, owner, device type and the interval its warranty runs to. When the equipment fails its
owner opens a *tender* (``OpenTender``) with a deposit, the diagnosis (the hash of the service
files: failure type, time, logs), the maintenance mode (remote or on-site) and the interval
bidding closes. Within warranty the tender is agreed with the vendor at once, at no charge.
Otherwise *diagnosis nodes* bid (``BidTender``): a registered maintenance team (an authority
with the ``maintenance`` role) or the equipment's vendor, at a price no higher than the
deposit and no lower than the tender's ``reserve``, each locking a penalty deposit
(``penalty_pct`` of its price, set by the tender: so at least ``penalty_pct`` of the reserve).
Once bidding has closed anyone awards the tender (``AwardTender``): the lowest price wins (the
earlier block, then the lower address, on a tie) and the others get their penalty deposits
back; the winner then has ``service_intervals`` intervals to serve. The owner confirms the
service (``CompleteTender``): the winner is paid its price from the deposit, gets its penalty
deposit back and its credit (services completed) grows; the rest of the deposit returns. A
winner that withdraws after the agreement (``WithdrawFromTender``) forfeits its penalty
deposit to the owner, whose deposit returns; once the service is overdue the owner may end the
agreement the same way (under warranty too: the vendor then forfeits nothing but the job). A
tender nobody bid on closes at its award with the deposit returned.

An owner need not confirm: the diagnosis node claims the service done within its service time
(``ClaimTender``), which the owner can no longer end as overdue. The owner then confirms it, or
disputes it within the tender's ``dispute_intervals`` (``DisputeTender``; a day unless the
owner's tender sets 1 to 672); undisputed, the node's next
``ClaimTender`` is paid as a confirmation. The chain cannot tell a served owner that disputes
from a node that claims a service it did not do, so a dispute pays neither what it hoped: the
price is destroyed, the rest of the deposit and the node's penalty deposit go to the owner.

Roles are self-declared, so a saboteur may win a tender with a bid of next to nothing and then
delay the repair (claim at once, or do nothing until the service is overdue): the owner's
remedies, a dispute or ending the agreement, take only the node's penalty deposit, which
scaled with that price. The owner's ``reserve``, the least price it accepts, is what it judges
the job worth: a bid below it is refused, so the node that takes the job stakes at least
``penalty_pct`` of it, and loses that much to the owner by delaying it.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec
from msgspec.structs import replace

from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import hash32
from gridnet.encoding import U32, U63, AddressBytes, HashBytes, Wire, encode
from gridnet.errors import (
    AlreadyBid,
    BidAboveDeposit,
    BidBelowReserve,
    BiddingClosed,
    BiddingDeadlineOutOfRange,
    BiddingOpen,
    ClaimTooEarly,
    DisputeWindowClosed,
    DisputeWindowOutOfRange,
    EmptyBid,
    EmptyDeposit,
    EquipmentExists,
    InsufficientBalance,
    NotAuthorized,
    NotEquipmentOwner,
    NothingToDispute,
    NotTheWinner,
    PenaltyOutOfRange,
    ReserveAboveDeposit,
    ServiceClaimed,
    ServiceNotOverdue,
    ServiceOverdue,
    ServiceTimeOutOfRange,
    TenderClosed,
    TenderExists,
    TenderNotAgreed,
    TenderNotOpen,
    TooManyBids,
    UnknownEquipment,
    UnknownMaintenanceMode,
    UnknownTender,
    UnregisteredBidder,
    VendorBoundByWarranty,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import ACCOUNTS, StateView, register_table
from gridnet.ledger.txs.authority import AUTHORITIES
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.identity import refuse_revoked
from gridnet.security.roles import Role
from gridnet.units import Address, interval_of

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MAX_BIDS = 32
MAX_BIDDING_INTERVALS = 7 * 96
DISPUTE_INTERVALS = 96
"""How long after a claim the owner may dispute it unless its tender says otherwise (a day);
then the claim is paid."""
MAX_DISPUTE_INTERVALS = 7 * 96
"""The longest dispute window a tender sets (a week)."""


class Mode(enum.IntEnum):
    REMOTE = 0
    ON_SITE = 1


class Status(enum.IntEnum):
    OPEN = 0
    """Taking bids."""
    AGREED = 1
    """A diagnosis node (the winner, or the vendor under warranty) is to service it."""
    COMPLETED = 2
    WITHDRAWN = 3
    """The winner withdrew after the agreement (its penalty deposit went to the owner)."""
    UNSERVED = 4
    """Nobody bid: the deposit returned."""
    CLAIMED = 5
    """The diagnosis node claimed the service done; the owner may confirm or dispute it."""
    DISPUTED = 6
    """The owner disputed the claim: the price was destroyed (neither party is paid it)."""


class Equipment(Wire, frozen=True):
    owner: AddressBytes
    vendor: AddressBytes
    device_type: Label
    warranty_until: U63
    """The last interval the vendor's warranty covers."""


class Bid(Wire, frozen=True):
    bidder: AddressBytes
    price: U63
    """What it asks for the service [base units]."""
    penalty: U63
    """Its penalty deposit, locked until it loses, completes or withdraws [base units]."""
    height: U63


class Tender(Wire, frozen=True):
    """The seed's record: device type, transaction value, diagnosis node, service files,
    maintenance mode and credit; with the tender's terms and its bids."""

    equipment: AddressBytes
    device_type: Label
    owner: AddressBytes
    vendor: AddressBytes
    deposit: U63
    service_files: HashBytes
    mode: U32
    bid_until: U63
    """The last interval bids are taken in."""
    penalty_pct: U32
    service_intervals: U32
    status: U32 = int(Status.OPEN)
    value: U63 = 0
    """The transaction value: the winning price (0 under warranty)."""
    diagnosis_node: AddressBytes = b"\x00" * 20
    """Who services it: the winner, or the vendor under warranty (zero while open)."""
    credit: U32 = 0
    """The diagnosis node's credit (services it completed) when the tender was agreed."""
    warranty: bool = False
    service_until: U63 = 0
    """The last interval the diagnosis node has to service it (once agreed)."""
    bids: tuple[Bid, ...] = ()
    """Every bid (the losers' penalty deposits are returned at the award)."""
    claimed_at: U63 = 0
    """The interval the diagnosis node claimed the service done in (0: not claimed)."""
    dispute_intervals: U32 = DISPUTE_INTERVALS
    """How many intervals after a claim the owner may dispute it [intervals]."""
    reserve: U63 = 0
    """The least price a bid may ask [base units] (0: any price of 1 or more)."""

    @property
    def dispute_until(self) -> int:
        """The last interval the owner may dispute the claim in (once claimed)."""
        return self.claimed_at + self.dispute_intervals


class TeamCredit(Wire, frozen=True):
    completed: U32 = 0
    withdrawn: U32 = 0


EQUIPMENT = register_table("equipment", b"q", Equipment)
TENDERS = register_table("tenders", b"t", Tender)
"""Tender id (the OpenTender transaction's id) -> the tender."""
CREDITS = register_table("maintenance_credits", b"c", TeamCredit)


class Marker(Wire, frozen=True):
    tender: HashBytes


OPEN_TENDER_OF = register_table("equipment_tender", b"e", Marker)
"""Equipment -> its tender not yet completed, withdrawn or unserved (one at a time)."""


def equipment_id(vendor: Address, serial: str) -> bytes:
    """An equipment's id: 20 bytes of the hash of its vendor and serial number."""
    return hash32(vendor + encode(serial))[:20]


class RegisterEquipment(Wire, frozen=True, tag=41):
    serial: Label
    owner: AddressBytes
    device_type: Label
    warranty_until: U63


class OpenTender(Wire, frozen=True, tag=42):
    equipment: AddressBytes
    deposit: U63
    service_files: HashBytes
    """The hash of the diagnosis's service files (failure type, time, logs)."""
    mode: U32
    bid_until: U63
    penalty_pct: U32
    service_intervals: U32
    """How long the diagnosis node has to service it once agreed (1 to a week)."""
    dispute_intervals: U32 = DISPUTE_INTERVALS
    """How long after a claim the owner may dispute it (1 to a week; a day by default)."""
    reserve: U63 = 0
    """The least price the owner accepts, at most the deposit [base units]: what it judges the
    job worth, so the winner's penalty deposit is at least ``penalty_pct`` of it."""


class BidTender(Wire, frozen=True, tag=43):
    tender: HashBytes
    price: U63


class AwardTender(Wire, frozen=True, tag=44):
    tender: HashBytes


class CompleteTender(Wire, frozen=True, tag=45):
    tender: HashBytes


class WithdrawFromTender(Wire, frozen=True, tag=46):
    tender: HashBytes


class ClaimTender(Wire, frozen=True, tag=58):
    tender: HashBytes


class DisputeTender(Wire, frozen=True, tag=59):
    tender: HashBytes


# --- helpers ----------------------------------------------------------------------------------

_CLOSED = (Status.COMPLETED, Status.WITHDRAWN, Status.UNSERVED, Status.DISPUTED)


def _debit(state: StateView, who: Address, amount: int, what: str) -> None:
    acct = state.account(who)
    if acct.balance < amount:
        raise InsufficientBalance(f"{what} of {amount} exceeds the balance {acct.balance}")
    state.put(ACCOUNTS, who, replace(acct, balance=acct.balance - amount))


def _tender(state: StateView, tid: bytes, what: str) -> Tender:
    """The tender ``tid``, not closed (``what``: the transaction's purpose, for the message)."""
    found = state.get(TENDERS, tid)
    if found is None:
        raise UnknownTender(f"no tender {tid.hex()[:16]}")
    if found.status in _CLOSED:
        raise TenderClosed(f"the tender is {Status(found.status).name.lower()}: nothing is left to {what}")
    return found


def _has_role(state: StateView, who: Address, role: Role) -> bool:
    authority = state.get(AUTHORITIES, who)
    return authority is not None and bool(Role(authority.roles) & role)


def penalty_of(price: int, pct: int) -> int:
    """A bid's penalty deposit: ``pct`` percent of its price, rounded up, at least 1 base unit
    when the tender asks for one (a bid never wins for nothing at stake)."""
    return max(1, -(-price * pct // 100)) if pct else 0


def credit_of(state: StateView, who: Address) -> TeamCredit:
    return state.get(CREDITS, who) or TeamCredit()


def _winners_penalty(tender: Tender) -> int:
    """The winner's penalty deposit, still locked (0 under warranty: nobody bid)."""
    return next((b.penalty for b in tender.bids if b.bidder == tender.diagnosis_node), 0)


def _close(state: StateView, tid: bytes, tender: Tender) -> None:
    state.put(TENDERS, tid, tender)
    state.put(OPEN_TENDER_OF, tender.equipment, None)


# --- rules ------------------------------------------------------------------------------------


def apply_register_equipment(
    state: StateView, env: BlockEnv, sender: Address, payload: RegisterEquipment
) -> None:
    if not _has_role(state, sender, Role.MANUFACTURER):
        raise NotAuthorized(f"{address_to_text(sender)} is no manufacturer authority: it sells no equipment")
    refuse_revoked(state, sender, "registering equipment")
    eid = equipment_id(sender, payload.serial)
    if state.get(EQUIPMENT, eid) is not None:
        raise EquipmentExists(f"equipment {payload.serial!r} of this vendor is registered already")
    state.put(EQUIPMENT, eid, Equipment(payload.owner, sender, payload.device_type, payload.warranty_until))


def validate_open(payload: OpenTender, params: ChainParams) -> None:
    if not 1 <= payload.service_intervals <= MAX_BIDDING_INTERVALS:
        raise ServiceTimeOutOfRange(
            f"service_intervals {payload.service_intervals}: it must be 1 to {MAX_BIDDING_INTERVALS}"
        )
    if payload.deposit < 1:
        raise EmptyDeposit("a tender needs a deposit to pay its service from")
    if payload.mode not in (Mode.REMOTE, Mode.ON_SITE):
        raise UnknownMaintenanceMode(f"mode {payload.mode}: 0 is remote, 1 on-site")
    if payload.penalty_pct > 100:
        raise PenaltyOutOfRange(f"penalty_pct {payload.penalty_pct}: it must be 0 to 100")
    if not 1 <= payload.dispute_intervals <= MAX_DISPUTE_INTERVALS:
        raise DisputeWindowOutOfRange(
            f"dispute_intervals {payload.dispute_intervals}: it must be 1 to {MAX_DISPUTE_INTERVALS}"
        )
    if payload.reserve > payload.deposit:
        raise ReserveAboveDeposit(f"reserve {payload.reserve}: no bid could meet it within the deposit")


def apply_open(state: StateView, env: BlockEnv, sender: Address, payload: OpenTender) -> None:
    equipment = state.get(EQUIPMENT, payload.equipment)
    if equipment is None:
        raise UnknownEquipment(f"no equipment {address_to_text(payload.equipment)} is registered")
    if equipment.owner != sender:
        raise NotEquipmentOwner("only the equipment's owner opens a tender for it")
    if state.get(OPEN_TENDER_OF, payload.equipment) is not None:
        raise TenderExists("the equipment has a tender that is not closed yet")
    now = interval_of(env.timestamp)
    warranty = now <= equipment.warranty_until
    if not warranty and not now <= payload.bid_until <= now + MAX_BIDDING_INTERVALS:
        raise BiddingDeadlineOutOfRange(
            f"bidding must close between interval {now} and {now + MAX_BIDDING_INTERVALS}"
        )
    _debit(state, sender, payload.deposit, "the deposit")
    tender = Tender(
        payload.equipment, equipment.device_type, sender, equipment.vendor, payload.deposit,
        payload.service_files, payload.mode, payload.bid_until, payload.penalty_pct,
        payload.service_intervals, dispute_intervals=payload.dispute_intervals, reserve=payload.reserve,
    )  # fmt: skip
    if warranty:  # the vendor services it, at no charge
        credit = credit_of(state, equipment.vendor).completed
        until = now + payload.service_intervals
        tender = replace(
            tender, status=int(Status.AGREED), diagnosis_node=equipment.vendor, credit=credit, warranty=True
        )
        tender = replace(tender, service_until=until)
    state.put(TENDERS, env.txid, tender)
    state.put(OPEN_TENDER_OF, payload.equipment, Marker(env.txid))


def validate_bid(payload: BidTender, params: ChainParams) -> None:
    if payload.price < 1:
        raise EmptyBid("a bid of nothing")


def apply_bid(state: StateView, env: BlockEnv, sender: Address, payload: BidTender) -> None:
    tender = _tender(state, payload.tender, "bid on")
    if tender.status != Status.OPEN:
        raise TenderNotOpen(f"the tender is {Status(tender.status).name.lower()}: it takes no bids")
    if interval_of(env.timestamp) > tender.bid_until:
        raise BiddingClosed(f"bidding closed with interval {tender.bid_until}")
    if sender != tender.vendor and not _has_role(state, sender, Role.MAINTENANCE):
        raise UnregisteredBidder(
            f"{address_to_text(sender)} is neither a registered maintenance team nor the equipment's vendor"
        )
    refuse_revoked(state, sender, "bidding")
    if payload.price > tender.deposit:
        raise BidAboveDeposit(f"{payload.price} asked; the owner deposited {tender.deposit}")
    if payload.price < tender.reserve:
        raise BidBelowReserve(f"{payload.price} asked; the owner accepts no less than {tender.reserve}")
    if any(b.bidder == sender for b in tender.bids):
        raise AlreadyBid(f"{address_to_text(sender)} bid on the tender already: one bid each")
    if len(tender.bids) >= MAX_BIDS:
        raise TooManyBids(f"the tender holds {MAX_BIDS} bids, the most it takes")
    penalty = penalty_of(payload.price, tender.penalty_pct)
    _debit(state, sender, penalty, "the penalty deposit")
    bid = Bid(sender, payload.price, penalty, env.height)
    state.put(TENDERS, payload.tender, replace(tender, bids=(*tender.bids, bid)))


def apply_award(state: StateView, env: BlockEnv, sender: Address, payload: AwardTender) -> None:
    tender = _tender(state, payload.tender, "award")
    if tender.status != Status.OPEN:
        raise TenderNotOpen(f"the tender is {Status(tender.status).name.lower()} already")
    if interval_of(env.timestamp) <= tender.bid_until:
        raise BiddingOpen(f"bidding runs to the end of interval {tender.bid_until}")
    if not tender.bids:
        state.credit(tender.owner, tender.deposit)
        _close(state, payload.tender, replace(tender, status=int(Status.UNSERVED)))
        return
    best = min(tender.bids, key=lambda b: (b.price, b.height, b.bidder))
    for b in tender.bids:
        if b is not best and b.penalty:
            state.credit(b.bidder, b.penalty)
    credit = credit_of(state, best.bidder).completed
    until = interval_of(env.timestamp) + tender.service_intervals
    agreed = replace(
        tender,
        status=int(Status.AGREED),
        value=best.price,
        diagnosis_node=best.bidder,
        credit=credit,
        service_until=until,
    )
    state.put(TENDERS, payload.tender, agreed)


def apply_complete(state: StateView, env: BlockEnv, sender: Address, payload: CompleteTender) -> None:
    tender = _tender(state, payload.tender, "complete")
    if tender.status == Status.OPEN:
        raise TenderNotAgreed("the tender is still open: nobody is agreed to service it")
    if sender != tender.owner:
        raise NotEquipmentOwner("only the owner confirms the service")
    _pay(state, payload.tender, tender)


def _pay(state: StateView, tid: bytes, tender: Tender) -> None:
    """The service is done: the diagnosis node is paid its price and gets its penalty deposit
    back, the rest of the deposit returns to the owner."""
    node = tender.diagnosis_node
    penalty = _winners_penalty(tender)
    if tender.value + penalty:
        state.credit(node, tender.value + penalty)
    if tender.deposit > tender.value:
        state.credit(tender.owner, tender.deposit - tender.value)
    credit = credit_of(state, node)
    state.put(CREDITS, node, replace(credit, completed=credit.completed + 1))
    _close(state, tid, replace(tender, status=int(Status.COMPLETED)))


def apply_withdraw(state: StateView, env: BlockEnv, sender: Address, payload: WithdrawFromTender) -> None:
    """The winner backs out, or the owner ends an agreement its diagnosis node did not serve in
    time: either way the deposit returns to the owner with the node's penalty deposit."""
    tender = _tender(state, payload.tender, "withdraw from")
    if tender.status == Status.OPEN:
        raise TenderNotAgreed("the tender is still open: nobody is agreed to service it")
    if tender.status == Status.CLAIMED:
        raise ServiceClaimed("the service is claimed done: the owner confirms or disputes it")
    node = tender.diagnosis_node
    overdue = interval_of(env.timestamp) > tender.service_until
    backs_out = sender == node and not tender.warranty  # the winner (never the vendor under warranty)
    ends_overdue = sender == tender.owner and overdue  # the owner, not served in time
    if not (backs_out or ends_overdue):
        if sender == node:
            raise VendorBoundByWarranty("the vendor cannot back out of a repair its warranty covers")
        if sender == tender.owner:
            raise ServiceNotOverdue(f"the service is due by the end of interval {tender.service_until}")
        raise NotTheWinner("only the tender's winner withdraws, or its owner once the service is overdue")
    state.credit(tender.owner, tender.deposit + _winners_penalty(tender))
    credit = credit_of(state, node)
    state.put(CREDITS, node, replace(credit, withdrawn=credit.withdrawn + 1))
    _close(state, payload.tender, replace(tender, status=int(Status.WITHDRAWN)))


def apply_claim(state: StateView, env: BlockEnv, sender: Address, payload: ClaimTender) -> None:
    """The diagnosis node claims the service done (within its service time), then, once the
    owner's dispute window has passed without a dispute, is paid as if the owner confirmed."""
    tender = _tender(state, payload.tender, "claim")
    if tender.status == Status.OPEN:
        raise TenderNotAgreed("the tender is not agreed yet")
    if sender != tender.diagnosis_node:
        raise NotTheWinner("only the tender's diagnosis node claims its service")
    now = interval_of(env.timestamp)
    if tender.status == Status.AGREED:
        if now > tender.service_until:
            raise ServiceOverdue(
                f"the service was due by interval {tender.service_until}: the owner may end the agreement"
            )
        state.put(TENDERS, payload.tender, replace(tender, status=int(Status.CLAIMED), claimed_at=now))
        return
    if now <= tender.dispute_until:
        raise ClaimTooEarly(f"the owner may dispute the claim to the end of interval {tender.dispute_until}")
    _pay(state, payload.tender, tender)


def apply_dispute(state: StateView, env: BlockEnv, sender: Address, payload: DisputeTender) -> None:
    """The owner disputes a claimed service: nobody is paid the price (it is destroyed); the
    rest of the deposit and the node's penalty deposit go to the owner."""
    tender = _tender(state, payload.tender, "dispute")
    if sender != tender.owner:
        raise NotEquipmentOwner("only the equipment's owner disputes a service")
    if tender.status != Status.CLAIMED:
        raise NothingToDispute(
            "no service is claimed (an overdue one the owner ends with WithdrawFromTender)"
        )
    if interval_of(env.timestamp) > tender.dispute_until:
        raise DisputeWindowClosed(
            f"the claim could be disputed to the end of interval {tender.dispute_until}"
        )
    returned = tender.deposit - tender.value + _winners_penalty(tender)
    if returned:
        state.credit(tender.owner, returned)
    state.destroy(tender.value)
    _close(state, payload.tender, replace(tender, status=int(Status.DISPUTED)))


def _no_check(payload: object, params: ChainParams) -> None:
    """Nothing to check without the state."""


REGISTER_EQUIPMENT_RULES = TxRules(RegisterEquipment, _no_check, apply_register_equipment)
OPEN_RULES = TxRules(OpenTender, validate_open, apply_open)
BID_RULES = TxRules(BidTender, validate_bid, apply_bid)
AWARD_RULES = TxRules(AwardTender, _no_check, apply_award)
COMPLETE_RULES = TxRules(CompleteTender, _no_check, apply_complete)
WITHDRAW_RULES = TxRules(WithdrawFromTender, _no_check, apply_withdraw)
CLAIM_RULES = TxRules(ClaimTender, _no_check, apply_claim)
DISPUTE_RULES = TxRules(DisputeTender, _no_check, apply_dispute)
