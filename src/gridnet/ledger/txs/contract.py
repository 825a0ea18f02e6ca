"""Energy contracts on chain: open (lock the buyer's deposit), settle (pay newly
acknowledged energy to the seller and each line owner), close (refund the rest after the
end and the dispute window), and punish a buyer's equivocation (two states under one
sequence number, or a later state taking back energy an earlier one acknowledged:
``bond.forfeit_stake``, its bonded and unbonding coin are lost, a tenth to the seller, and its
identity is revoked).

No double selling: across all its contracts, a seller is never paid for more Wh in an
interval than its meter signed as exported in that interval (``ReadingRecord.sold_wh``).
"""

from __future__ import annotations

from msgspec.structs import replace

from gridnet.contracts.channel import (
    MAX_SPAN,
    ContractState,
    ContractTerms,
    Delivery,
    SignedState,
    SignedTerms,
    contract_id,
    deposit,
    is_equivocation,
    is_signed_by_buyer,
    is_well_ordered,
    missing_signers,
    payouts,
    state_check,
    terms_checks,
)
from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import SignatureCheck
from gridnet.encoding import U63, HashBytes, PublicKeyBytes, Wire
from gridnet.errors import (
    ContractClosed,
    ContractExists,
    ContractForAnotherChain,
    ContractLimitExceeded,
    DeliveryOutsideContract,
    DisputeWindowOpen,
    DisputeWindowTooLong,
    DoubleSelling,
    FraudAlreadyReported,
    InsufficientBalance,
    MalformedContract,
    MeterNotOwned,
    MissingPartySignature,
    MissingReading,
    NotAuthorized,
    NotEquivocation,
    RevokedMeter,
    StaleState,
    StateRegression,
    StateSignatureInvalid,
    UnknownContract,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import ACCOUNTS, StateView, register_table
from gridnet.ledger.txs.advisory import refuse_vulnerable
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.bond import forfeit_stake
from gridnet.ledger.txs.credit import record_sale
from gridnet.ledger.txs.helios import refuse_over_cap
from gridnet.ledger.txs.identity import require_identity
from gridnet.ledger.txs.meter import METERS, READINGS, reading_key
from gridnet.units import Address, interval_start


class ContractRecord(Wire, frozen=True):
    terms: ContractTerms
    buyer_key: PublicKeyBytes
    """Verifies the buyer's states."""
    remaining: U63
    """Deposit not paid out yet [base units]."""
    paid: tuple[Delivery, ...] = ()
    """Energy paid so far, per interval [Wh]."""
    paid_wh: U63 = 0
    settled_seq: U63 = 0
    settled: bool = False
    last_change_height: U63 = 0
    """Height of the opening or of the latest settlement (starts the dispute window)."""
    closed: bool = False
    fraud_reported: bool = False


CONTRACTS = register_table("contracts", b"C", ContractRecord)


class OpenContract(Wire, frozen=True, tag=10):
    signed: SignedTerms


class SettleContract(Wire, frozen=True, tag=11):
    signed: SignedState


class CloseContract(Wire, frozen=True, tag=12):
    contract: HashBytes


class ReportEquivocation(Wire, frozen=True, tag=13):
    first: SignedState
    second: SignedState


# --- open ------------------------------------------------------------------------------


def validate_open_contract(payload: OpenContract, params: ChainParams) -> None:
    t = payload.signed.terms
    if t.first_interval > t.last_interval or t.last_interval - t.first_interval >= MAX_SPAN:
        raise MalformedContract(f"a contract covers 1 to {MAX_SPAN} intervals, first to last")
    if t.max_wh == 0:
        raise MalformedContract("a contract for zero energy")
    if t.dispute_window > params.max_dispute_window:
        raise DisputeWindowTooLong(
            f"a dispute window of {t.dispute_window} blocks exceeds the chain's maximum "
            f"of {params.max_dispute_window}"
        )
    owners = [f.owner for f in t.line_fees]
    if t.buyer == t.seller or len(set(owners)) != len(owners):
        raise MalformedContract("buyer and seller must differ and line owners appear once")
    missing = missing_signers(payload.signed)
    if missing:
        names = ", ".join(address_to_text(a) for a in missing)
        raise MissingPartySignature(f"the terms lack a valid signature of {names}")


def apply_open_contract(state: StateView, env: BlockEnv, sender: Address, payload: OpenContract) -> None:
    t = payload.signed.terms
    if t.chain != env.chain_id:
        raise ContractForAnotherChain(
            f"the terms are for chain {t.chain.hex()[:16]}, not this chain {env.chain_id.hex()[:16]}"
        )
    if sender != t.buyer:
        raise NotAuthorized("only the buyer opens a contract (its deposit is locked)")
    require_identity(state, t.seller, "selling under a contract")
    require_identity(state, t.buyer, "buying under a contract")
    for meter, party in ((t.seller_meter, t.seller), (t.buyer_meter, t.buyer)):
        record = state.get(METERS, meter)
        if record is None or record.owner != party:
            raise MeterNotOwned(
                f"meter {address_to_text(meter)} is not registered to {address_to_text(party)}"
            )
        if record.revoked:  # (it records no reading: the contract could never be settled)
            raise RevokedMeter(f"meter {address_to_text(meter)} was revoked by its manufacturer")
        refuse_vulnerable(state, env.params, meter, "opening a contract")
    per_interval = -(-t.max_wh // (t.last_interval - t.first_interval + 1))
    refuse_over_cap(state, t.seller_meter, per_interval, inject=True, what="the contract's delivery")
    refuse_over_cap(state, t.buyer_meter, per_interval, inject=False, what="the contract's delivery")
    cid = contract_id(t)
    if state.get(CONTRACTS, cid) is not None:
        raise ContractExists(f"contract {cid.hex()[:16]} is already open")
    locked = deposit(t)
    acct = state.account(sender)
    if acct.balance < locked:
        raise InsufficientBalance(f"the deposit of {locked} exceeds the buyer's balance {acct.balance}")
    state.put(ACCOUNTS, sender, replace(acct, balance=acct.balance - locked))
    # The sender is the buyer: its key verifies the states it will sign.
    state.put(CONTRACTS, cid, ContractRecord(t, env.sender_key, locked, last_change_height=env.height))


# --- settle ----------------------------------------------------------------------------


def validate_settle_contract(payload: SettleContract, params: ChainParams) -> None:
    if not is_well_ordered(payload.signed.state):
        raise MalformedContract("deliveries must list each interval once, in increasing order")


def open_record(state: StateView, cid: bytes) -> ContractRecord:
    record = state.get(CONTRACTS, cid)
    if record is None:
        raise UnknownContract(f"no contract {cid.hex()[:16]} is open")
    if record.closed:
        raise ContractClosed(f"contract {cid.hex()[:16]} is closed")
    return record


def apply_settle_contract(state: StateView, env: BlockEnv, sender: Address, payload: SettleContract) -> None:
    s: ContractState = payload.signed.state
    record = open_record(state, s.contract)
    t = record.terms
    if not is_signed_by_buyer(payload.signed, record.buyer_key):
        raise StateSignatureInvalid("the state is not signed by the contract's buyer")
    paid = {d.interval: d.wh for d in record.paid}
    # An older state counts when it raises an interval: the buyer signed that energy, and a
    # later state of its own cannot take it back (that pair is an equivocation too).
    raises = any(d.wh > paid.get(d.interval, 0) for d in s.deliveries)
    if record.settled and s.seq <= record.settled_seq and not raises:
        raise StaleState(
            f"state {s.seq} does not supersede the settled state {record.settled_seq} "
            "and acknowledges nothing more"
        )
    for meter in (t.seller_meter, t.buyer_meter):
        refuse_vulnerable(state, env.params, meter, "settling a contract")
    newly: list[tuple[int, int]] = []
    total = 0
    for d in s.deliveries:
        if not t.first_interval <= d.interval <= t.last_interval:
            raise DeliveryOutsideContract(f"interval {d.interval} is outside the contract")
        before = paid.get(d.interval, 0)
        if d.wh < before:
            raise StateRegression(f"interval {d.interval}: {d.wh} Wh acknowledged, {before} Wh already paid")
        total += d.wh
        if d.wh > before:
            newly.append((d.interval, d.wh - before))
    listed = {d.interval for d in s.deliveries}
    for interval, wh in paid.items():
        if wh and interval not in listed:
            raise StateRegression(f"interval {interval}: the state drops {wh} Wh already paid")
    if total > t.max_wh:
        raise ContractLimitExceeded(f"{total} Wh acknowledged; the contract pays at most {t.max_wh} Wh")
    for interval, wh in newly:  # every rule first: nothing is written before all pass
        reading = state.get(READINGS, reading_key(t.seller_meter, interval))
        if reading is None:
            raise MissingReading(f"no reading of the seller's meter for interval {interval} is on chain")
        if reading.sold_wh + wh > reading.exported_wh:
            raise DoubleSelling(
                f"interval {interval}: the seller's meter exported {reading.exported_wh} Wh; "
                f"{reading.sold_wh} Wh are already paid and {wh} Wh more would exceed it"
            )
    for interval, wh in newly:
        key = reading_key(t.seller_meter, interval)
        reading = state.get(READINGS, key)
        assert reading is not None
        state.put(READINGS, key, replace(reading, sold_wh=reading.sold_wh + wh))
    amounts = payouts(t, record.paid_wh, total)
    for payee, amount in amounts:
        if amount:
            state.credit(payee, amount)
    record_sale(state, t.seller, sum(wh for _, wh in newly), sum(a for p, a in amounts if p == t.seller))
    state.put(
        CONTRACTS,
        s.contract,
        replace(
            record,
            remaining=record.remaining - sum(a for _, a in amounts),
            paid=s.deliveries,
            paid_wh=total,
            settled=True,
            settled_seq=max(s.seq, record.settled_seq),
            last_change_height=env.height,
        ),
    )


# --- close -----------------------------------------------------------------------------


def validate_close_contract(payload: CloseContract, params: ChainParams) -> None:
    """Nothing to check without state."""


def apply_close_contract(state: StateView, env: BlockEnv, sender: Address, payload: CloseContract) -> None:
    record = open_record(state, payload.contract)
    t = record.terms
    if not env.time_reached(interval_start(t.last_interval + 1)):
        raise DisputeWindowOpen("the contract's last interval has not ended")
    if env.height < record.last_change_height + t.dispute_window:
        raise DisputeWindowOpen(
            f"a later state may still be settled until height {record.last_change_height + t.dispute_window}"
        )
    if record.remaining:
        state.credit(t.buyer, record.remaining)
    state.put(CONTRACTS, payload.contract, replace(record, remaining=0, closed=True))


# --- equivocation ----------------------------------------------------------------------


def validate_report_equivocation(payload: ReportEquivocation, params: ChainParams) -> None:
    if not is_equivocation(payload.first.state, payload.second.state):
        raise NotEquivocation(
            "a fraud proof needs two different states of one contract with the same sequence number, "
            "or a later one acknowledging less in some interval than an earlier one"
        )


def apply_report_equivocation(
    state: StateView, env: BlockEnv, sender: Address, payload: ReportEquivocation
) -> None:
    cid = payload.first.state.contract
    record = state.get(CONTRACTS, cid)
    if record is None:
        raise UnknownContract(f"no contract {cid.hex()[:16]}")
    if not (
        is_signed_by_buyer(payload.first, record.buyer_key)
        and is_signed_by_buyer(payload.second, record.buyer_key)
    ):
        raise NotEquivocation("both states must carry the buyer's signature")
    if record.fraud_reported:
        raise FraudAlreadyReported(f"contract {cid.hex()[:16]}'s equivocation was already punished")
    forfeit_stake(state, env, record.terms.buyer, beneficiary=record.terms.seller)  # the wronged party
    state.put(CONTRACTS, cid, replace(record, fraud_reported=True))


def settle_checks(payload: SettleContract, state: StateView) -> list[SignatureCheck]:
    """The buyer's signature on the state, with the key of the buyer ``state``'s contract
    record names (``TxRules.keyed``; ``apply_settle_contract``'s check)."""
    record = state.get(CONTRACTS, payload.signed.state.contract)
    if record is None or record.closed:  # (refused before any signature is checked)
        return []
    return [state_check(payload.signed, record.buyer_key)]


def equivocation_checks(payload: ReportEquivocation, state: StateView) -> list[SignatureCheck]:
    """The buyer's signatures on both states (``TxRules.keyed``; ``apply_report_equivocation``'s)."""
    record = state.get(CONTRACTS, payload.first.state.contract)
    if record is None or payload.second.state.contract != payload.first.state.contract:
        return []  # (refused before any signature is checked)
    return [state_check(s, record.buyer_key) for s in (payload.first, payload.second)]


OPEN_RULES = TxRules(
    OpenContract,
    validate_open_contract,
    apply_open_contract,
    spends=lambda p: deposit(p.signed.terms),
    carried=lambda p, _chain_id, _sender: terms_checks(p.signed),
)
SETTLE_RULES = TxRules(SettleContract, validate_settle_contract, apply_settle_contract, keyed=settle_checks)
CLOSE_RULES = TxRules(CloseContract, validate_close_contract, apply_close_contract)
EQUIVOCATION_RULES = TxRules(
    ReportEquivocation, validate_report_equivocation, apply_report_equivocation, keyed=equivocation_checks
)
