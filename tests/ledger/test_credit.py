"""The credit bank (``ledger/txs/credit.py``): a consortium's bank lends coin against a credit
value read from the chain, is repaid from the borrower's later sales on a schedule, and a
missed installment, proven on chain, lowers the value and blocks new loans. Each rule broken,
its rejection named."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.contracts.channel import (
    ContractState,
    ContractTerms,
    Delivery,
    SignedTerms,
    contract_id,
    sign_state,
    sign_terms,
)
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import LoanTooLarge, MalformedTransaction
from gridnet.ledger.registry import Payload
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.contract import OpenContract, SettleContract
from gridnet.ledger.txs.credit import (
    BANKS,
    DEFAULTED,
    HISTORIES,
    LOANS,
    OPEN,
    REPAID,
    CreditCriteria,
    CreditHistory,
    RegisterCreditBank,
    RepaidToBank,
    RepayLoan,
    ReportMissedRepayment,
    RequestLoan,
    WithdrawCapital,
    bank_figures,
    bank_id,
    credit_value,
    history_of,
    loan_limit,
    repaid_to,
)
from gridnet.ledger.txs.helios import sign_as_member
from tests.helpers import sign
from tests.ledger.test_helios import (
    BUYER,
    BUYER_METER_KEY,
    COLLECTOR,
    MEMBERS,
    METER_KEY,
    OWNER,
    START,
    STRANGER,
    Helios,
    two_meters,
)

CRITERIA = CreditCriteria(
    base_value=10,  # a newcomer: 10 points ...
    per_kwh_sold=5,
    per_loan_repaid=20,
    per_default=100,
    per_missed=15,
    min_value=5,
    coins_per_point=1_000,  # ... so it may borrow 10,000 base units
    max_loan=50_000,
    installments=2,
    every_intervals=4,  # installments due at the end of 4 and 8 intervals after the loan's block
    interest_bps=1_000,  # 10 %
    repay_share_pct=50,
)


def bank_named(name: str) -> bytes:
    """The id of COLLECTOR's bank ``name`` (COLLECTOR registers the banks)."""
    return bank_id(COLLECTOR.public_key, name)


BANK = bank_named("Commons")


def bank_act(
    h: Helios,
    name: str = "Commons",
    keys: list[object] = MEMBERS[:2],
    registrant: PrivateKey = COLLECTOR,
    **changes: object,
) -> Payload:
    """A RegisterCreditBank of MEMBERS signed by ``keys`` for ``registrant`` to send."""
    members = tuple(k.public_key for k in MEMBERS)
    act = RegisterCreditBank(name, members, 2, CRITERIA, 1_000_000, ())
    act = msgspec.structs.replace(act, **changes)  # type: ignore[arg-type]
    sigs = tuple(
        sign_as_member(k, h.chain.chain_id, act, registrant=registrant.public_key)  # type: ignore[arg-type]
        for k in keys
    )
    return msgspec.structs.replace(act, signatures=sigs)


@pytest.fixture
def h(tmp_path: Path) -> Helios:
    w = two_meters(tmp_path)
    w.mine(w.tx(COLLECTOR, bank_act(w)), interval=START)
    return w


def balance(h: Helios, who: bytes) -> int:
    return h.chain.view().account(who).balance


def test_a_bank_is_registered_by_its_consortium_with_its_capital(h: Helios) -> None:
    bank = h.chain.view().get(BANKS, BANK)
    assert bank is not None and bank.capital == 1_000_000 and bank.criteria == CRITERIA
    assert h.refused(COLLECTOR, bank_act(h, "Other", MEMBERS[:1])) == "InsufficientConsortium"
    assert h.refused(COLLECTOR, bank_act(h)) == "CreditBankExists"
    assert h.refused(COLLECTOR, bank_act(h, "Rich", capital=10**18)) == "InsufficientBalance"
    for bad in (
        {"criteria": msgspec.structs.replace(CRITERIA, installments=0)},
        {"criteria": msgspec.structs.replace(CRITERIA, repay_share_pct=0)},
        {"criteria": msgspec.structs.replace(CRITERIA, interest_bps=10_001)},
        {"capital": 0},
        {"threshold": 4},
    ):
        with pytest.raises(MalformedTransaction):
            validate_transaction(
                sign(h.chain, COLLECTOR, bank_act(h, "X", **bad), 0), h.chain.params, h.chain.chain_id
            )


def test_a_registration_copied_by_another_key_is_refused_and_takes_nothing(tmp_path: Path) -> None:
    """A bank's id was the hash of its name alone: a stranger who saw a RegisterCreditBank
    pending sent a copy first, and the registrant's was refused as CreditBankExists. Each
    registrant's names are its own, and the members sign a registration for the key that
    sends it: a copy carries no valid signature (it made a look-alike bank, the same name and
    members, under the copier's key). A bank the members form for another registrant is its
    own, and a loan from the first comes from the first's capital."""
    w = two_meters(tmp_path)
    act = bank_act(w)
    assert w.refused(STRANGER, act) == "InsufficientConsortium"
    w.mine(w.tx(STRANGER, bank_act(w, registrant=STRANGER)), w.tx(COLLECTOR, act), interval=START)
    theirs = bank_id(STRANGER.public_key, "Commons")
    assert theirs != BANK and w.chain.view().get(BANKS, theirs) is not None
    w.mine(w.tx(OWNER, RequestLoan(BANK, 1_000)))
    view = w.chain.view()
    ours, other = view.get(BANKS, BANK), view.get(BANKS, theirs)
    assert ours is not None and other is not None and (ours.lent, other.lent) == (1_000, 0)
    assert view.get(LOANS, OWNER.address).bank == BANK  # type: ignore[union-attr]
    assert w.refused(STRANGER, bank_act(w, registrant=STRANGER)) == "CreditBankExists"


def test_a_loan_is_judged_on_the_published_criteria(h: Helios) -> None:
    assert h.refused(OWNER, RequestLoan(bank_named("Nobody"), 1_000)) == "UnknownCreditBank"
    assert h.refused(STRANGER, RequestLoan(BANK, 1_000)) == "UnknownIdentity"  # no identity, no history
    assert h.refused(OWNER, RequestLoan(BANK, 10_001)) == "LoanTooLarge"  # 10 points x 1,000
    strict = bank_act(h, "Strict", criteria=msgspec.structs.replace(CRITERIA, min_value=11))
    poor = bank_act(h, "Poor", capital=5_000)
    h.mine(h.tx(COLLECTOR, strict), h.tx(COLLECTOR, poor))
    assert h.refused(OWNER, RequestLoan(bank_named("Strict"), 1_000)) == "CreditValueTooLow"
    assert h.refused(OWNER, RequestLoan(bank_named("Poor"), 6_000)) == "BankCapitalShort"
    with pytest.raises(MalformedTransaction):
        validate_transaction(sign(h.chain, OWNER, RequestLoan(BANK, 0), 0), h.chain.params, h.chain.chain_id)

    before = balance(h, OWNER.address)
    tx = h.tx(OWNER, RequestLoan(BANK, 10_000))
    h.mine(tx)
    view = h.chain.view()
    loan, bank = view.get(LOANS, OWNER.address), view.get(BANKS, BANK)
    assert loan is not None and loan.status == OPEN and (loan.principal, loan.owed) == (10_000, 11_000)
    assert bank is not None and bank.capital == 990_000 and bank.lent == 10_000
    assert balance(h, OWNER.address) - before == 10_000 - tx.fee
    assert h.refused(OWNER, RequestLoan(BANK, 1_000)) == "LoanOutstanding"
    assert h.refused(OWNER, RequestLoan(bank_named("Poor"), 1_000)) == "LoanOutstanding"  # at any bank


def sell(h: Helios, interval: int, wh: int, price: int = 1_000_000) -> None:
    """OWNER's meter exports ``wh`` in ``interval`` and a contract pays OWNER for it."""
    t = ContractTerms(
        h.chain.chain_id, BUYER.address, OWNER.address, BUYER_METER_KEY.address, METER_KEY.address, (), price,
        interval, interval, wh, 2, interval,
    )  # fmt: skip
    h.mine(h.tx(BUYER, OpenContract(SignedTerms(t, (sign_terms(t, BUYER), sign_terms(t, OWNER))))))
    h.readings(h.meter, interval, [(wh, 0)])
    state = sign_state(ContractState(contract_id(t), 1, (Delivery(interval, wh),)), BUYER)
    h.mine(h.tx(BUYER, SettleContract(state)))


def test_sales_repay_the_loan_and_a_repaid_loan_raises_the_value(h: Helios) -> None:
    h.mine(h.tx(OWNER, RequestLoan(BANK, 10_000)))
    before = balance(h, OWNER.address)
    sell(h, START + 3, 6)  # 6 Wh at 1,000,000 per kWh: 6,000 paid, half of it to the bank
    view = h.chain.view()
    loan = view.get(LOANS, OWNER.address)
    assert loan is not None and loan.repaid == 3_000 and loan.status == OPEN
    assert balance(h, OWNER.address) - before == 3_000
    assert history_of(view, OWNER.address).sold_wh == 6
    assert history_of(view, BUYER.address) == CreditHistory()  # buying is not selling

    assert h.refused(STRANGER, RepayLoan(1)) == "NoOpenLoan"
    with pytest.raises(MalformedTransaction):
        validate_transaction(sign(h.chain, OWNER, RepayLoan(0), 0), h.chain.params, h.chain.chain_id)
    h.mine(h.tx(OWNER, RepayLoan(10**9)))  # more than owed: only the 8,000 left is taken
    view = h.chain.view()
    loan, bank = view.get(LOANS, OWNER.address), view.get(BANKS, BANK)
    assert loan is not None and loan.status == REPAID and loan.repaid == 11_000
    assert bank is not None and bank.capital == 1_001_000 and bank.repaid == 11_000
    history = history_of(view, OWNER.address)
    assert (history.loans_repaid, history.principal_repaid) == (1, 10_000)
    assert credit_value(history, CRITERIA) == 10 + 20 * 10_000 // 50_000  # a fifth of max_loan repaid
    assert h.refused(OWNER, RepayLoan(1)) == "NoOpenLoan"
    assert loan_limit(history, CRITERIA) == 14_000
    assert h.refused(OWNER, RequestLoan(BANK, 14_001)) == "LoanTooLarge"
    h.mine(h.tx(OWNER, RequestLoan(BANK, 14_000)))  # a better history borrows more
    assert h.chain.view().get(LOANS, OWNER.address).principal == 14_000  # type: ignore[union-attr]


def test_a_missed_installment_lowers_the_value_and_the_last_one_defaults(h: Helios) -> None:
    h.mine(h.tx(BUYER, RequestLoan(BANK, 10_000)), interval=START + 1)
    loan = h.chain.view().get(LOANS, BUYER.address)
    assert loan is not None and loan.due_interval(1) == START + 5 and loan.due_interval(2) == START + 9
    assert h.refused(OWNER, ReportMissedRepayment(BUYER.address), START + 5) == "RepaymentNotDue"  # not over
    assert h.refused(OWNER, ReportMissedRepayment(OWNER.address), START + 6) == "NoOpenLoan"
    h.mine(h.tx(BUYER, RepayLoan(5_500)), interval=START + 5)  # the first installment, in time
    assert h.refused(OWNER, ReportMissedRepayment(BUYER.address), START + 6) == "RepaymentNotDue"  # paid

    h.mine(h.tx(OWNER, ReportMissedRepayment(BUYER.address)), interval=START + 10)  # the second: missed
    view = h.chain.view()
    loan, bank = view.get(LOANS, BUYER.address), view.get(BANKS, BANK)
    assert loan is not None and loan.status == DEFAULTED and loan.missed == 1 and loan.judged == 2
    assert bank is not None and bank.defaults == 1
    history = history_of(view, BUYER.address)
    assert (history.missed_installments, history.loans_defaulted, history.principal_defaulted) == (
        1,
        1,
        10_000,
    )
    assert credit_value(history, CRITERIA) == 10 - 100 - 15
    assert h.refused(OWNER, ReportMissedRepayment(BUYER.address)) == "RepaymentNotDue"  # judged already
    assert h.refused(BUYER, RequestLoan(BANK, 1)) == "LoanOutstanding"
    h.mine(h.tx(BUYER, RepayLoan(5_500)))  # it pays late: the loan is repaid, the default stays
    history = history_of(h.chain.view(), BUYER.address)
    assert (history.loans_repaid, history.principal_repaid) == (0, 0)  # (no credit for repaying it)
    assert h.chain.view().get(LOANS, BUYER.address).status == REPAID  # type: ignore[union-attr]
    assert h.refused(BUYER, RequestLoan(BANK, 1)) == "CreditValueTooLow"


def test_a_missed_first_installment_counts_once_and_blocks_new_loans(h: Helios) -> None:
    h.mine(h.tx(BUYER, RequestLoan(BANK, 10_000)), interval=START + 1)
    h.mine(h.tx(OWNER, ReportMissedRepayment(BUYER.address)), interval=START + 6)
    view = h.chain.view()
    loan = view.get(LOANS, BUYER.address)
    assert loan is not None and loan.status == OPEN and (loan.missed, loan.judged) == (1, 1)
    assert view.get(HISTORIES, BUYER.address) == CreditHistory(missed_installments=1)
    assert h.refused(OWNER, ReportMissedRepayment(BUYER.address), START + 7) == "RepaymentNotDue"
    assert h.refused(BUYER, RequestLoan(BANK, 1)) == "LoanOutstanding"


def test_a_bank_and_a_borrower_are_queryable(h: Helios, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from fastapi.testclient import TestClient

    from gridnet.crypto.address import address_to_text
    from gridnet.node.api import create_app
    from gridnet.node.client import BorrowerAnswer, CreditBankAnswer, expect
    from gridnet.node.node import Node

    h.mine(h.tx(OWNER, RequestLoan(BANK, 4_000)))
    node = Node("n", h.chain)
    with TestClient(create_app(node, clock=lambda: h.clock, broadcast=lambda _out: None)) as client:
        by = {"registrant": COLLECTOR.public_key.hex()}
        borrower = {**by, "borrower": address_to_text(OWNER.address)}
        body = client.get("/credit-banks/Commons", params=borrower).json()
        assert (body["capital"], body["lent"], body["loans"]) == (996_000, 4_000, 1)
        assert body["criteria"]["installments"] == 2 and body["credit_value"] == 10
        assert body["loan"]["outstanding"] == 4_400 and body["loan"]["status"] == "open"
        # What `chain credit-bank --node` takes as a node's answer (else "is it a GRIDNET node?"):
        expect(body, BorrowerAnswer, "borrower")
        expect(client.get("/credit-banks/Commons", params=by).json(), CreditBankAnswer, "bank")
        missing = client.get("/credit-banks/nowhere", params=by)
        assert missing.status_code == 404 and missing.json()["code"] == "NotFound"
    h.chain.close()
    out = subprocess.run(
        [sys.executable, "-m", "gridnet", "chain", "credit-bank", "--data-dir", str(tmp_path / "c"),
         "--name", "Commons", "--registrant", COLLECTOR.public_key.hex(), "--borrower",
         address_to_text(OWNER.address), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    assert figures["loan_limit"] == 10_000 and figures["loan"]["principal"] == 4_000


def test_a_late_report_counts_every_installment_it_judges_unpaid(h: Helios) -> None:
    """One report after both installments ended unpaid counted one missed installment, as
    many as a report after the first: how many a borrower missed depended on when someone
    reported. Each installment ended since the last report and not covered is missed; one
    repaid late, before the report, is not."""
    h.mine(h.tx(BUYER, RequestLoan(BANK, 10_000)), interval=START + 1)
    h.mine(h.tx(OWNER, ReportMissedRepayment(BUYER.address)), interval=START + 10)  # both ended
    view = h.chain.view()
    loan = view.get(LOANS, BUYER.address)
    assert loan is not None and (loan.missed, loan.judged, loan.status) == (2, 2, DEFAULTED)
    assert history_of(view, BUYER.address).missed_installments == 2
    h.mine(h.tx(OWNER, RequestLoan(BANK, 10_000)), interval=START + 11)
    h.mine(h.tx(OWNER, RepayLoan(5_500)), interval=START + 16)  # the first, late but before a report
    h.mine(h.tx(BUYER, ReportMissedRepayment(OWNER.address)), interval=START + 20)
    loan = h.chain.view().get(LOANS, OWNER.address)
    assert loan is not None and (loan.missed, loan.judged, loan.status) == (1, 2, DEFAULTED)


def test_interest_rounds_up_so_a_bank_never_receives_less_than_its_terms(h: Helios) -> None:
    """10 % of 9 base units is 0.9: the borrower owes 10, not 9 (rounded down, a small loan, or
    a 1 bps bank's every loan under 10,000 base units, paid no interest at all); and by the
    first of two installments half of 11 is due rounded up, 6."""
    h.mine(h.tx(OWNER, RequestLoan(BANK, 9)), interval=START + 1)
    loan = h.chain.view().get(LOANS, OWNER.address)
    assert loan is not None and loan.owed == 10
    h.mine(h.tx(OWNER, RepayLoan(10)))
    h.mine(h.tx(BUYER, RequestLoan(BANK, 10)), interval=START + 2)
    loan = h.chain.view().get(LOANS, BUYER.address)
    assert loan is not None and loan.owed == 11 and loan.due_by(1) == 6 and loan.due_by(2) == 11
    h.mine(h.tx(BUYER, RepayLoan(5)), interval=START + 6)
    h.mine(h.tx(OWNER, ReportMissedRepayment(BUYER.address)), interval=START + 7)  # 5 of 6 due: missed
    assert history_of(h.chain.view(), BUYER.address).missed_installments == 1


def test_the_books_split_what_is_repaid_into_principal_and_interest(h: Helios) -> None:
    """``repaid`` mixes principal with interest, so ``lent − repaid`` never said what is out on
    loan (after one loan of 10,000 repaid with its 1,000 interest: −1,000); ``credit_repaid``
    holds the principal repaid apart, each repayment split in the loan's proportion."""
    h.mine(h.tx(OWNER, RequestLoan(BANK, 10_000)))
    sell(h, START + 3, 6)  # 3,000 repaid: 3,000 × 10,000 / 11,000 = 2,727 of it principal
    assert repaid_to(h.chain.view(), BANK) == RepaidToBank(principal=2_727, interest=273)
    figures = bank_figures(h.chain.view(), COLLECTOR.public_key, "Commons", None)
    assert figures is not None and figures["on_loan"] == 10_000 - 2_727
    h.mine(h.tx(OWNER, RepayLoan(8_000)))
    assert repaid_to(h.chain.view(), BANK) == RepaidToBank(principal=10_000, interest=1_000)
    h.mine(h.tx(BUYER, RequestLoan(BANK, 10_000)), interval=START + 10)
    h.mine(h.tx(OWNER, ReportMissedRepayment(BUYER.address)), interval=START + 30)  # a default
    figures = bank_figures(h.chain.view(), COLLECTOR.public_key, "Commons", None)
    assert figures is not None and (figures["lent"], figures["on_loan"], figures["repaid"]) == (
        20_000,
        10_000,
        11_000,
    )
    assert (figures["principal_repaid"], figures["interest_repaid"], figures["defaults"]) == (
        10_000,
        1_000,
        1,
    )


def withdrawal(
    h: Helios, seq: int, amount: int, keys: list[object] = MEMBERS[:2], bank: bytes = BANK
) -> Payload:
    act = WithdrawCapital(bank, seq, STRANGER.address, amount, ())
    sigs = tuple(sign_as_member(k, h.chain.chain_id, act) for k in keys)  # type: ignore[arg-type]
    return msgspec.structs.replace(act, signatures=sigs)


def test_the_consortium_withdraws_capital_not_lent_out_once_per_act(h: Helios) -> None:
    """The capital (1,000,000 deposited, what loans repay) could never leave the bank: its
    consortium now withdraws what is not lent out, each act once (``seq``: its withdrawals + 1)."""
    h.mine(h.tx(OWNER, RequestLoan(BANK, 10_000)))  # 990,000 left; 10,000 is lent out
    assert h.refused(COLLECTOR, withdrawal(h, 1, 990_001)) == "BankCapitalShort"
    assert h.refused(COLLECTOR, withdrawal(h, 1, 1_000, MEMBERS[:1])) == "InsufficientConsortium"
    assert h.refused(COLLECTOR, withdrawal(h, 1, 1_000, bank=bank_named("Nobody"))) == "UnknownCreditBank"
    assert h.refused(COLLECTOR, withdrawal(h, 2, 1_000)) == "StaleWithdrawal"
    for bad in (withdrawal(h, 1, 0), withdrawal(h, 1, 1, MEMBERS * 11)):
        with pytest.raises(MalformedTransaction):
            validate_transaction(sign(h.chain, COLLECTOR, bad, 0), h.chain.params, h.chain.chain_id)
    act = withdrawal(h, 1, 400_000)
    before = balance(h, STRANGER.address)
    h.mine(h.tx(COLLECTOR, act))
    assert balance(h, STRANGER.address) - before == 400_000
    bank = h.chain.view().get(BANKS, BANK)
    assert bank is not None and (bank.capital, bank.withdrawn, bank.withdrawals) == (590_000, 400_000, 1)
    assert h.refused(COLLECTOR, act) == "StaleWithdrawal"  # the same act again, by anyone
    assert h.refused(OWNER, act) == "StaleWithdrawal"
    h.mine(h.tx(COLLECTOR, withdrawal(h, 2, 590_000)))  # all that is not lent out
    assert h.refused(OWNER, RequestLoan(BANK, 1)) == "LoanOutstanding"
    h.mine(h.tx(OWNER, RepayLoan(11_000)))  # the loan comes back with its interest ...
    assert h.refused(COLLECTOR, withdrawal(h, 3, 11_001)) == "BankCapitalShort"
    h.mine(h.tx(COLLECTOR, withdrawal(h, 3, 11_000)))  # ... and is withdrawn
    assert h.chain.view().get(BANKS, BANK).capital == 0  # type: ignore[union-attr]


def test_farming_a_history_with_loans_of_next_to_nothing_does_not_pay(h: Helios) -> None:
    """``loans_repaid`` counted loans whatever their principal: two loans of 1 base unit, repaid
    with 2 of interest, took the limit from 10,000 to the whole max_loan of 50,000, to default
    on. Repaid history now counts by principal: ``per_loan_repaid`` points for each ``max_loan``
    repaid, net of what was defaulted on."""
    paid = 0
    for _ in range(5):
        h.mine(h.tx(OWNER, RequestLoan(BANK, 1)))
        h.mine(h.tx(OWNER, RepayLoan(2)))  # 1 of principal, 1 of interest (rounded up)
        paid += 1
    history = history_of(h.chain.view(), OWNER.address)
    assert (history.loans_repaid, history.principal_repaid) == (5, 5)
    limit, newcomers = loan_limit(history, CRITERIA), loan_limit(CreditHistory(), CRITERIA)
    assert limit == newcomers == 10_000
    h.refuse_vector(
        "credit_loans_of_one_unit_repaid_raise_no_limit",
        "a borrower that repaid five loans of 1 base unit (principal_repaid 5; counted by loans "
        "its limit would be max_loan, 50,000) asks for 10,001, above a newcomer's limit",
        OWNER,
        RequestLoan(BANK, 10_001),
        LoanTooLarge,
    )
    h.mine(h.tx(OWNER, RequestLoan(BANK, limit)), interval=START + 1)  # the loan it means to default on
    h.mine(h.tx(COLLECTOR, ReportMissedRepayment(OWNER.address)), interval=START + 20)
    loan = h.chain.view().get(LOANS, OWNER.address)
    assert loan is not None and loan.status == DEFAULTED
    profit = loan.principal - newcomers - paid  # what it defaulted on beyond a newcomer's, less the farming
    assert profit == -paid  # (counted by loans, it defaulted on 50,000: 40,000 more, for 5 of interest)
    history = history_of(h.chain.view(), OWNER.address)
    assert history.principal_defaulted == 10_000 and credit_value(history, CRITERIA) < CRITERIA.min_value


def test_repaid_principal_raises_the_limit_in_proportion_and_a_default_cancels_it(h: Helios) -> None:
    """A history is worth what was repaid on it: 50,000 of principal repaid (max_loan) earns
    per_loan_repaid points; a default cancels the principal it took besides its per_default."""
    history = CreditHistory(loans_repaid=3, principal_repaid=50_000)
    assert credit_value(history, CRITERIA) == 10 + 20
    assert credit_value(msgspec.structs.replace(history, principal_repaid=49_999), CRITERIA) == 10 + 19
    defaulted = msgspec.structs.replace(history, loans_defaulted=1, principal_defaulted=20_000)
    assert credit_value(defaulted, CRITERIA) == 10 + 20 * 30_000 // 50_000 - 100
    no_loans = msgspec.structs.replace(CRITERIA, max_loan=0)  # a bank that lends nothing
    assert credit_value(history, no_loans) == 10 and loan_limit(history, no_loans) == 0


def test_credit_vectors_pin_the_principal_weighted_history_and_the_limit(h: Helios) -> None:
    """The consensus vectors (tests/vectors/credit_*.json) of the limit read from a history
    weighted by principal: a newcomer's limit (10 points x 1,000), a repaid loan adding its
    principal to ``principal_repaid`` and so 20 x 10,000 / 50,000 = 4 points to the limit, a
    default adding its principal to ``principal_defaulted``, which cancels as much repaid
    principal in the limit (at a bank that takes nothing else off for a default). Each limit
    once met, once exceeded by one base unit (``LoanTooLarge``)."""
    h.refuse_vector(
        "credit_loan_above_a_newcomers_limit",
        "a borrower with no history (credit value 10, 1,000 base units a point) asks for 10,001",
        OWNER,
        RequestLoan(BANK, 10_001),
        LoanTooLarge,
    )
    h.mine_vector(
        "credit_loan_at_a_newcomers_limit",
        "a borrower with no history borrows its limit, 10,000 (owed 11,000 at 10 % interest)",
        h.tx(OWNER, RequestLoan(BANK, 10_000)),
    )
    h.mine_vector(
        "credit_loan_repaid_adds_its_principal",
        "the borrower repays the 11,000 it owes: the loan is repaid, its history's loans_repaid "
        "becomes 1 and principal_repaid 10,000",
        h.tx(OWNER, RepayLoan(11_000)),
    )
    history = history_of(h.chain.view(), OWNER.address)
    assert (history.loans_repaid, history.principal_repaid) == (1, 10_000)
    assert loan_limit(history, CRITERIA) == 14_000
    h.refuse_vector(
        "credit_loan_above_the_principal_weighted_limit",
        "after 10,000 of principal repaid (a fifth of max_loan 50,000: 4 of per_loan_repaid's 20 "
        "points), the borrower's limit is 14,000; it asks for 14,001",
        OWNER,
        RequestLoan(BANK, 14_001),
        LoanTooLarge,
    )
    h.mine_vector(
        "credit_loan_at_the_principal_weighted_limit",
        "after 10,000 of principal repaid the borrower borrows its limit of 14,000",
        h.tx(OWNER, RequestLoan(BANK, 14_000)),
    )
    loan = h.chain.view().get(LOANS, OWNER.address)
    assert loan is not None and (loan.principal, loan.owed) == (14_000, 15_400)
    h.mine_vector(
        "credit_default_adds_its_principal_defaulted",
        "nothing was repaid by the second and last installment: a report makes the loan a "
        "default, the history's loans_defaulted 1 and principal_defaulted 14,000",
        h.tx(COLLECTOR, ReportMissedRepayment(OWNER.address)),
        interval=loan.due_interval(2) + 1,
    )
    history = history_of(h.chain.view(), OWNER.address)
    assert (history.principal_repaid, history.principal_defaulted, history.loans_defaulted) == (
        10_000,
        14_000,
        1,
    )
    lenient = msgspec.structs.replace(CRITERIA, per_default=0, per_missed=0)
    h.mine(h.tx(OWNER, RepayLoan(15_400)), h.tx(COLLECTOR, bank_act(h, "Lenient", criteria=lenient)))
    history = history_of(h.chain.view(), OWNER.address)
    assert loan_limit(history, lenient) == 10_000  # (counted without the default: 14,000)
    h.refuse_vector(
        "credit_default_cancels_repaid_principal_in_the_limit",
        "at a bank whose default and missed installments cost no points, a borrower that repaid "
        "10,000 of principal and defaulted on 14,000 (repaid late) has a newcomer's limit, "
        "10,000: the default cancels the repaid principal; it asks for 10,001",
        OWNER,
        RequestLoan(bank_named("Lenient"), 10_001),
        LoanTooLarge,
    )
    h.mine_vector(
        "credit_loan_at_the_limit_after_a_default",
        "at that bank the borrower borrows its limit, 10,000",
        h.tx(OWNER, RequestLoan(bank_named("Lenient"), 10_000)),
    )
