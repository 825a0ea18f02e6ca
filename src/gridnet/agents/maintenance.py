"""Maintenance tenders in the simulator (seed 003, section 3.5; ``ledger/txs/maintenance.py``).

``[maintenance] enabled = true``: the manufacturer registers, at the bootstrap, the PV
inverter it sold each PV home (the first ``in_warranty`` of them still under warranty, the
others past it), and ``teams`` maintenance teams register as authorities. During the day the
inverters of ``failures`` PV homes fail, one after the other from ``first_failure_utc`` every
``failure_every_intervals``: the home's PV produces nothing until it is repaired. Its device
opens a tender with ``deposit_gnc``, ``reserve_gnc`` (the least price it accepts) and
``dispute_intervals`` (bidding for ``bid_intervals``); out of warranty every team and the vendor
bid (each at its own price: ``team_price_gnc`` times a factor of its own, the vendor at
``vendor_price_gnc``; the reserve when its price is below it), and the home awards it once
bidding has closed. The winner
services the inverter (``remote`` repairs take 1 interval, on-site ``onsite_intervals``),
claims it done and the home confirms it. The first team listed in ``withdrawing_team``
withdraws from the first tender it wins: the home gets its deposit and the team's penalty, and
tenders again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gridnet.agents.base import Agent
from gridnet.agents.manufacturer import Manufacturer, register_identity
from gridnet.agents.roles import Role
from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import hash32
from gridnet.errors import ConfigError
from gridnet.ledger.params import Allocation
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.authority import AUTHORITIES, RegisterAuthority
from gridnet.ledger.txs.maintenance import (
    CREDITS,
    DISPUTE_INTERVALS,
    EQUIPMENT,
    MAX_DISPUTE_INTERVALS,
    TENDERS,
    AwardTender,
    BidTender,
    ClaimTender,
    CompleteTender,
    Mode,
    OpenTender,
    RegisterEquipment,
    Status,
    WithdrawFromTender,
    equipment_id,
    penalty_of,
)
from gridnet.security.roles import Role as AuthorityRole
from gridnet.sim.scenario import IN_UNITS, MAX_GNC, MAX_HOMES, bounded, gnc, time_of_day
from gridnet.units import UNITS_PER_GNC, interval_of

if TYPE_CHECKING:
    from gridnet.agents.home import Home
    from gridnet.agents.world import World


@dataclass(frozen=True)
class MaintenanceTable:
    enabled: bool = False
    teams: int = bounded(2, 1, 16)
    failures: int = bounded(3, 0, MAX_HOMES)
    """PV homes whose inverter fails during the run."""
    in_warranty: int = bounded(1, 0, MAX_HOMES)
    """Of those, the first this many are still under the vendor's warranty."""
    first_failure_utc: str = "08:00"
    failure_every_intervals: int = bounded(8, 1, 96, "intervals")
    deposit_gnc: float = bounded(2.0, 0, MAX_GNC, "GNC")
    bid_intervals: int = bounded(2, 1, 96, "intervals")
    penalty_pct: int = bounded(10, 0, 100, "%")
    reserve_gnc: float = bounded(0.0, 0, MAX_GNC, "GNC")
    """Each tender's reserve, the least price it accepts (0: any)."""
    dispute_intervals: int = bounded(DISPUTE_INTERVALS, 1, MAX_DISPUTE_INTERVALS, "intervals")
    """How long a home may dispute a claimed repair."""
    team_price_gnc: float = bounded(0.8, 0, MAX_GNC, "GNC")
    """The first team's price; the n-th team asks (1 + n / 4) times it."""
    vendor_price_gnc: float = bounded(1.5, 0, MAX_GNC, "GNC")
    onsite_intervals: int = bounded(4, 1, 96, "intervals")
    remote_every: int = bounded(2, 1, MAX_HOMES)
    """Every this many-th failure can be repaired remotely (the rest need a visit)."""
    withdrawing_team: int = bounded(-1, -1, 15)
    """The index of a team that withdraws from the first tender it wins (-1: none)."""


@dataclass
class Case:
    """One failure and the tenders it took."""

    home: Home
    equipment: bytes
    fails_at: int
    mode: int
    warranty: bool
    tenders: list[bytes] = field(default_factory=list)
    """The OpenTender transaction ids, in order."""
    asked: set[tuple[bytes, str]] = field(default_factory=set)
    """(tender, step) already sent."""
    repaired_at: int | None = None
    service_until: int | None = None


class MaintenanceTeam(Agent):
    role = "maintenance_team"

    def __init__(self, name: str, world: World, index: int) -> None:
        super().__init__(name, world.key(name), world.node_for(index))
        self.index = index
        self.withdrew = False

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(10))]

    def bootstrap(self, world: World) -> None:
        register_identity(world, self)
        world.submit(self, RegisterAuthority(int(AuthorityRole.MAINTENANCE), self.name))


class MaintenanceDesk(Agent):
    """The tenders' choreography: each home's device, each team's and the vendor's bids."""

    role = "maintenance"

    def __init__(self, world: World, teams: list[MaintenanceTeam], homes: list[Home]) -> None:
        super().__init__("maintenance-desk", world.key("maintenance-desk"), world.node_for(0))
        self.t: MaintenanceTable = world.s.tables["maintenance"]
        self.teams = teams
        self.vendor = world.one(Manufacturer)
        first = world.first - world.first % 96 + time_of_day(self.t.first_failure_utc, "first_failure_utc")
        self.cases = [
            Case(
                home,
                equipment_id(self.vendor.address, f"INV-{home.name}"),
                first + n * self.t.failure_every_intervals,
                int(Mode.REMOTE) if n % self.t.remote_every == 0 else int(Mode.ON_SITE),
                n < self.t.in_warranty,
            )
            for n, home in enumerate(homes)
        ]

    def bootstrap(self, world: World) -> None:
        vendor = self.vendor
        for case in self.cases:
            warranty_until = world.last + 96 if case.warranty else world.first - 1
            act = RegisterEquipment(f"INV-{case.home.name}", case.home.address, "PV inverter", warranty_until)

            def ready(view: StateView) -> bool:
                return view.get(AUTHORITIES, vendor.address) is not None

            world.later(vendor, act, ready)

    def price(self, bidder: Agent) -> int:
        """What ``bidder`` asks: its own price, or the tenders' reserve when that is more."""
        if bidder is self.vendor:
            own = gnc(self.t.vendor_price_gnc)
        else:
            assert isinstance(bidder, MaintenanceTeam)
            own = round(gnc(self.t.team_price_gnc) * (1 + bidder.index / 4))
        return max(own, gnc(self.t.reserve_gnc))

    def once(self, world: World, case: Case, tid: bytes, step: str, who: Agent, payload: Any) -> None:
        if (tid, step) not in case.asked and world.submit(who, payload):
            case.asked.add((tid, step))

    def tick(self, world: World) -> None:
        now = interval_of(world.now())
        for case in self.cases:
            home = case.home
            if case.repaired_at is not None or now < case.fails_at:
                continue
            home.inverter_down = (case.fails_at, None)
            view = world.look(home.node).view
            if view.get(EQUIPMENT, case.equipment) is None:
                continue
            tender = view.get(TENDERS, case.tenders[-1]) if case.tenders else None
            if tender is None or tender.status in (Status.WITHDRAWN, Status.UNSERVED):
                if not case.tenders or tender is not None:  # (not while the last is on its way)
                    self.open(world, case, now)
                continue
            tid = case.tenders[-1]
            if tender.status == Status.OPEN:
                self.bid_and_award(world, case, tid, tender.bid_until, tender.bids, now)
            elif tender.status in (Status.AGREED, Status.CLAIMED):
                self.service(world, case, tid, tender.diagnosis_node, tender.status, tender.warranty, now)
            elif tender.status == Status.COMPLETED:
                home.inverter_down = (case.fails_at, now)
                case.repaired_at = now

    def open(self, world: World, case: Case, now: int) -> None:
        deposit = gnc(self.t.deposit_gnc)
        files = hash32(f"{case.home.name}/inverter/failure/{now}".encode())  # the service files' hash
        until = now + self.t.bid_intervals
        service = 1 if case.mode == Mode.REMOTE else self.t.onsite_intervals
        act = OpenTender(
            case.equipment, deposit, files, case.mode, until, self.t.penalty_pct, service + 4,
            self.t.dispute_intervals, gnc(self.t.reserve_gnc),
        )  # fmt: skip
        if world.submit(case.home, act):
            case.tenders.append(world.last_txid)

    def bid_and_award(
        self, world: World, case: Case, tid: bytes, bid_until: int, bids: tuple[Any, ...], now: int
    ) -> None:
        if now <= bid_until:
            bidders = {b.bidder for b in bids}
            for who in (*self.teams, self.vendor):
                if who.address in bidders:
                    continue
                price = self.price(who)
                view = world.look(who.node).view
                registered = who is self.vendor or view.get(AUTHORITIES, who.address) is not None
                affordable = view.account(who.address).balance > penalty_of(price, self.t.penalty_pct)
                if registered and affordable and price <= gnc(self.t.deposit_gnc):
                    self.once(world, case, tid, f"bid/{who.name}", who, BidTender(tid, price))
        else:
            self.once(world, case, tid, "award", case.home, AwardTender(tid))

    def service(
        self, world: World, case: Case, tid: bytes, node: bytes, status: int, warranty: bool, now: int
    ) -> None:
        team = next((t for t in self.teams if t.address == node), None)
        if team is not None and not warranty and team.index == self.t.withdrawing_team and not team.withdrew:
            team.withdrew = True  # it takes the job, then backs out: its penalty deposit is forfeit
            self.once(world, case, tid, "withdraw", team, WithdrawFromTender(tid))
            return
        if (tid, "withdraw") in case.asked:
            return  # (withdrawn: nothing to service or claim while the home's node still shows it agreed)
        if case.service_until is None or (tid, "serviced") not in case.asked:
            case.service_until = now + (1 if case.mode == Mode.REMOTE else self.t.onsite_intervals)
            case.asked.add((tid, "serviced"))
        if status == Status.CLAIMED:  # the home sees its inverter back and confirms at once
            self.once(world, case, tid, "complete", case.home, CompleteTender(tid))
        elif now >= case.service_until:  # serviced: the diagnosis node claims it done
            self.once(world, case, tid, "claim", team or self.vendor, ClaimTender(tid))

    def report(self, world: World) -> dict[str, Any]:
        view = world.look(self.node).view
        names = {a.address: a.name for a in (*self.teams, self.vendor)}
        tenders = []
        for case in self.cases:
            for tid in case.tenders:
                t = view.get(TENDERS, tid)
                if t is None:
                    continue
                tenders.append(
                    {
                        "home": case.home.name,
                        "device_type": t.device_type,
                        "warranty": t.warranty,
                        "mode": "remote" if t.mode == Mode.REMOTE else "on-site",
                        "status": Status(t.status).name.lower(),
                        "value_gnc": t.value / UNITS_PER_GNC,
                        "diagnosis_node": names.get(t.diagnosis_node, address_to_text(t.diagnosis_node))
                        if t.status != Status.UNSERVED
                        else None,
                        "credit": t.credit,
                        "bids": len(t.bids),
                        "service_files": t.service_files.hex(),
                    }
                )
        k0 = world.first
        return {
            "enabled": True,
            "failures": len(self.cases),
            "repaired": sum(1 for c in self.cases if c.repaired_at is not None),
            "repair_intervals": [
                None if c.repaired_at is None else c.repaired_at - c.fails_at for c in self.cases
            ],
            "pv_lost_wh": sum(
                c.home.pv_wh[i - k0]
                for c in self.cases
                for i in range(c.fails_at, (c.repaired_at if c.repaired_at is not None else world.last + 1))
                if 0 <= i - k0 < len(c.home.pv_wh)
            ),
            "tenders": tenders,
            "credits": {
                a.name: {"completed": c.completed, "withdrawn": c.withdrawn}
                for a in (*self.teams, self.vendor)
                if (c := view.get(CREDITS, a.address)) is not None
            },
        }

    def wrap_up(self, world: World) -> None:
        self.figures = self.report(world)


def report(world: World, agents: Sequence[Agent]) -> dict[str, Any]:
    desk = next((a for a in agents if isinstance(a, MaintenanceDesk)), None)
    return {"enabled": False} if desk is None else desk.figures


def build(world: World) -> list[Agent]:
    from gridnet.agents.home import Home

    t: MaintenanceTable = world.s.tables["maintenance"]
    if not t.enabled:
        return []
    where = f"{world.s.source}: [maintenance]"
    pv_homes = [h for h in world.of(Home) if h.pv_kw > 0]
    if not 1 <= t.teams <= 16 or not 0 <= t.failures <= len(pv_homes) or not 0 <= t.in_warranty <= t.failures:
        raise ConfigError(
            f"{where} teams must be 1 to 16, failures 0 to the PV homes, in_warranty 0 to failures"
        )
    if (
        min(gnc(t.deposit_gnc), gnc(t.team_price_gnc), gnc(t.vendor_price_gnc)) <= 0
        or not 0 <= t.penalty_pct <= 100
    ):
        raise ConfigError(f"{where} deposit and prices must be above 0 {IN_UNITS}, penalty_pct 0 to 100")
    if not 0 <= gnc(t.reserve_gnc) <= gnc(t.deposit_gnc):
        raise ConfigError(f"{where} reserve_gnc must be 0 to deposit_gnc")
    if not 1 <= t.dispute_intervals <= MAX_DISPUTE_INTERVALS:
        raise ConfigError(f"{where} dispute_intervals must be 1 to {MAX_DISPUTE_INTERVALS}")
    if min(t.bid_intervals, t.failure_every_intervals, t.onsite_intervals, t.remote_every) < 1:
        raise ConfigError(
            f"{where} bid_intervals, failure_every_intervals, onsite_intervals and remote_every "
            "must be 1 or more"
        )
    time_of_day(t.first_failure_utc, f"{where} first_failure_utc")
    teams = [MaintenanceTeam(f"maintenance-team-{i}", world, i) for i in range(t.teams)]
    return [*teams, MaintenanceDesk(world, teams, pv_homes[: t.failures])]


ROLE = Role("maintenance", 78, build, table=MaintenanceTable, report=report)
