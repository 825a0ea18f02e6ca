"""Helios energy credits in the simulator (seed 002; ``ledger/txs/helios.py``): a controller run
by a consortium of neighbours mints a credit per Wh each PV home's meter injected, from the
readings the collector puts on chain, at the frequency the home chose when it enrolled.

``[helios] enabled = true`` adds the controller. At the start each PV home enrolls its meter
(from the day's first interval); every simulated minute the controller looks at each enrolled
meter on its node's head and, once readings cover ``every_intervals`` intervals past the last
mint, has ``threshold`` members sign a mint up to the meter's latest reading, no further than
the intervals whose sales (contracts, the aggregators' trades) are final. Its report
section compares the credits minted with the energy the readings show injected over the
minted intervals and nobody bought (they must match).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from gridnet.agents.aggregator import DESK, AggregatorDesk
from gridnet.agents.base import Agent
from gridnet.agents.contracts import PATIENCE_MS
from gridnet.agents.meters import RELEASE, relay_command
from gridnet.agents.roles import Role
from gridnet.errors import ConfigError
from gridnet.ledger.params import Allocation
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.contract import CONTRACTS
from gridnet.ledger.txs.helios import (
    CONTROLLERS,
    DEFAULTED,
    DISCHARGED,
    ENROLLMENTS,
    ISLANDS,
    LAPSED,
    MAX_ISLAND_NODES,
    MAX_MEMBERS,
    MAX_SPAN_INTERVALS,
    MIN_CAP_W,
    REDEMPTIONS,
    CloseRedemption,
    EnrollProducer,
    IslandNode,
    MintCredits,
    Name,
    RedeemCredits,
    RegisterController,
    RegisterIsland,
    cap_wh,
    controller_id,
    credits_of,
    island_consents,
    sign_as_member,
)
from gridnet.ledger.txs.meter import METERS, READINGS, ReadingRecord, reading_key
from gridnet.sim.scenario import Scenario, bounded, gnc, on_chain
from gridnet.units import Interval, PublicKey, Wh, interval_of, interval_start

if TYPE_CHECKING:
    from gridnet.agents.home import Home
    from gridnet.agents.world import Deal, World


@dataclass(frozen=True)
class HeliosTable:
    enabled: bool = False
    name: str = on_chain("Helios", Name)
    """The controller's name (its id on chain is its hash)."""
    members: int = bounded(3, 1, MAX_MEMBERS)
    """Neighbours in the consortium that runs it."""
    threshold: int = bounded(2, 1, MAX_MEMBERS)
    """Member signatures a mint needs."""
    every_intervals: int = bounded(4, 1, MAX_SPAN_INTERVALS, "intervals")
    """How often a producer is credited (4: hourly, as the seed's controller)."""
    min_wh: int = bounded(1, 1, 1_000_000, "Wh")
    """The smallest mint a producer accepts [Wh]."""
    island: bool = False
    """The homes are the nodes of the consortium's island on one single-phase line, and the
    DSO's substation meter is its gateway to the grid."""
    inject_w: int = bounded(130, 0, 1_000_000, "W")
    """Most power a node may feed into the island's line [W] (the seed's node: a 130 W panel)."""
    withdraw_w: int = bounded(300, 0, 1_000_000, "W")
    """Most power a node may draw from it [W]."""
    redeem_hour_utc: int = bounded(-1, -1, 23)
    """From this hour (UTC) each producer redeems the credits it holds, once, and the
    controller releases that energy through its meter's release relay (needs ``island`` and
    ``[meters] devices``); -1: nobody redeems."""


def island_caps(s: Scenario) -> tuple[Wh, Wh] | None:
    """What every home may inject and withdraw an interval as a node of the scenario's Helios
    island [Wh]; None without one. A home plans (and sizes its balancing contract) within them
    from the start, before the island is on chain."""
    t: HeliosTable = s.tables["helios"]
    if not (t.enabled and t.island):
        return None
    return cap_wh(t.inject_w), cap_wh(t.withdraw_w)


@dataclass
class Release:
    """A redemption the controller releases: through ``home``'s meter's release relay."""

    home: Home
    wh: int
    started: bool = False
    """The release relay was closed (the energy put on the home's release feeder)."""
    stopped: int | None = None
    """The interval its relay was opened again."""
    close_sent: bool = False


HELIOS_CONTROLLER = "helios-controller"
"""The controller's participant name (its key is the world's key of that name)."""


class HeliosController(Agent):
    role = "helios"

    def __init__(self, name: str, world: World) -> None:
        super().__init__(name, world.key(name), world.node_for(1))
        self.t: HeliosTable = world.s.tables["helios"]
        keys = [world.key(f"{name}/member-{i}") for i in range(self.t.members)]
        self.members = sorted(keys, key=lambda k: k.public_key)
        self.cid = controller_id(self.key.public_key, self.t.name)
        self.producers: list[Home] = []
        self.asked: dict[bytes, int] = {}
        """Meter -> the interval its last mint asked for (until the chain shows it)."""
        self.mints = 0
        self.nodes: list[Home] = []
        """The island's nodes (``[helios] island``)."""
        self.releases: dict[bytes, Release] = {}
        """The RedeemCredits transaction's id -> its release."""
        self.redeemed: set[str] = set()
        self.relay_nonce = 0
        self.figures: dict[str, Any] = {}

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(10))]

    def bootstrap(self, world: World) -> None:
        from gridnet.agents.home import Home

        act = RegisterController(self.t.name, tuple(k.public_key for k in self.members), self.t.threshold, ())
        world.submit(self, self._signed(world, act, registrant=self.key.public_key))
        self.producers = [h for h in world.of(Home) if h.pv_kw > 0 and h.meter is not None]

        for home in self.producers:
            assert home.meter is not None
            meter = home.meter.meter_id
            enroll = EnrollProducer(self.cid, meter, self.t.every_intervals, self.t.min_wh, world.first)

            def ready(view: StateView, meter: bytes = meter) -> bool:
                return view.get(CONTROLLERS, self.cid) is not None and view.get(METERS, meter) is not None

            world.later(home, enroll, ready)  # (each home signs its own enrollment)
        if self.t.island:
            self.found_island(world)
        if self.t.redeem_hour_utc >= 0:  # the release feeders stay cut until a release
            for home in self.nodes:
                self.set_release_relay(home, closed=False, reason="no release due")

    def set_release_relay(self, home: Home, *, closed: bool, reason: str) -> None:
        """Close (release) or open a node's release relay, with a relay command it signs."""
        assert home.meter is not None and home.device_meter is not None
        self.relay_nonce += 1
        command = relay_command(self.key, home.meter.meter_id, RELEASE, not closed, self.relay_nonce, reason)
        home.device_meter.command(command)

    def found_island(self, world: World) -> None:
        """Every home is a node of the island with the scenario's caps (its inverter and its
        breaker enforce them from the start); the consortium registers the island on chain,
        the DSO's substation meter as its gateway, once every meter is registered. Each meter's
        owner (its home, the DSO) signs its consent to its place in the island."""
        from gridnet.agents.home import Home

        homes = [h for h in world.of(Home) if h.meter is not None]
        self.nodes = homes
        dso = world.with_role("dso")
        gateway = dso.meter
        assert gateway is not None
        owners = {h.meter.meter_id: h.key for h in homes if h.meter} | {gateway.meter_id: dso.key}
        nodes = tuple(
            sorted(
                (IslandNode(h.meter.meter_id, self.t.inject_w, self.t.withdraw_w) for h in homes if h.meter),
                key=lambda n: n.meter,
            )
        )
        chain_id = world.backend.chain_id
        wanted = island_consents(self.cid, gateway.meter_id, nodes)
        consents = tuple(sign_as_member(owners[c.meter], chain_id, c) for c in wanted)
        act = RegisterIsland(self.cid, gateway.meter_id, nodes, (), ())  # (what the members sign)
        meters = [n.meter for n in nodes] + [gateway.meter_id]

        def ready(view: StateView) -> bool:
            return view.get(CONTROLLERS, self.cid) is not None and all(
                view.get(METERS, m) is not None for m in meters
            )

        world.later(self, msgspec.structs.replace(self._signed(world, act), consents=consents), ready)

    def _signed(self, world: World, act: Any, registrant: PublicKey | None = None) -> Any:
        """``act`` signed by the threshold of members (a registration: for ``registrant``)."""
        chain_id = world.backend.chain_id
        signed = self.members[: self.t.threshold]
        signatures = tuple(sign_as_member(k, chain_id, act, registrant=registrant) for k in signed)
        return msgspec.structs.replace(act, signatures=signatures)

    def tick(self, world: World) -> None:
        view = world.look(self.node).view
        now = interval_of(world.now())
        for home in self.producers:
            assert home.meter is not None
            meter = home.meter.meter_id
            enrollment = view.get(ENROLLMENTS, self.cid + meter)
            record = view.get(METERS, meter)
            if enrollment is None or record is None or not record.has_reading:
                continue
            if self.asked.get(meter, -1) > enrollment.minted_through:
                continue  # its last mint is on its way
            through = min(record.last_interval, now - 1, enrollment.minted_through + MAX_SPAN_INTERVALS)
            through = self.sales_final_through(world, view, home, enrollment.minted_through + 1, through)
            if through - enrollment.minted_through < enrollment.every_intervals:
                continue
            readings = [
                view.get(READINGS, reading_key(meter, i))
                for i in range(enrollment.minted_through + 1, through + 1)
            ]
            if any(r is None for r in readings):
                continue  # (a batch still on its way)
            if sum(r.exported_wh - r.sold_wh for r in readings if r is not None) < enrollment.min_wh:
                continue  # (night: the next mint covers these intervals too)
            if world.submit(self, self._signed(world, MintCredits(self.cid, meter, through, ()))):
                self.asked[meter] = through
                self.mints += 1
        if self.t.redeem_hour_utc >= 0:
            self.redeem(world, view, now)
            self.release(world, view, now)

    def redeem(self, world: World, view: StateView, now: int) -> None:
        """From the redeeming hour each producer's device redeems the credits it holds (once),
        within a window its node's withdrawal cap allows."""
        if (now % 96) // 4 < self.t.redeem_hour_utc:
            return
        per_interval = max(1, cap_wh(self.t.withdraw_w))
        for home in self.producers:
            credits = credits_of(view, self.cid, home.address)
            if home.name in self.redeemed or credits < 1 or home.meter is None:
                continue
            within = min(MAX_SPAN_INTERVALS, -(-credits // per_interval) + 8)
            if world.submit(home, RedeemCredits(self.cid, credits, home.meter.meter_id, within)):
                self.releases[world.last_txid] = Release(home, credits)
                self.redeemed.add(home.name)

    def release(self, world: World, view: StateView, now: int) -> None:
        """Each redemption on chain: close the node's release relay (its feeder holds the
        energy), open it again once that much has flowed or the window is over, and close the
        redemption on chain once the node's readings show the energy (or the window is over)."""
        for txid, r in self.releases.items():
            redemption = view.get(REDEMPTIONS, self.cid + txid)
            if redemption is None or r.close_sent:
                continue
            home = r.home
            if not r.started and redemption.first_interval - 1 not in home.real:
                continue  # its window opens once the interval before it has been measured
            if not r.started:
                home.release_wh += redemption.wh
                self.set_release_relay(home, closed=True, reason="release of a redemption")
                r.started = True
            if r.stopped is None and (home.release_wh == 0 or redemption.due_interval in home.real):
                self.set_release_relay(home, closed=False, reason="release done")
                home.release_wh = 0
                r.stopped = now
            assert home.meter is not None
            record = view.get(METERS, home.meter.meter_id)
            if (
                r.stopped is None
                or record is None
                or record.last_interval < min(r.stopped, redemption.due_interval + 1) - 1
            ):
                continue  # the readings of the release are still on their way
            last = min(redemption.due_interval, record.last_interval)
            readings = [
                view.get(READINGS, reading_key(home.meter.meter_id, i))
                for i in range(redemption.first_interval, last + 1)
            ]
            imported = sum(x.imported_wh for x in readings if x is not None)
            over = now > redemption.due_interval and last == redemption.due_interval and None not in readings
            if (imported >= redemption.wh or over) and world.submit(self, CloseRedemption(self.cid, txid)):
                r.close_sent = True

    def sales_final_through(
        self, world: World, view: StateView, home: Home, first: Interval, through: Interval
    ) -> Interval:
        """The last interval up to ``through`` before which every sale of ``home``'s energy
        (from ``first`` on) is final: each contract selling it is closed or paid in full, and
        each aggregators' trade of it recorded on chain or refused. A mint takes the export
        those left unpaid (marking it paid), so a contract settled after it would find its Wh
        sold (``DoubleSelling``), and a trade recorded after it too (``GrantExceedsAvailable``).
        A contract not on chain long after its end never opened."""
        for interval, deal in sales(world, home, first, through):
            record = view.get(CONTRACTS, deal.cid)
            given_up = world.now() >= interval_start(deal.terms.last_interval + 1) + 2 * PATIENCE_MS
            if record is None and not given_up:
                through = interval - 1
                break
            if record is not None and not record.closed and record.paid_wh < record.terms.max_wh:
                through = interval - 1  # (it may pay more yet)
                break
        desk = world.by_name.get(DESK)
        if isinstance(desk, AggregatorDesk):
            unsettled = desk.unsettled(world, view, home, first, through)
            if unsettled is not None:
                through = unsettled - 1
        return through

    def wrap_up(self, world: World) -> None:
        """Compare, from the chain, each producer's credits with the energy its readings show
        injected over the intervals minted."""
        view = world.look(self.node).view
        controller = view.get(CONTROLLERS, self.cid)
        minted = injected = 0
        for home in self.producers:
            assert home.meter is not None
            enrollment = view.get(ENROLLMENTS, self.cid + home.meter.meter_id)
            if enrollment is None:
                continue
            minted += enrollment.minted_wh
            for i in range(world.first, enrollment.minted_through + 1):
                reading = view.get(READINGS, reading_key(home.meter.meter_id, i))
                injected += 0 if reading is None else reading.exported_wh
            injected -= contract_paid_wh(world, view, home, enrollment.minted_through)
            injected -= aggregator_granted_wh(world, view, home, enrollment.minted_through)
        self.figures = {
            "enabled": True,
            "controller": self.t.name,
            "registrant": self.key.public_key.hex(),
            "producers": len(self.producers),
            "enrolled": sum(
                1
                for h in self.producers
                if h.meter is not None and view.get(ENROLLMENTS, self.cid + h.meter.meter_id) is not None
            ),
            "mints": self.mints,
            "minted_wh": 0 if controller is None else controller.minted_wh,
            "supply": 0 if controller is None else controller.supply,
            "injected_wh_minted_intervals": injected,
            "credits_match_energy": controller is not None and controller.minted_wh == minted == injected,
            "largest_balance": max(
                (credits_of(view, self.cid, h.address) for h in self.producers), default=0
            ),
            "island": self.island_figures(world, view) if self.t.island else {"enabled": False},
            "redemptions": self.redemption_figures(view),
        }

    def redemption_figures(self, view: StateView) -> dict[str, Any]:
        """The producers' redemptions from the chain, and how the controller released them."""
        found = [(r, view.get(REDEMPTIONS, self.cid + txid)) for txid, r in self.releases.items()]
        on_chain = [(r, x) for r, x in found if x is not None]
        return {
            "redeem_hour_utc": self.t.redeem_hour_utc,
            "redemptions": len(on_chain),
            "redeemed_wh": sum(x.wh for _, x in on_chain),
            "released_through_relays": sum(1 for r, _ in on_chain if r.started),
            "discharged": sum(1 for _, x in on_chain if x.status == DISCHARGED),
            "defaulted": sum(1 for _, x in on_chain if x.status == DEFAULTED),
            "lapsed": sum(1 for _, x in on_chain if x.status == LAPSED),
            "relay_commands": self.relay_nonce,
        }

    def island_figures(self, world: World, view: StateView) -> dict[str, Any]:
        """The island from the chain: its nodes' caps and readings, and its gateway's meter
        (the DSO's substation: what it supplied into the island and took from it) against the
        gateway's caps."""
        island = view.get(ISLANDS, self.cid)
        dso = world.with_role("dso")
        assert dso.meter is not None
        run = range(world.first, world.last + 1)
        gateway = [view.get(READINGS, reading_key(dso.meter.meter_id, i)) for i in run]
        nodes = [
            r
            for h in self.nodes
            if h.meter is not None
            for i in run
            if (r := view.get(READINGS, reading_key(h.meter.meter_id, i))) is not None
        ]
        real = [e for h in self.nodes for e in h.real.values()]
        supply_w = self.t.withdraw_w * len(self.nodes)
        absorb_w = self.t.inject_w * len(self.nodes)
        return {
            "enabled": True,
            "registered": island is not None,
            "nodes": len(self.nodes),
            "node_inject_w": self.t.inject_w,
            "node_withdraw_w": self.t.withdraw_w,
            "gateway_supply_w": supply_w,
            "gateway_absorb_w": absorb_w,
            "node_max_export_wh": max((r.exported_wh for r in nodes), default=0),
            "node_max_import_wh": max((r.imported_wh for r in nodes), default=0),
            "node_cap_export_wh": cap_wh(self.t.inject_w),
            "node_cap_import_wh": cap_wh(self.t.withdraw_w),
            "gateway_supplied_wh": sum(r.exported_wh for r in gateway if r is not None),
            "gateway_absorbed_wh": sum(r.imported_wh for r in gateway if r is not None),
            "gateway_max_supplied_wh": max((r.exported_wh for r in gateway if r is not None), default=0),
            "gateway_max_absorbed_wh": max((r.imported_wh for r in gateway if r is not None), default=0),
            "curtailed_wh": sum(e.curtailed_wh for e in real),
            "shed_wh": sum(e.shed_wh for e in real),
            "refused_over_cap": world.tally.refused.get("IslandCapExceeded", 0),
            "within_caps": all(
                r.exported_wh <= cap_wh(self.t.inject_w) and r.imported_wh <= cap_wh(self.t.withdraw_w)
                for r in nodes
            )
            and all(
                -cap_wh(absorb_w) - 1 <= island_side(world, i, r) <= cap_wh(supply_w) + 1
                for i, r in zip(run, gateway, strict=True)
                if r is not None
            ),
        }


def island_side(world: World, interval: Interval, reading: ReadingRecord) -> Wh:
    """What the island's cables took from the grid in ``interval`` by the gateway's reading
    (the substation's, on the grid's side of the transformers), negative when they fed it:
    the reading less the transformers' losses of the power flow [Wh] (to within a Wh: each
    is rounded)."""
    flow = world.flows.get(interval)
    losses = round(sum(flow.transformer_losses_wh)) if flow is not None else 0
    return reading.exported_wh - reading.imported_wh - losses


def sales(world: World, home: Home, first: Interval, through: Interval) -> Iterator[tuple[Interval, Deal]]:
    """The deals selling ``home``'s energy in intervals ``first`` to ``through``, by interval."""
    for interval in range(first, through + 1):
        for deal in world.deals.get(interval, ()):
            if deal.seller is home:
                yield interval, deal


def contract_paid_wh(world: World, view: StateView, home: Home, through: Interval) -> Wh:
    """What contracts paid ``home`` as seller for its export from the run's first interval to
    ``through`` (the rest of that export is what Helios may credit)."""
    paid = 0
    for _, deal in sales(world, home, world.first, through):
        record = view.get(CONTRACTS, deal.cid)
        if record is not None:
            paid += sum(d.wh for d in record.paid if d.interval <= through)
    return paid


def aggregator_granted_wh(world: World, view: StateView, home: Home, through: Interval) -> Wh:
    """What the aggregators' trade records granted from ``home``'s export from the run's first
    interval to ``through`` (AEG; 0 without ``[aggregators]``)."""
    desk = world.by_name.get(DESK)
    return desk.granted_wh(view, home, world.first, through) if isinstance(desk, AggregatorDesk) else 0


def report(world: World, agents: Sequence[Agent]) -> dict[str, Any]:
    if not agents:
        return {"enabled": False}
    controller = agents[0]
    assert isinstance(controller, HeliosController)
    return controller.figures


def build(world: World) -> list[Agent]:
    t: HeliosTable = world.s.tables["helios"]
    if not t.enabled:
        return []
    where = f"{world.s.source}: [helios]"
    if not 1 <= t.members <= MAX_MEMBERS or not 1 <= t.threshold <= t.members:
        raise ConfigError(f"{where} members must be 1 to {MAX_MEMBERS} and threshold 1 to members")
    if not 1 <= t.every_intervals <= MAX_SPAN_INTERVALS or t.min_wh < 1:
        raise ConfigError(f"{where} every_intervals must be 1 to {MAX_SPAN_INTERVALS} and min_wh at least 1")
    if t.island and (t.inject_w < 0 or t.withdraw_w < 0 or t.inject_w + t.withdraw_w == 0):
        raise ConfigError(f"{where} inject_w and withdraw_w must be at least 0, and not both 0")
    if t.island and any(cap_wh(w) == 0 < w for w in (t.inject_w, t.withdraw_w)):
        raise ConfigError(  # (what the chain refuses is refused now, not mid-run)
            f"{where} inject_w {t.inject_w}, withdraw_w {t.withdraw_w}: a cap below {MIN_CAP_W} W allows "
            f"0 Wh an interval; give 0 or at least {MIN_CAP_W}"
        )
    if not -1 <= t.redeem_hour_utc <= 23:
        raise ConfigError(f"{where} redeem_hour_utc must be -1 (nobody redeems) or 0 to 23")
    if t.redeem_hour_utc >= 0 and (not t.island or world.s.tables["meters"].devices == "model"):
        raise ConfigError(
            f'{where} redeem_hour_utc needs island = true and [meters] devices "memory" or "process" '
            "(the release acts through the meters' relays)"
        )
    if t.island and world.s.homes.count > MAX_ISLAND_NODES:
        raise ConfigError(f"{where} an island has at most {MAX_ISLAND_NODES} nodes ([homes] count)")
    return [HeliosController(HELIOS_CONTROLLER, world)]


ROLE = Role("helios", 75, build, table=HeliosTable, report=report)
