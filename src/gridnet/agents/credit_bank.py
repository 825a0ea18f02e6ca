"""The credit bank in the simulator (seed 003, section 3.1.3; ``ledger/txs/credit.py``).

``[credit_bank] enabled = true`` adds a bank run by a consortium (participant ``credit-bank``
and its ``members`` keys) that registers at the bootstrap with its criteria and capital. Of
the homes, ``borrowers`` (half of them, rounded up, the first homes with PV; the rest the
first without) start with ``borrower_start_gnc`` instead of ``[homes] start_gnc``: their
devices ask the bank for as much as its criteria lend them whenever their balance falls below
``borrow_below_gnc`` and they owe nothing, and in each installment's due interval pay what
their sales have not repaid from what their balance holds above ``borrow_below_gnc``. The bank proves
every installment that falls due unpaid (``ReportMissedRepayment``). Every decision is read
from the borrower's node's head, so a device never sends what the chain would refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec

from gridnet.agents.base import Agent
from gridnet.agents.roles import Role
from gridnet.errors import ConfigError
from gridnet.ledger.params import Allocation
from gridnet.ledger.state import IDENTITIES
from gridnet.ledger.txs.credit import (
    BANKS,
    LOANS,
    MAX_EVERY_INTERVALS,
    MAX_INSTALLMENTS,
    REPAID,
    CreditCriteria,
    Name,
    RegisterCreditBank,
    RepayLoan,
    ReportMissedRepayment,
    RequestLoan,
    bank_id,
    credit_value,
    history_of,
    loan_limit,
)
from gridnet.ledger.txs.helios import MAX_MEMBERS, sign_as_member
from gridnet.sim.scenario import IN_UNITS, MAX_GNC, MAX_HOMES, bounded, gnc, home_needs, on_chain
from gridnet.units import UNITS_PER_GNC, format_gnc, interval_of

if TYPE_CHECKING:
    from gridnet.agents.home import Home
    from gridnet.agents.world import World

WAIT_MS = 60 * 60_000
"""How long a device waits at most for its last loan request or repayment to show on chain."""


MAX_POINTS: Final = 1_000_000
"""The most points a criterion of the table gives or takes."""


@dataclass(frozen=True)
class CreditBankTable:
    enabled: bool = False
    name: str = on_chain("Commons", Name)
    members: int = bounded(3, 1, MAX_MEMBERS)
    threshold: int = bounded(2, 1, MAX_MEMBERS)
    capital_gnc: float = bounded(100.0, 0, MAX_GNC, "GNC")
    borrowers: int = bounded(4, 0, MAX_HOMES)
    """Homes that borrow: half (rounded up) the first with PV, the rest the first without."""
    borrower_start_gnc: float = bounded(3.0, 0, MAX_GNC, "GNC")
    """What the borrowers hold at the start (instead of ``[homes] start_gnc``)."""
    borrow_below_gnc: float = bounded(2.5, 0, MAX_GNC, "GNC")
    """A borrower's device asks for a loan when its balance falls below this."""
    base_value: int = bounded(10, 0, MAX_POINTS, "points")
    per_kwh_sold: int = bounded(5, 0, MAX_POINTS, "points")
    per_loan_repaid: int = bounded(20, 0, MAX_POINTS, "points")
    per_default: int = bounded(100, 0, MAX_POINTS, "points")
    per_missed: int = bounded(15, 0, MAX_POINTS, "points")
    min_value: int = bounded(5, 0, MAX_POINTS, "points")
    point_gnc: float = bounded(0.5, 0, MAX_GNC, "GNC")
    """Principal lent per point of credit value [GNC]."""
    max_loan_gnc: float = bounded(10.0, 0, MAX_GNC, "GNC")
    installments: int = bounded(4, 1, MAX_INSTALLMENTS)
    every_intervals: int = bounded(16, 1, MAX_EVERY_INTERVALS, "intervals")
    interest_bps: int = bounded(200, 0, 10_000, "bps")
    repay_share_pct: int = bounded(50, 1, 100, "%")

    def criteria(self) -> CreditCriteria:
        return CreditCriteria(
            self.base_value, self.per_kwh_sold, self.per_loan_repaid, self.per_default, self.per_missed,
            self.min_value, gnc(self.point_gnc), gnc(self.max_loan_gnc), self.installments,
            self.every_intervals, self.interest_bps, self.repay_share_pct,
        )  # fmt: skip


class CreditBankAgent(Agent):
    role = "credit_bank"

    def __init__(self, name: str, world: World) -> None:
        super().__init__(name, world.key(name), world.node_for(2))
        self.t: CreditBankTable = world.s.tables["credit_bank"]
        keys = [world.key(f"{name}/member-{i}") for i in range(self.t.members)]
        self.members = sorted(keys, key=lambda k: k.public_key)
        self.bid = bank_id(self.key.public_key, self.t.name)
        self.borrowers: list[Home] = []
        self.waiting: dict[bytes, tuple[Any, int]] = {}
        """Borrower -> its loan record when its device last sent a request or a repayment, and
        until when [ms] it waits for the chain to show a change."""
        self.reported: set[tuple[bytes, int]] = set()
        """(borrower, installments ended) the bank has reported missed."""
        self.requests = self.repayments = self.missed_reports = 0
        self.repaid_directly = 0
        self.figures: dict[str, Any] = {}

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(self.t.capital_gnc + 10))]

    def bootstrap(self, world: World) -> None:
        act = RegisterCreditBank(
            self.t.name, tuple(k.public_key for k in self.members), self.t.threshold, self.t.criteria(),
            gnc(self.t.capital_gnc), (),
        )  # fmt: skip
        chain_id = world.backend.chain_id
        signed = self.members[: self.t.threshold]
        signatures = tuple(sign_as_member(k, chain_id, act, registrant=self.key.public_key) for k in signed)
        world.submit(self, msgspec.structs.replace(act, signatures=signatures))

    def tick(self, world: World) -> None:
        now = world.now()
        interval = interval_of(now)
        for home in self.borrowers:
            view = world.look(home.node).view
            bank = view.get(BANKS, self.bid)
            if bank is None:
                return
            loan = view.get(LOANS, home.address)
            seen, until = self.waiting.get(home.address, (None, 0))
            if loan == seen and now < until:
                continue  # what it sent is not on chain yet
            balance = view.account(home.address).balance
            if loan is None or loan.status == REPAID:  # its device: borrow when short
                history = history_of(view, home.address)
                amount = min(loan_limit(history, bank.criteria), bank.capital)
                if (
                    view.get(IDENTITIES, home.address) is not None  # (a loan needs an identity)
                    and balance < gnc(self.t.borrow_below_gnc)
                    and credit_value(history, bank.criteria) >= bank.criteria.min_value
                    and amount > 0
                    and world.submit(home, RequestLoan(self.bid, amount))
                ):
                    self.requests += 1
                    self.waiting[home.address] = (loan, now + WAIT_MS)
                continue
            ended = sum(1 for k in range(1, loan.installments + 1) if loan.due_interval(k) < interval)
            due = [k for k in range(1, loan.installments + 1) if loan.due_interval(k) == interval]
            if due and (owed := loan.due_by(due[0]) - loan.repaid) > 0:  # its device pays what is due
                pay = min(owed, balance - gnc(self.t.borrow_below_gnc))  # (never below its reserve)
                if pay > 0 and world.submit(home, RepayLoan(pay)):
                    self.repayments += 1
                    self.repaid_directly += pay
                    self.waiting[home.address] = (loan, now + WAIT_MS)
            elif (
                ended > loan.judged
                and loan.repaid < loan.due_by(ended)
                and (home.address, ended) not in self.reported
                and world.submit(self, ReportMissedRepayment(home.address))
            ):  # the bank proves the installment missed
                self.reported.add((home.address, ended))
                self.missed_reports += 1

    def wrap_up(self, world: World) -> None:
        view = world.look(self.node).view
        bank = view.get(BANKS, self.bid)
        if bank is None:
            self.figures = {"enabled": True, "registered": False}
            return
        borrowers = []
        for home in self.borrowers:
            history = history_of(view, home.address)
            loan = view.get(LOANS, home.address)
            borrowers.append(
                {
                    "name": home.name,
                    "pv": home.pv_kw > 0,
                    "credit_value": credit_value(history, bank.criteria),
                    "may_borrow_gnc": loan_limit(history, bank.criteria) / UNITS_PER_GNC,
                    "sold_wh": history.sold_wh,
                    "loans_repaid": history.loans_repaid,
                    "principal_repaid_gnc": history.principal_repaid / UNITS_PER_GNC,
                    "loans_defaulted": history.loans_defaulted,
                    "principal_defaulted_gnc": history.principal_defaulted / UNITS_PER_GNC,
                    "missed_installments": history.missed_installments,
                    "loan": None
                    if loan is None
                    else {
                        "principal_gnc": loan.principal / UNITS_PER_GNC,
                        "outstanding_gnc": loan.outstanding / UNITS_PER_GNC,
                        "status": ("open", "repaid", "defaulted")[loan.status],
                    },
                }
            )
        self.figures = {
            "enabled": True,
            "registered": True,
            "bank": bank.name,
            "registrant": self.key.public_key.hex(),
            "capital_gnc": bank.capital / UNITS_PER_GNC,
            "loans": bank.loans,
            "lent_gnc": bank.lent / UNITS_PER_GNC,
            "repaid_gnc": bank.repaid / UNITS_PER_GNC,
            "repaid_from_sales_gnc": (bank.repaid - self.repaid_directly) / UNITS_PER_GNC,
            "repaid_directly_gnc": self.repaid_directly / UNITS_PER_GNC,
            "defaults": bank.defaults,
            "requests": self.requests,
            "repayments": self.repayments,
            "missed_reported": self.missed_reports,
            "borrowers": borrowers,
        }


def report(world: World, agents: Sequence[Agent]) -> dict[str, Any]:
    if not agents:
        return {"enabled": False}
    bank = agents[0]
    assert isinstance(bank, CreditBankAgent)
    return bank.figures


def build(world: World) -> list[Agent]:
    from gridnet.agents.home import Home

    t: CreditBankTable = world.s.tables["credit_bank"]
    if not t.enabled:
        return []
    where = f"{world.s.source}: [credit_bank]"
    if not 1 <= t.members <= MAX_MEMBERS or not 1 <= t.threshold <= t.members:
        raise ConfigError(f"{where} members must be 1 to {MAX_MEMBERS} and threshold 1 to members")
    if not 1 <= t.installments <= MAX_INSTALLMENTS or not 1 <= t.every_intervals <= MAX_EVERY_INTERVALS:
        raise ConfigError(
            f"{where} installments must be 1 to {MAX_INSTALLMENTS} "
            f"and every_intervals 1 to {MAX_EVERY_INTERVALS}"
        )
    if not 0 <= t.interest_bps <= 10_000 or not 1 <= t.repay_share_pct <= 100:
        raise ConfigError(f"{where} interest_bps must be 0 to 10000 and repay_share_pct 1 to 100")
    values = (t.base_value, t.per_kwh_sold, t.per_loan_repaid, t.per_default, t.per_missed, t.min_value)
    if min(values) < 0 or gnc(t.capital_gnc) <= 0 or t.point_gnc < 0 or t.max_loan_gnc < 0:
        raise ConfigError(
            f"{where} the criteria's points and amounts must be at least 0, capital_gnc above 0 {IN_UNITS}"
        )
    homes = world.of(Home)
    if not 0 <= t.borrowers <= len(homes):
        raise ConfigError(f"{where} borrowers must be 0 to [homes] count")
    if t.borrowers and gnc(t.borrower_start_gnc) < home_needs(world.s):  # (0 GNC: no fee paid, no end)
        raise ConfigError(
            f"{where} borrower_start_gnc must be at least {format_gnc(home_needs(world.s))}, what a home "
            "locks and pays to take part (as [homes] start_gnc must)"
        )
    bank = CreditBankAgent("credit-bank", world)
    with_pv = [h for h in homes if h.pv_kw > 0]
    without = [h for h in homes if h.pv_kw == 0]
    n_pv = min(len(with_pv), t.borrowers - min(len(without), t.borrowers // 2))
    bank.borrowers = with_pv[:n_pv] + without[: t.borrowers - n_pv]
    for home in bank.borrowers:
        home.start_gnc = t.borrower_start_gnc
    return [bank]


ROLE = Role("credit_bank", 76, build, table=CreditBankTable, report=report)
