"""The credit bank (seed 003, section 3.1.3): coin lent against a credit value read from the chain.

A *credit bank* is run by a consortium (its members' keys and a threshold, as a Helios controller):
``RegisterCreditBank``, signed by ``threshold`` members, publishes its criteria and moves the
capital it lends from the sender's account into the bank. A participant short of coin asks for
a loan (``RequestLoan``); the bank's criteria are the validation, applied by every node: the
borrower's *credit value*, computed from its history on chain (energy it sold, principal it
repaid, loans and principal it defaulted on, installments it missed), must reach the bank's
minimum, the principal may not exceed the bank's ``max_loan`` nor the value times
``coins_per_point``, and the borrower may owe nothing already. The principal goes to the
borrower's account, to buy energy with.

The loan is repaid on a schedule: ``installments`` equal parts of principal plus interest, one
due at the end of every ``every_intervals`` intervals from the loan's block. Repayment comes from
the borrower's later sales: whenever a contract pays it as a seller, ``repay_share_pct`` percent
of the payment goes to the bank until the loan is repaid; it may also pay from its balance
(``RepayLoan``). When an installment's interval has ended with less repaid than the schedule
asks, anyone may prove it (``ReportMissedRepayment``): the borrower's missed installments grow
(its credit value drops) and, after the last installment, the loan is *defaulted*. A borrower
with a loan not repaid gets no new loan (``LoanOutstanding``).

The capital (what was deposited, plus principal and interest repaid) stays the consortium's:
``WithdrawCapital``, signed by ``threshold`` members and numbered (``seq``, so each act is
accepted once), takes out what is not lent out.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec.structs import replace

from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import registered_id
from gridnet.encoding import U32, U63, AddressBytes, HashBytes, PublicKeyBytes, Wire
from gridnet.errors import (
    BankCapitalShort,
    CreditBankExists,
    CreditValueTooLow,
    InsufficientBalance,
    LoanOutstanding,
    LoanTooLarge,
    MalformedTransaction,
    NoOpenLoan,
    RepaymentNotDue,
    StaleWithdrawal,
    UnknownCreditBank,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import ACCOUNTS, StateView, register_table
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.helios import (
    MAX_MEMBERS,
    MemberSignature,
    check_consortium,
    check_consortium_shape,
)
from gridnet.ledger.txs.identity import require_identity
from gridnet.units import Address, Hash32, PublicKey, interval_of

MAX_INSTALLMENTS = 96
MAX_EVERY_INTERVALS = 7 * 96
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class CreditCriteria(Wire, frozen=True):
    """What a bank publishes: how it values a borrower's history and what it lends."""

    base_value: U63
    """Every participant's value before any history [points]."""
    per_kwh_sold: U63
    """Points per kWh a contract paid the participant for as its seller."""
    per_loan_repaid: U63
    """Points for ``max_loan`` of principal repaid (a smaller loan earns its share, so a
    history cannot be farmed with loans of next to nothing)."""
    per_default: U63
    """Points a defaulted loan takes off."""
    per_missed: U63
    """Points a missed installment takes off."""
    min_value: U63
    """The least value a borrower needs."""
    coins_per_point: U63
    """Principal lent per point of value [base units]."""
    max_loan: U63
    """The largest principal [base units]."""
    installments: U32
    every_intervals: U32
    """Between installments (the first is due this many intervals after the loan's block)."""
    interest_bps: U32
    """Interest over the whole loan [1/10,000 of the principal]."""
    repay_share_pct: U32
    """Share of each payment the borrower receives as a seller that goes to the bank [%]."""


class CreditBank(Wire, frozen=True):
    name: Name
    members: tuple[PublicKeyBytes, ...]
    threshold: U32
    criteria: CreditCriteria
    capital: U63
    """Coin it holds to lend [base units]."""
    lent: U63 = 0
    repaid: U63 = 0
    """Principal and interest repaid to it [base units]."""
    loans: U32 = 0
    defaults: U32 = 0
    withdrawn: U63 = 0
    """Capital its consortium took out (``WithdrawCapital``) [base units]."""
    withdrawals: U32 = 0
    """Its ``WithdrawCapital`` acts so far (the next must carry this plus one)."""


class RepaidToBank(Wire, frozen=True):
    """What a bank's loans have returned to it, principal and interest apart (each repayment
    is split in the loan's proportion: ``principal / owed`` of all it repaid so far, rounded
    down, is principal, the rest interest)."""

    principal: U63 = 0
    """Principal repaid [base units]: ``lent − principal`` is out on loan (defaults included)."""
    interest: U63 = 0
    """Interest received [base units]."""


class CreditHistory(Wire, frozen=True):
    """A participant's history as the credit value reads it (kept for every seller)."""

    sold_wh: U63 = 0
    """Energy contracts paid it for as their seller [Wh]."""
    loans_repaid: U32 = 0
    loans_defaulted: U32 = 0
    missed_installments: U32 = 0
    principal_repaid: U63 = 0
    """The principal of the loans it repaid before they defaulted [base units]."""
    principal_defaulted: U63 = 0
    """The principal of the loans it defaulted on [base units]."""


OPEN, REPAID, DEFAULTED = 0, 1, 2


class Loan(Wire, frozen=True):
    bank: HashBytes
    principal: U63
    owed: U63
    """Principal and interest [base units]."""
    repaid: U63
    first_due: U63
    """The interval at whose end the first installment is due."""
    every_intervals: U32
    installments: U32
    judged: U32 = 0
    """Installments whose due interval a ``ReportMissedRepayment`` has judged."""
    missed: U32 = 0
    status: U32 = OPEN
    """``OPEN``, ``REPAID`` or ``DEFAULTED`` (the record stays until the next loan)."""

    @property
    def outstanding(self) -> int:
        return self.owed - self.repaid

    def due_interval(self, k: int) -> int:
        """The interval at whose end installment ``k`` (1-based) is due."""
        return self.first_due + (k - 1) * self.every_intervals

    def due_by(self, k: int) -> int:
        """What must be repaid by the end of installment ``k``'s interval, rounded up (the
        schedule never asks less than its share) [base units]."""
        return -(-self.owed * k // self.installments)


BANKS = register_table("credit_banks", b"k", CreditBank)
HISTORIES = register_table("credit_histories", b"h", CreditHistory)
LOANS = register_table("credit_loans", b"l", Loan)
"""Borrower -> its latest loan."""
BANK_REPAID = register_table("credit_repaid", b"o", RepaidToBank)
"""Bank id -> what its loans have returned (none before the first repayment)."""


def bank_id(registrant: PublicKey, name: str) -> Hash32:
    """The id of the bank ``name`` registered by the key ``registrant`` (the sender of its
    ``RegisterCreditBank``): each registrant names its own, so nobody takes a name from another."""
    return registered_id(b"credit-bank/", registrant, name)


class RegisterCreditBank(Wire, frozen=True, tag=34):
    name: Name
    members: tuple[PublicKeyBytes, ...]
    """Ordered by key, each once."""
    threshold: U32
    criteria: CreditCriteria
    capital: U63
    """Coin the sender moves into the bank to lend [base units]."""
    signatures: tuple[MemberSignature, ...]


class RequestLoan(Wire, frozen=True, tag=35):
    bank: HashBytes
    principal: U63


class RepayLoan(Wire, frozen=True, tag=36):
    amount: U63
    """At most what is outstanding is taken."""


class ReportMissedRepayment(Wire, frozen=True, tag=37):
    borrower: AddressBytes


class WithdrawCapital(Wire, frozen=True, tag=57):
    """The bank's consortium takes capital that is not lent out."""

    bank: HashBytes
    seq: U32
    """The bank's withdrawals so far plus one: each act is accepted once."""
    to: AddressBytes
    amount: U63
    """[base units]"""
    signatures: tuple[MemberSignature, ...]


# --- the credit value -------------------------------------------------------------------------


def history_of(state: StateView, who: Address) -> CreditHistory:
    return state.get(HISTORIES, who) or CreditHistory()


def repayment_points(history: CreditHistory, c: CreditCriteria) -> int:
    """What repaid loans add to the value: ``per_loan_repaid`` for each ``max_loan`` of principal
    repaid net of the principal defaulted on, rounded down [points]. Weighted by principal, so
    loans of 1 base unit repaid add nothing, and a default cancels as much repaid history."""
    net = max(0, history.principal_repaid - history.principal_defaulted)
    return c.per_loan_repaid * net // c.max_loan if c.max_loan else 0


def credit_value(history: CreditHistory, c: CreditCriteria) -> int:
    """A participant's credit value under a bank's criteria [points]; it may be negative."""
    return (
        c.base_value
        + c.per_kwh_sold * history.sold_wh // 1000
        + repayment_points(history, c)
        - c.per_default * history.loans_defaulted
        - c.per_missed * history.missed_installments
    )


def interest_on(principal: int, interest_bps: int) -> int:
    """The interest on a loan, rounded up: a bank never receives less than its terms [base units]."""
    return -(-principal * interest_bps // 10_000)


def loan_limit(history: CreditHistory, c: CreditCriteria) -> int:
    """The largest principal the criteria lend on this history [base units]."""
    return max(0, min(c.max_loan, credit_value(history, c) * c.coins_per_point))


def _bank(state: StateView, bid: bytes) -> CreditBank:
    found = state.get(BANKS, bid)
    if found is None:
        raise UnknownCreditBank(f"no credit bank {bid.hex()[:16]}")
    return found


def _owing(state: StateView, who: Address) -> Loan:
    loan = state.get(LOANS, who)
    if loan is None or loan.status == REPAID:
        raise NoOpenLoan(f"{address_to_text(who)} owes no credit bank anything")
    return loan


def repaid_to(state: StateView, bid: bytes) -> RepaidToBank:
    return state.get(BANK_REPAID, bid) or RepaidToBank()


def _principal_in(loan: Loan, repaid: int) -> int:
    """The principal in the first ``repaid`` base units repaid on ``loan``: its share
    ``principal / owed``, rounded down (all of it once the loan is repaid)."""
    return repaid * loan.principal // loan.owed


def _repay(state: StateView, who: Address, loan: Loan, amount: int) -> None:
    """``amount`` (at most what is outstanding, already taken from ``who``) goes to the bank."""
    bank = _bank(state, loan.bank)
    state.put(BANKS, loan.bank, replace(bank, capital=bank.capital + amount, repaid=bank.repaid + amount))
    principal = _principal_in(loan, loan.repaid + amount) - _principal_in(loan, loan.repaid)
    books = repaid_to(state, loan.bank)
    interest = amount - principal
    books = replace(books, principal=books.principal + principal, interest=books.interest + interest)
    state.put(BANK_REPAID, loan.bank, books)
    loan = replace(loan, repaid=loan.repaid + amount)
    if loan.outstanding == 0:
        if loan.status == OPEN:  # (a defaulted loan repaid late stays a default in the history)
            history = history_of(state, who)
            history = replace(
                history,
                loans_repaid=history.loans_repaid + 1,
                principal_repaid=history.principal_repaid + loan.principal,
            )
            state.put(HISTORIES, who, history)
        loan = replace(loan, status=REPAID)
    state.put(LOANS, who, loan)


def record_sale(state: StateView, seller: Address, wh: int, paid: int) -> None:
    """A settled contract paid ``seller`` ``paid`` base units for ``wh`` Wh (already credited):
    its history grows, and a share of the payment repays its loan if it owes one."""
    if wh:
        history = history_of(state, seller)
        state.put(HISTORIES, seller, replace(history, sold_wh=history.sold_wh + wh))
    loan = state.get(LOANS, seller)
    if loan is None or loan.status == REPAID or not paid:
        return
    share = _bank(state, loan.bank).criteria.repay_share_pct
    amount = min(loan.outstanding, paid * share // 100)
    if amount:
        acct = state.account(seller)
        state.put(ACCOUNTS, seller, replace(acct, balance=acct.balance - amount))
        _repay(state, seller, loan, amount)


# --- rules ------------------------------------------------------------------------------------


def criteria_problem(c: CreditCriteria) -> str | None:
    """What makes ``c`` criteria the chain refuses (None: nothing): what
    ``validate_register_bank`` checks of them, and ``gridnet tx register-credit-bank`` before
    anything is signed."""
    if not 1 <= c.installments <= MAX_INSTALLMENTS or not 1 <= c.every_intervals <= MAX_EVERY_INTERVALS:
        return f"installments must be 1 to {MAX_INSTALLMENTS}, every_intervals 1 to {MAX_EVERY_INTERVALS}"
    if c.interest_bps > 10_000 or not 1 <= c.repay_share_pct <= 100:
        return "interest_bps must be 0 to 10,000 and repay_share_pct 1 to 100"
    return None


def validate_register_bank(payload: RegisterCreditBank, params: ChainParams) -> None:
    check_consortium_shape(payload.members, payload.threshold, payload.signatures)
    if (problem := criteria_problem(payload.criteria)) is not None:
        raise MalformedTransaction(problem)
    if payload.capital < 1:
        raise MalformedTransaction("a bank needs capital to lend")


def apply_register_bank(
    state: StateView, env: BlockEnv, sender: Address, payload: RegisterCreditBank
) -> None:
    bid = bank_id(env.sender_key, payload.name)
    if state.get(BANKS, bid) is not None:
        raise CreditBankExists(
            f"{address_to_text(sender)} has registered a credit bank named {payload.name!r} already"
        )
    act = replace(payload, signatures=())
    check_consortium(
        env.chain_id, act, payload.members, payload.threshold, payload.signatures, "registering the bank",
        registrant=env.sender_key,
    )  # fmt: skip
    acct = state.account(sender)
    if acct.balance < payload.capital:
        raise InsufficientBalance(
            f"the capital {payload.capital} exceeds the sender's balance {acct.balance}"
        )
    state.put(ACCOUNTS, sender, replace(acct, balance=acct.balance - payload.capital))
    bank = CreditBank(payload.name, payload.members, payload.threshold, payload.criteria, payload.capital)
    state.put(BANKS, bid, bank)


def validate_request_loan(payload: RequestLoan, params: ChainParams) -> None:
    if payload.principal < 1:
        raise MalformedTransaction("a loan of nothing")


def apply_request_loan(state: StateView, env: BlockEnv, sender: Address, payload: RequestLoan) -> None:
    require_identity(state, sender, "borrowing")  # (one identity, one history: no fresh addresses)
    bank = _bank(state, payload.bank)
    c = bank.criteria
    previous = state.get(LOANS, sender)
    if previous is not None and previous.status != REPAID:
        raise LoanOutstanding(f"{previous.outstanding} base units of its last loan are not repaid")
    history = history_of(state, sender)
    value = credit_value(history, c)
    if value < c.min_value:
        raise CreditValueTooLow(f"credit value {value} is below {bank.name}'s minimum {c.min_value}")
    limit = loan_limit(history, c)
    if payload.principal > limit:
        raise LoanTooLarge(f"{payload.principal} base units asked; {bank.name} lends it at most {limit}")
    if payload.principal > bank.capital:
        raise BankCapitalShort(f"{bank.name} holds {bank.capital} base units; {payload.principal} asked")
    owed = payload.principal + interest_on(payload.principal, c.interest_bps)
    first_due = interval_of(env.timestamp) + c.every_intervals
    loan = Loan(payload.bank, payload.principal, owed, 0, first_due, c.every_intervals, c.installments)
    state.put(LOANS, sender, loan)
    state.put(
        BANKS,
        payload.bank,
        replace(
            bank,
            capital=bank.capital - payload.principal,
            lent=bank.lent + payload.principal,
            loans=bank.loans + 1,
        ),
    )
    state.credit(sender, payload.principal)


def validate_repay(payload: RepayLoan, params: ChainParams) -> None:
    if payload.amount < 1:
        raise MalformedTransaction("a repayment of nothing")


def apply_repay(state: StateView, env: BlockEnv, sender: Address, payload: RepayLoan) -> None:
    loan = _owing(state, sender)
    amount = min(payload.amount, loan.outstanding)
    acct = state.account(sender)
    if acct.balance < amount:
        raise InsufficientBalance(f"a repayment of {amount} exceeds the balance {acct.balance}")
    state.put(ACCOUNTS, sender, replace(acct, balance=acct.balance - amount))
    _repay(state, sender, loan, amount)


def _no_check(payload: object, params: ChainParams) -> None:
    """Nothing to check without the state."""


def apply_report_missed(
    state: StateView, env: BlockEnv, sender: Address, payload: ReportMissedRepayment
) -> None:
    who = payload.borrower
    loan = _owing(state, who)
    now = interval_of(env.timestamp)
    ended = sum(1 for k in range(1, loan.installments + 1) if loan.due_interval(k) < now)
    # every installment ended since the last report and not covered by what is repaid is
    # missed (one report judges them all: a late report counts as many as timely ones)
    missed = sum(1 for k in range(loan.judged + 1, ended + 1) if loan.repaid < loan.due_by(k))
    if missed == 0:
        raise RepaymentNotDue(
            f"{address_to_text(who)} has repaid {loan.repaid} of the {loan.due_by(ended)} due by installment "
            f"{ended} (installments judged: {loan.judged})"
        )
    history = history_of(state, who)
    history = replace(history, missed_installments=history.missed_installments + missed)
    loan = replace(loan, judged=ended, missed=loan.missed + missed)
    if ended == loan.installments:  # the last installment has passed unpaid: a default
        history = replace(
            history,
            loans_defaulted=history.loans_defaulted + 1,
            principal_defaulted=history.principal_defaulted + loan.principal,
        )
        loan = replace(loan, status=DEFAULTED)
        bank = _bank(state, loan.bank)
        state.put(BANKS, loan.bank, replace(bank, defaults=bank.defaults + 1))
    state.put(HISTORIES, who, history)
    state.put(LOANS, who, loan)


def validate_withdraw(payload: WithdrawCapital, params: ChainParams) -> None:
    if payload.amount < 1:
        raise MalformedTransaction("a withdrawal of nothing")
    if len(payload.signatures) > MAX_MEMBERS:
        raise MalformedTransaction(f"at most {MAX_MEMBERS} signatures")


def apply_withdraw(state: StateView, env: BlockEnv, sender: Address, payload: WithdrawCapital) -> None:
    bank = _bank(state, payload.bank)
    if payload.seq != bank.withdrawals + 1:
        raise StaleWithdrawal(
            f"withdrawal number {payload.seq}; {bank.name}'s next is {bank.withdrawals + 1}"
        )
    act = replace(payload, signatures=())
    check_consortium(
        env.chain_id, act, bank.members, bank.threshold, payload.signatures, "withdrawing capital"
    )
    if payload.amount > bank.capital:
        raise BankCapitalShort(
            f"{bank.name} holds {bank.capital} base units not lent out; {payload.amount} asked"
        )
    state.put(
        BANKS,
        payload.bank,
        replace(
            bank,
            capital=bank.capital - payload.amount,
            withdrawn=bank.withdrawn + payload.amount,
            withdrawals=bank.withdrawals + 1,
        ),
    )
    state.credit(payload.to, payload.amount)


REGISTER_BANK_RULES = TxRules(RegisterCreditBank, validate_register_bank, apply_register_bank)
REQUEST_LOAN_RULES = TxRules(RequestLoan, validate_request_loan, apply_request_loan)
REPAY_RULES = TxRules(RepayLoan, validate_repay, apply_repay)
MISSED_RULES = TxRules(ReportMissedRepayment, _no_check, apply_report_missed)
WITHDRAW_RULES = TxRules(WithdrawCapital, validate_withdraw, apply_withdraw)


def bank_figures(
    view: StateView, registrant: PublicKey, name: str, borrower: Address | None
) -> dict[str, Any] | None:
    """A bank's published criteria and books, and with ``borrower`` that address's history,
    credit value, loan limit and latest loan (``GET /credit-banks/{name}?registrant=KEY``,
    ``gridnet chain credit-bank``); None when ``registrant`` registered no bank of that name."""
    bid = bank_id(registrant, name)
    bank = view.get(BANKS, bid)
    if bank is None:
        return None
    books = repaid_to(view, bid)
    figures: dict[str, Any] = {
        "bank": bank.name,
        "id": bid.hex(),
        "members": [k.hex() for k in bank.members],
        "threshold": bank.threshold,
        "criteria": msgspec.structs.asdict(bank.criteria),
        "capital": bank.capital,
        "lent": bank.lent,
        "repaid": bank.repaid,
        "principal_repaid": books.principal,
        "interest_repaid": books.interest,
        "on_loan": bank.lent - books.principal,
        "loans": bank.loans,
        "defaults": bank.defaults,
        "withdrawn": bank.withdrawn,
        "withdrawals": bank.withdrawals,
        "borrower": None,
    }
    if borrower is not None:
        history = history_of(view, borrower)
        loan = view.get(LOANS, borrower)
        figures.update(
            borrower=address_to_text(borrower),
            history=msgspec.structs.asdict(history),
            credit_value=credit_value(history, bank.criteria),
            loan_limit=loan_limit(history, bank.criteria),
            loan=None
            if loan is None
            else {
                **{f: getattr(loan, f) for f in loan.__struct_fields__ if f != "bank"},
                "bank": loan.bank.hex(),
                "outstanding": loan.outstanding,
                "status": ("open", "repaid", "defaulted")[loan.status],
            },
        )
    return figures
