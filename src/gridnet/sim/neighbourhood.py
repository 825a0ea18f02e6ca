"""The main job: one neighbourhood trading energy peer to peer on the ledger.

Homes (some with PV and a battery), two or more power-line owners, a DSO, a meter
manufacturer, a government and a reading collector, on three mining full nodes of the
in-memory network. Every 15-minute interval:

1. meters sign the readings of the interval that just ended; the collector batches them
   into one transaction;
2. each buyer's device checks the sellers' signed readings and signs a contract state
   acknowledging the energy delivered; it travels to the hub (the DSO's substation) as a
   paid datagram and the hub settles it on chain (without relays, the seller does);
3. each home's private policy turns its forecast (and battery) into signed bids and
   offers for the next interval, sent to the hub as datagrams; the DSO bids its feed-in
   price and offers its retail price; ten minutes later a uniform-price double auction
   clears what reached the hub (anyone holding the same orders recomputes it);
4. every trade becomes an energy contract signed by buyer, seller and the line owners on
   the path; the buyer opens it on chain, locking its deposit;
5. all along, the nodes mine and validate blocks; homes relay each other's datagrams and
   a carrier rides past the homes no wire reaches.

Once, at midday, the DSO curtails the area's export for one congested interval: homes
whose policy complies export less; the others override and record it on chain. At the end
of the day the government subsidises every exported kWh on chain.

Everything is real — signatures, proof-of-work, SQLite, the state transition — except the
clock. The same scenario and seed give the same chain and the same figures.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec

from gridnet.contracts.channel import (
    ContractState,
    ContractTerms,
    Delivery,
    LineFee,
    SignedState,
    SignedTerms,
    contract_id,
    sign_state,
    sign_terms,
)
from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.grid.commands import CommandKind, DsoCommand, SignedCommand, sign_command
from gridnet.identity import IdentityProof, find_identity_proof
from gridnet.ledger.chain import Chain, now_ms
from gridnet.ledger.mempool import EventKind
from gridnet.ledger.params import Allocation, ChainParams, default_params, validate_params
from gridnet.ledger.registry import Payload
from gridnet.ledger.state import StateView
from gridnet.ledger.transactions import Transaction, min_fee, sign_transaction
from gridnet.ledger.txs.authority import AUTHORITIES, PublishFlag, RegisterAuthority, flagged_by
from gridnet.ledger.txs.contract import CONTRACTS, OpenContract, SettleContract
from gridnet.ledger.txs.grid import PaySubsidy, RecordOverride
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.meter import METERS, READINGS, RegisterMeter, SubmitReadings, reading_key
from gridnet.ledger.txs.relay import MAX_HOP_CLAIMS, ChainRelayView, ClaimTransit
from gridnet.market.matching import Trade, clear_with_eligibility
from gridnet.market.orders import Order, Side, SignedOrder, VerifiedOrder, sign_order, validate_order
from gridnet.market.policy import MeterStanding, Policy, PriceWindow
from gridnet.meter.certificate import issue_certificate
from gridnet.meter.mqtt import MqttBroker, MqttTelemetry
from gridnet.meter.telemetry import InMemoryTelemetry, SimulatedMeter, Telemetry
from gridnet.net.memory import MemoryNetwork
from gridnet.node.clock import Clock
from gridnet.node.devnet import Devnet
from gridnet.node.node import Node, NodeConfig
from gridnet.relay.claims import hop_payable
from gridnet.relay.tokens import PPM
from gridnet.security.roles import FlagTarget, Role
from gridnet.sim.backends import Backend, DevnetBackend, MemoryBackend
from gridnet.sim.output import audit, prepare_out_dir, write_report
from gridnet.sim.physics import INTERVAL_H, Battery
from gridnet.sim.relaynet import CARRIER, OrderNote, RelayNet, StateNote
from gridnet.sim.scenario import Scenario, gnc, pool_length
from gridnet.units import (
    INTERVAL_MS,
    UNITS_PER_GNC,
    Address,
    Interval,
    Wh,
    energy_cost,
    interval_of,
    interval_start,
)
from gridnet.work import target_from_bits, target_to_bytes
from gridnet.world.demand import Consumer, demand
from gridnet.world.grid import Grid
from gridnet.world.solar import PvArray, Sky, irradiance, pv_energy

BOOTSTRAP_MS = 2 * 3600 * 1000
"""Simulated time before the first interval, for identities, authorities and meters."""
CLEAR_AFTER_MS = 10 * 60_000
"""The hub clears an interval's auction this long after the orders are sent."""
MIN_TRAVEL_MS = 60_000
"""... and never less than this after (a devnet driver running late)."""
STEP_MS = 60_000
"""The simulator acts (submits what became possible) once per simulated minute."""
SUBSIDY_BATCH = 96
NODE_TICK_S = 0.1
"""A node process ticks (and mines a round of hashes) this often [real s]."""

Progress = Callable[[int, int], None]


@dataclass
class Participant:
    name: str
    role: str
    """home | dso | manufacturer | government | collector | line_owner | carrier"""
    key: PrivateKey
    node: str
    nonce: int = 0
    meter: SimulatedMeter | None = None
    feeder: int = 0
    """Index of the line owner whose lines connect it."""
    policy: Policy | None = None
    pv_kw: float = 0.0
    annual_kwh: float = 0.0
    load_profile: str = ""
    pv_wh: list[Wh] = field(default_factory=list)
    """Its PV array's production in each interval of the run [Wh] (pvlib)."""
    load_wh: list[Wh] = field(default_factory=list)
    """Its consumption in each interval of the run [Wh] (demandlib's BDEW profile)."""
    battery: Battery | None = None
    overrides_dso: bool = False

    @property
    def address(self) -> Address:
        return self.key.address


@dataclass
class Plan:
    """A home's energy for one interval, fixed when it orders (perfect forecast)."""

    export_wh: Wh = 0
    import_wh: Wh = 0
    curtailed_wh: Wh = 0


@dataclass
class OpenDeal:
    terms: ContractTerms
    trade: Trade
    buyer: Participant
    seller: Participant


@dataclass
class Action:
    """A transaction to submit once ``ready`` holds on the submitter's node's state."""

    who: Participant
    payload: Payload
    ready: Callable[[StateView], bool]


@dataclass
class Tally:
    p2p_wh: Wh = 0
    from_dso_wh: Wh = 0
    to_dso_wh: Wh = 0
    curtailed_wh: Wh = 0
    overrides: int = 0
    contracts: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    submitted: Counter[str] = field(default_factory=Counter)
    orders_refused: Counter[str] = field(default_factory=Counter)
    clearing: list[dict[str, Any]] = field(default_factory=list)
    losses_wh: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    """Feeder (line owner index) -> its cables' losses [Wh]."""
    transformer_losses_wh: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    max_loading: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    v_min: defaultdict[int, float] = field(default_factory=lambda: defaultdict(lambda: 1.0))
    v_max: defaultdict[int, float] = field(default_factory=lambda: defaultdict(lambda: 1.0))
    congested_intervals: int = 0
    """Intervals in which a line was over its limit or a voltage outside the band."""


class Neighbourhood:
    def __init__(self, scenario: Scenario, connect: Callable[[ChainParams], Backend]) -> None:
        """``connect(params)`` starts the nodes on the scenario's genesis: the backend the
        participants use (``memory_network`` or a devnet)."""
        self.s = scenario
        self.rng = random.Random(scenario.simulation.seed)
        self.area = scenario.simulation.area
        self.first = interval_of(scenario.start_ms)
        self.tally = Tally()
        self.broker: MqttBroker | None = None
        self.telemetry: Telemetry = InMemoryTelemetry()
        if scenario.telemetry.kind == "mqtt":
            self.broker = MqttBroker().start()  # in-process, 127.0.0.1, a free port
            self.telemetry = MqttTelemetry(port=self.broker.port)
        self.plans: dict[tuple[Address, Interval], Plan] = {}
        self.deals: dict[Interval, list[OpenDeal]] = defaultdict(list)
        self.actions: list[Action] = []
        self.curtail_interval = self._curtail_interval()
        self._build_people()
        self.params = self._params()
        self.backend = connect(self.params)
        self.chain_id = self.backend.chain_id
        # Relaying participants live on the in-memory network only.
        net = self.backend.net if isinstance(self.backend, MemoryBackend) else None
        self.relaynet = self._build_relaynet(net) if scenario.relay.enabled and net is not None else None
        self.proofs: dict[Address, IdentityProof] = {}
        self.book: dict[Interval, list[SignedOrder]] = defaultdict(list)
        """Orders that reached the hub (or, without relays, were handed to it), by interval."""
        self.hub_states: dict[bytes, SignedState] = {}
        """Contract states that reached the hub, by contract id."""
        self.late_orders = 0
        self.cleared: set[Interval] = set()

    # --- set-up ----------------------------------------------------------------------------

    def _curtail_interval(self) -> Interval | None:
        minute = self.s.curtail_minute
        if minute is None:
            return None
        day = self.first - self.first % 96
        slot = minute * 60_000 // INTERVAL_MS
        candidate = day + slot
        return candidate if self.first < candidate < self.first + self.s.simulation.intervals else None

    def _build_people(self) -> None:
        s, rng = self.s, self.rng
        n_nodes = s.network.nodes
        owners = len(s.line_owners)

        def key(name: str) -> PrivateKey:
            return PrivateKey.from_label(f"{s.simulation.name}/{s.simulation.seed}/{name}")

        maker_key, security_key = key("manufacturer"), key("security")
        trust = {"meters": frozenset({security_key.address})}
        self.homes: list[Participant] = []
        n_pv = round(s.homes.count * s.homes.pv_share)
        n_bat = round(n_pv * s.homes.battery_share)
        businesses = range(n_pv, n_pv + s.homes.businesses)  # (no PV, not on the hill)
        n_override = round(n_pv * s.dso.override_share)
        for i in range(s.homes.count):
            k = key(f"home-{i}")
            has_pv, has_bat = i < n_pv, i < n_bat
            cap = gnc(round(rng.uniform(*s.homes.buy_cap), 4))
            floor = gnc(round(rng.uniform(*s.homes.sell_floor), 4))
            policy = Policy(
                buy=(PriceWindow(0, 1440, cap),),
                sell=(PriceWindow(0, 1440, floor),) if has_pv else (),
                buy_below_soc=s.homes.battery_buy_below if has_bat else None,
                sell_above_soc=s.homes.battery_sell_above if has_bat else None,
                source=f"{s.source}: [homes]",
                trusted=trust if trusts(i, s.security.trusting_share) else {},
                manufacturers=frozenset({maker_key.address}),
            )
            battery = None
            if has_bat:
                capacity = round(rng.uniform(*s.homes.battery_kwh) * 1000)
                battery = Battery(
                    capacity, capacity // 2, round(s.homes.battery_kw * 1000), s.homes.battery_efficiency
                )
            self.homes.append(
                Participant(
                    name=f"home-{i}",
                    role="home",
                    key=k,
                    node=f"n{i % n_nodes}",
                    meter=SimulatedMeter(key(f"home-{i}/meter")),
                    feeder=i % owners,
                    policy=policy,
                    pv_kw=round(rng.uniform(*s.homes.pv_kw), 2) if has_pv else 0.0,
                    annual_kwh=s.homes.business_kwh
                    if i in businesses
                    else round(rng.uniform(*s.homes.annual_kwh), 1),
                    load_profile=s.homes.business_profile if i in businesses else s.homes.load_profile,
                    battery=battery,
                    overrides_dso=has_pv and i < n_override,
                )
            )
        self._build_world()
        self.grid = self._build_grid()
        self.dso = Participant(
            "dso", "dso", key("dso"), "n0", meter=SimulatedMeter(key("dso/substation-meter"))
        )
        self.maker = Participant("manufacturer", "manufacturer", maker_key, "n0")
        self.security = Participant("security", "security", security_key, f"n{1 % n_nodes}")
        self.government = Participant("government", "government", key("government"), f"n{1 % n_nodes}")
        self.collector = Participant("collector", "collector", key("collector"), f"n{2 % n_nodes}")
        self.line_owners = [
            Participant(lo.name, "line_owner", key(f"line-owner-{j}"), f"n{j % n_nodes}")
            for j, lo in enumerate(s.line_owners)
        ]
        # The relays' carrier: a registered identity like every relay, with coin for its fees.
        self.carrier = Participant(CARRIER, CARRIER, key(CARRIER), "n0") if s.relay.enabled else None
        self.by_address = {
            p.address: p
            for p in [
                *self.homes,
                self.dso,
                self.maker,
                self.security,
                self.government,
                self.collector,
                *self.line_owners,
            ]
        }
        self.meter_owner = {p.meter.meter_id: p for p in [*self.homes, self.dso] if p.meter}

    def _params(self) -> ChainParams:
        s = self.s
        allocations = [Allocation(h.address, gnc(s.homes.start_gnc)) for h in self.homes]
        allocations += [
            Allocation(self.dso.address, gnc(s.dso.start_gnc)),
            Allocation(self.government.address, gnc(s.government.start_gnc)),
            Allocation(self.maker.address, gnc(10)),
            Allocation(self.security.address, gnc(10)),
            Allocation(self.collector.address, gnc(100)),
            *([Allocation(self.carrier.address, gnc(1))] if self.carrier else []),
        ]
        base = default_params(tuple(allocations))
        bits = s.chain.difficulty_bits
        # Contracts use the scenario's dispute window: the chain allows it, and unbonding outlasts it.
        disputes = max(base.max_dispute_window, s.chain.dispute_window_blocks)
        params = msgspec.structs.replace(
            base,
            name=f"gridnet-{s.simulation.name}",
            genesis_time=interval_start(self.first) - BOOTSTRAP_MS,
            block_interval_ms=round(s.chain.block_interval_s * 1000),
            initial_target=target_to_bytes(target_from_bits(bits)),
            pow_limit=target_to_bytes(target_from_bits(max(1, bits - 4))),
            identity_target=target_to_bytes(target_from_bits(s.chain.identity_difficulty_bits)),
            max_dispute_window=disputes,
            unbonding_delay=max(base.unbonding_delay, disputes + 1),
        )
        return validate_params(params, f"scenario {s.simulation.name}")

    def _build_world(self) -> None:
        """Each home's PV and load over the run: the sky over the site once (pvlib), then an
        array per PV home and a BDEW profile per home (demandlib), seeded by the scenario."""
        s = self.s
        weather_file = None
        if s.weather.sky == "file":
            weather_file = Path(s.weather.weather_file)
            if not weather_file.is_absolute() and s.source != "defaults":
                weather_file = Path(s.source).parent / weather_file
        sky = Sky(s.weather.sky, s.weather.cloudiness, s.simulation.seed, weather_file, s.weather.temp_air_c)
        start, n = self.first * INTERVAL_MS, s.simulation.intervals
        light = irradiance(s.site, start, n, sky)
        for home in self.homes:
            array = PvArray(
                home.pv_kw, s.homes.pv_tilt_deg, s.homes.pv_azimuth_deg, s.homes.pv_losses_percent
            )
            home.pv_wh = pv_energy(array, light) if home.pv_kw else [0] * n
            consumer = Consumer(
                home.annual_kwh,
                home.load_profile,
                s.homes.load_variation,
                f"{s.simulation.name}/{s.simulation.seed}/{home.name}",
            )
            home.load_wh = demand(consumer, start, n, s.site.timezone)

    def _build_grid(self) -> Grid:
        """One feeder per line owner, its homes along its cable in the order of their names."""
        feeders = [[h.name for h in self.homes if h.feeder == f] for f in range(len(self.s.line_owners))]
        return Grid.build(self.s.grid, feeders)

    def power_flow(self, interval: Interval) -> None:
        """The grid under ``interval``'s metered energy: losses per line owner, the highest
        loading and the voltage band of each feeder; an interval outside the limits is counted."""
        plans = {h.name: self.plans.get((h.address, interval), Plan()) for h in self.homes}
        result = self.grid.flow(
            {n: p.export_wh for n, p in plans.items()}, {n: p.import_wh for n, p in plans.items()}
        )
        tally = self.tally
        for f, losses in enumerate(result.losses_wh):
            tally.losses_wh[f] += losses
            tally.transformer_losses_wh[f] += result.transformer_losses_wh[f]
            tally.max_loading[f] = max(tally.max_loading[f], result.max_loading_percent[f])
            tally.v_min[f] = min(tally.v_min[f], result.v_min_pu[f])
            tally.v_max[f] = max(tally.v_max[f], result.v_max_pu[f])
        if result.congested:
            tally.congested_intervals += 1

    def _build_relaynet(self, net: MemoryNetwork) -> RelayNet:
        s = self.s
        assert self.carrier is not None
        no_pv = [h for h in self.homes if not h.pv_kw]
        hill = no_pv[len(no_pv) - s.relay.hill_homes :] if s.relay.hill_homes else []
        hill_names = {h.name for h in hill}
        feeders = [
            [(h.name, h.key) for h in self.homes if h.feeder == f and h.name not in hill_names]
            for f in range(len(self.line_owners))
        ]
        return RelayNet(
            net,
            (self.dso.name, self.dso.key),
            feeders,
            [(h.name, h.key) for h in hill],
            self.carrier.key,
            lambda: ChainRelayView(net.nodes["n0"].chain.view()),
            pool_length=pool_length(s.simulation.intervals),
            payrate_ppm=round(s.relay.payrate * PPM),
            carrier_stop_ms=round(s.relay.carrier_stop_s * 1000),
        )

    # --- transactions ----------------------------------------------------------------------

    def submit(self, p: Participant, payload: Payload) -> bool:
        """Sign ``payload`` with ``p``'s next nonce and hand it to ``p``'s node."""
        for _ in range(2):
            fee = min_fee(self.params.min_fee_per_byte, payload, p.nonce)
            tx = sign_transaction(p.key, self.chain_id, payload, p.nonce, fee)
            outcome = self.backend.submit(p.node, tx)
            if outcome.kind is EventKind.ACCEPTED:
                p.nonce += 1
                self.tally.submitted[type(payload).__name__] += 1
                return True
            if outcome.rule not in ("NonceGap", "NonceTooLow"):
                break
            p.nonce = self.backend.next_nonce(p.node, p.address)  # resynchronise with the node
        self.tally.refused[outcome.rule] += 1
        return False

    def later(self, who: Participant, payload: Payload, ready: Callable[[StateView], bool]) -> None:
        self.actions.append(Action(who, payload, ready))

    def act(self) -> None:
        """Submit every deferred transaction whose precondition now holds."""
        views: dict[str, StateView] = {}  # one per node and pass: each entry is read once
        waiting = []
        for action in self.actions:
            node = action.who.node
            if node not in views:
                views[node] = self.backend.view(node)
            if action.ready(views[node]):
                self.submit(action.who, action.payload)
            else:
                waiting.append(action)
        self.actions = waiting

    def run_for(self, duration_ms: int) -> None:
        self.run_until(self.backend.now() + duration_ms)

    def run_until(self, end: int) -> None:
        """Let the clock reach ``end`` [ms], acting as it goes. The schedule is absolute: on a
        devnet the driver's own work takes real time, and steps measured from "now" would let
        it fall further behind the nodes' clock every interval (nothing when already late)."""
        while (now := self.backend.now()) < end:
            self.backend.advance(min(self.backend.act_every_ms, end - now))
            if self.relaynet is not None:
                self.relaynet.move_carrier(self.backend.now())
                self.take_deliveries()
            self.act()

    def take_deliveries(self) -> None:
        """The hub files what relays delivered: orders into the book, states to settle."""
        assert self.relaynet is not None
        for note in self.relaynet.drain():
            if isinstance(note, OrderNote):
                interval = note.order.order.interval
                if interval in self.cleared:
                    self.late_orders += 1  # arrived after its auction: it does not trade
                else:
                    self.book[interval].append(note.order)
            else:
                self.hub_states[note.state.state.contract] = note.state

    # --- bootstrap -------------------------------------------------------------------------

    def bootstrap(self) -> None:
        target = self.params.identity_target_int
        carrier = [self.carrier] if self.carrier and self.relaynet else []
        for p in [*self.homes, self.dso, self.maker, self.security, self.government, *carrier]:
            self.proofs[p.address] = find_identity_proof(p.address, target)
            self.submit(p, RegisterIdentity(self.proofs[p.address]))
        if self.relaynet is not None:
            name = self.s.simulation.name
            for home in self.homes:
                pool = self.relaynet.open_pool(
                    home.name,
                    self.proofs[home.address],
                    f"{name}/{self.s.simulation.seed}/{home.name}/pool",
                    gnc(self.s.relay.pool_gnc),
                    expiry=1_000_000,
                )
                self.submit(home, pool)
        self.submit(self.maker, RegisterAuthority(int(Role.MANUFACTURER), "Meter Manufacturer"))
        self.submit(self.dso, RegisterAuthority(int(Role.DSO), "Distribution System Operator"))
        self.submit(self.government, RegisterAuthority(int(Role.GOVERNMENT), "Government"))
        self.submit(self.security, RegisterAuthority(int(Role.SECURITY), "Meter Security Lab"))
        maker = self.maker.address

        def maker_registered(view: StateView) -> bool:
            return view.get(AUTHORITIES, maker) is not None

        for p in [*self.homes, self.dso]:
            assert p.meter is not None
            cert = issue_certificate(
                self.maker.key,
                p.meter.key.public_key,
                vendor="GridMeter",
                model="GM-15",
                firmware=p.meter.firmware,
                serial=p.name,
            )
            self.later(p, RegisterMeter(cert, self.area), maker_registered)
        for home in self.flagged_homes():
            assert home.meter is not None
            meter = home.meter.meter_id

            def meter_registered(view: StateView, meter: Address = meter) -> bool:
                return view.get(METERS, meter) is not None

            flag = PublishFlag(int(FlagTarget.METER), meter, "tampered seal reported", True)
            self.later(self.security, flag, meter_registered)
        self.run_until(interval_start(self.first - 1))

    def flagged_homes(self, count: int | None = None) -> list[Participant]:
        """The PV homes whose meters the security lab flags: the cheapest sellers (a tampered
        meter selling cheap energy is what a buyer should be warned about)."""
        sellers = [h for h in self.homes if h.policy is not None and h.policy.sell]
        sellers.sort(key=lambda h: h.policy.sell[0].price if h.policy else 0)
        return sellers[: self.s.security.flagged_meters if count is None else count]

    # --- one interval ----------------------------------------------------------------------

    def plan(self, home: Participant, interval: Interval) -> Plan:
        """Fix the home's energy for ``interval``: PV, load, battery and curtailment."""
        pv = home.pv_wh[interval - self.first]
        load = home.load_wh[interval - self.first]
        plan = Plan()
        surplus = pv - load
        battery, policy = home.battery, home.policy
        assert policy is not None
        if surplus >= 0:
            stored = (
                battery.charge(surplus) if battery and not policy.wants_to_sell(battery.soc_percent) else 0
            )
            plan.export_wh = surplus - stored
        else:
            covered = battery.discharge(-surplus) if battery else 0
            plan.import_wh = -surplus - covered
        if battery is not None:
            threshold = policy.sell_above_soc
            if threshold is not None and policy.wants_to_sell(battery.soc_percent):  # sell down to it
                above = battery.soc_wh - round(battery.capacity_wh * threshold / 100)
                plan.export_wh += battery.discharge(max(0, min(above, battery.capacity_wh // 4)))
            elif policy.wants_to_buy(battery.soc_percent) and pv == 0:  # charge at night
                plan.import_wh += battery.charge(battery.capacity_wh // 8)
        if interval == self.curtail_interval and not home.overrides_dso:
            limit = round(self.s.dso.curtail_limit_w * INTERVAL_H)
            if plan.export_wh > limit:
                excess = plan.export_wh - limit
                stored = battery.charge(excess) if battery else 0
                plan.curtailed_wh = excess - stored
                plan.export_wh = limit
        self.tally.curtailed_wh += plan.curtailed_wh
        self.plans[(home.address, interval)] = plan
        return plan

    def order(
        self, p: Participant, side: Side, meter: Address, interval: Interval, wh: Wh, price: int
    ) -> Order:
        return Order(side, p.address, p.key.public_key, meter, self.area, interval, wh, price, interval, 0)

    def place_orders(self, interval: Interval) -> None:
        """Each home's policy turns its plan for ``interval`` into a signed order and sends it
        to the hub (as a datagram when relays carry them); the DSO's orders are the hub's own."""
        offered = bid = 0
        for home in self.homes:
            assert home.meter is not None and home.policy is not None
            plan = self.plan(home, interval)
            orders = []
            if plan.export_wh:
                floor = home.policy.min_sell_price(interval)
                assert floor is not None
                orders.append(
                    self.order(home, Side.OFFER, home.meter.meter_id, interval, plan.export_wh, floor)
                )
                offered += plan.export_wh
            if plan.import_wh:
                cap = home.policy.max_buy_price(interval)
                assert cap is not None
                orders.append(self.order(home, Side.BID, home.meter.meter_id, interval, plan.import_wh, cap))
                bid += plan.import_wh
            for order in orders:
                signed = sign_order(home.key, order)
                if self.relaynet is None:
                    self.post_order(home, signed)
                else:
                    self.relaynet.send(home.name, OrderNote(signed), self.rng.randbytes(16))
        assert self.dso.meter is not None
        dso_meter = self.dso.meter.meter_id
        dso_orders = []
        if offered:  # the DSO buys any surplus at its feed-in price
            dso_orders.append(
                self.order(self.dso, Side.BID, dso_meter, interval, offered, gnc(self.s.dso.buy_price))
            )
        if bid:  # and sells any shortfall at its retail price
            dso_orders.append(
                self.order(self.dso, Side.OFFER, dso_meter, interval, bid, gnc(self.s.dso.sell_price))
            )
        for order in dso_orders:
            signed = sign_order(self.dso.key, order)
            if self.relaynet is None:
                self.post_order(self.dso, signed)
            else:
                self.book[interval].append(signed)  # the hub's own

    def post_order(self, p: Participant, signed: SignedOrder) -> None:
        """Post an order at ``p``'s node, which gossips it on its topic (the hub reads it there)."""
        rule = self.backend.post_order(p.node, signed)
        if rule:
            self.tally.orders_refused[rule] += 1

    def clear(self, interval: Interval) -> None:
        """The hub clears what reached it (anyone holding the same orders gets the same
        result) and every trade becomes a contract."""
        if self.relaynet is None:  # the orders the hub's node holds on the interval's topic
            book = self.backend.orders(self.dso.node, self.area, interval)
        else:  # the orders relays delivered to the hub
            book = self.book.pop(interval, [])
        verified = []
        for signed in book:
            verified.append(validate_order(signed, now_interval=interval - 1))
        self.cleared.add(interval)
        clearing = clear_with_eligibility(
            [v for v in verified if v.order.side == Side.BID],
            [v for v in verified if v.order.side == Side.OFFER],
            self._eligibility(verified),
        )
        self.tally.clearing.append(
            {"interval": interval, "price": clearing.price, "traded_wh": clearing.traded_wh}
        )
        bids = {v.id: v for v in verified if v.order.side == Side.BID}
        for n, t in enumerate(clearing.trades):
            self._contract(interval, n, t, bids[t.bid_id])

    def _eligibility(self, orders: list[VerifiedOrder]) -> Callable[[Order], Callable[[Order], bool]]:
        """Each buyer's policy judges the selling meters by what the chain says of them."""
        view = self.backend.view(self.dso.node)
        standings = {}
        for v in orders:
            record = view.get(METERS, v.order.meter) if v.order.side == Side.OFFER else None
            if record is not None:
                standings[v.order.meter] = MeterStanding(
                    manufacturer=record.manufacturer,
                    flagged_by=flagged_by(view, FlagTarget.METER, v.order.meter),
                    revoked=record.revoked,
                )
        filters = {h.address: h.policy.offer_filter(standings) for h in self.homes if h.policy}
        dso_filter = Policy().offer_filter(standings)  # the DSO trusts no flagger
        return lambda bid: filters.get(bid.owner, dso_filter)

    def _key(self, owner: Address) -> PrivateKey:
        return self.by_address[owner].key

    def _path(self, buyer: Participant, seller: Participant) -> tuple[LineFee, ...]:
        """Line owners between two sites: their feeders' owners (the DSO sits at the substation)."""
        feeders = sorted({p.feeder for p in (buyer, seller) if p.role == "home"})
        return tuple(LineFee(self.line_owners[f].address, gnc(self.s.line_owners[f].fee)) for f in feeders)

    def _contract(self, interval: Interval, n: int, t: Trade, bid: VerifiedOrder) -> None:
        buyer, seller = self.by_address[t.buyer], self.by_address[t.seller]
        terms = ContractTerms(
            buyer=buyer.address,
            seller=seller.address,
            buyer_meter=bid.order.meter,
            seller_meter=t.seller_meter,
            line_fees=self._path(buyer, seller),
            price=t.price,
            first_interval=interval,
            last_interval=interval,
            max_wh=t.wh,
            dispute_window=self.s.chain.dispute_window_blocks,
            nonce=n,
        )
        signers = [buyer.key, seller.key, *(self.by_address[f.owner].key for f in terms.line_fees)]
        signed = SignedTerms(terms, tuple(sign_terms(terms, k) for k in signers))
        self.submit(buyer, OpenContract(signed))
        self.deals[interval].append(OpenDeal(terms, t, buyer, seller))
        self.tally.contracts += 1
        if buyer is self.dso:
            self.tally.to_dso_wh += t.wh
        elif seller is self.dso:
            self.tally.from_dso_wh += t.wh
        else:
            self.tally.p2p_wh += t.wh

    def curtail(self, interval: Interval) -> None:
        """The DSO signs a curtailment for the area; overriding owners record it on chain."""
        command = DsoCommand(
            issuer=self.dso.key.public_key,
            area=self.area,
            meters=(),
            kind=int(CommandKind.CURTAIL_EXPORT),
            limit_w=self.s.dso.curtail_limit_w,
            first_interval=interval,
            last_interval=interval,
            nonce=interval,
        )
        signed: SignedCommand = sign_command(self.dso.key, command)
        for home in self.homes:
            if home.pv_kw and home.overrides_dso:
                assert home.meter is not None
                self.submit(home, RecordOverride(signed, home.meter.meter_id, "policy: export at full power"))
                self.tally.overrides += 1

    def meter_readings(self, interval: Interval) -> None:
        """Meters close ``interval`` (and the grid's power flow runs on what they read); the
        collector submits the batch."""
        self.power_flow(interval)
        dso_sold = sum(d.trade.wh for d in self.deals.get(interval, []) if d.seller is self.dso)
        dso_bought = sum(d.trade.wh for d in self.deals.get(interval, []) if d.buyer is self.dso)
        for home in self.homes:
            assert home.meter is not None
            plan = self.plans.get((home.address, interval), Plan())
            self.telemetry.publish(home.meter.read(interval, plan.export_wh, plan.import_wh))
        assert self.dso.meter is not None
        self.telemetry.publish(self.dso.meter.read(interval, dso_sold, dso_bought))
        if isinstance(self.telemetry, MqttTelemetry):
            self.telemetry.flush(len(self.homes) + 1)  # bounded wait: every reading arrived
        # Canonical order, whatever order the transport delivered them in.
        batch = tuple(sorted(self.telemetry.collect(), key=lambda r: (r.reading.meter, r.reading.interval)))
        if batch:
            self.submit(self.collector, SubmitReadings(batch))

    def settle(self, interval: Interval) -> None:
        """Buyers acknowledge what the sellers' meters show; sellers settle once the
        contract and the reading are on chain."""
        exported: dict[Address, Wh] = {}
        sold: dict[Address, Wh] = defaultdict(int)
        for deal in self.deals.get(interval, []):
            sold[deal.seller.address] += deal.trade.wh
        for deal in self.deals.get(interval, []):
            seller = deal.seller
            if seller.address not in exported:
                plan = self.plans.get((seller.address, interval))
                exported[seller.address] = plan.export_wh if plan else sold[seller.address]
            available, total = exported[seller.address], sold[seller.address]
            ack = deal.trade.wh if available >= total else deal.trade.wh * available // total
            if ack == 0:
                continue
            cid = contract_id(deal.terms)
            state = sign_state(ContractState(cid, 1, (Delivery(interval, ack),)), deal.buyer.key)
            key = reading_key(deal.terms.seller_meter, interval)
            if self.relaynet is None:
                settler = seller  # the seller settles what its buyer acknowledged
            else:  # the buyer's device sends the state to the hub, which settles it
                settler = self.dso
                if deal.buyer is self.dso:
                    self.hub_states[cid] = state
                else:
                    self.relaynet.send(deal.buyer.name, StateNote(state), self.rng.randbytes(16))

            def ready(view: StateView, cid: bytes = cid, key: bytes = key) -> bool:
                if self.relaynet is not None and cid not in self.hub_states:
                    return False
                return view.get(CONTRACTS, cid) is not None and view.get(READINGS, key) is not None

            self.later(settler, SettleContract(state), ready)

    def subsidise(self, intervals: list[Interval]) -> None:
        rate = gnc(self.s.government.subsidy)
        if rate == 0:
            return
        for home in self.homes:
            assert home.meter is not None
            exported = [i for i in intervals if self.plans.get((home.address, i), Plan()).export_wh > 0]
            for start in range(0, len(exported), SUBSIDY_BATCH):
                batch = tuple(exported[start : start + SUBSIDY_BATCH])
                keys = [reading_key(home.meter.meter_id, i) for i in batch]

                def ready(view: StateView, keys: list[bytes] = keys) -> bool:
                    return all(view.get(READINGS, k) is not None for k in keys)

                self.later(self.government, PaySubsidy(home.meter.meter_id, batch, rate), ready)

    # --- the run ---------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        balances0 = {a: self.params_balance(a) for a in self.by_address}
        self.bootstrap()
        n = self.s.simulation.intervals
        intervals = [self.first + k for k in range(n)]
        # The interval before the first is spent ordering for the first.
        for k, interval in enumerate([self.first - 1, *intervals]):
            if k > 1:
                self.meter_readings(interval - 1)
                self.settle(interval - 1)
            nxt = interval + 1
            if nxt < self.first + n:
                if nxt == self.curtail_interval:
                    self.curtail(nxt)
                self.place_orders(nxt)
                # Orders travel to the hub (for at least MIN_TRAVEL_MS when the driver is late).
                self.run_until(
                    max(interval_start(interval) + CLEAR_AFTER_MS, self.backend.now() + MIN_TRAVEL_MS)
                )
                self.clear(nxt)
            self.run_until(interval_start(nxt))
            if progress is not None and k:
                progress(k, n)
        self.meter_readings(intervals[-1])
        self.settle(intervals[-1])
        self.subsidise(intervals)
        converged = True
        if self.relaynet is not None:
            self.run_for(CLEAR_AFTER_MS)  # the last states reach the hub
            for claim in self.relaynet.claims():  # the hub ends every connection
                self.submit(self.dso, ClaimTransit(claim))
            converged = self.finish()  # the claims are on chain: each relay claims its due
            relays = {p.name: p for p in [*self.homes, *([self.carrier] if self.carrier else [])]}
            for name, hops in self.relaynet.hop_claims().items():
                for i in range(0, len(hops), MAX_HOP_CLAIMS):
                    self.submit(relays[name], ClaimTransit(None, tuple(hops[i : i + MAX_HOP_CLAIMS])))
        converged = self.finish() and converged
        simulation_s = time.perf_counter() - started
        self.backend.stop()
        return self.report(balances0, converged, simulation_s)

    def close(self) -> None:
        """Stop what the simulation started (nodes and chains, MQTT clients and broker)."""
        if isinstance(self.telemetry, MqttTelemetry):
            self.telemetry.close()
        if self.broker is not None:
            self.broker.stop()
        self.backend.close()

    def relay_report(self, claims: list[Transaction]) -> dict[str, Any]:
        """What carrying the data cost and paid: from the claims on chain."""
        rn = self.relaynet
        if rn is None:
            return {"enabled": False}
        earned: dict[str, int] = defaultdict(int)
        paid: dict[tuple[bytes, bytes], int] = defaultdict(int)
        claim_bytes = fees = covered = connections = hop_claims = 0
        names = {k.address: name for name, k in rn.keys.items()}
        unit_value = gnc(self.s.relay.pool_gnc) // rn.pool_length
        for tx in claims:
            assert isinstance(tx.payload, ClaimTransit)
            if tx.payload.claim is not None:  # the hub's: one per connection
                connections += 1
                covered += tx.payload.claim.claim.datagrams
            for hop in tx.payload.hops:  # a relay's: what it was owed, less what it was paid
                relay = hop.ticket.entry.relay
                key = (hop.token.token.pool, relay)
                due = hop_payable(hop.ticket.entry.credit, unit_value)
                earned[names[relay]] += due - paid[key]
                paid[key] = due
                hop_claims += 1
            claim_bytes += len(encode(tx))
            fees += tx.fee
        hops_seen = rn.tally.hops
        dropped: Counter[str] = Counter()
        for peer in rn.peers.values():
            dropped.update(peer.stats.dropped)
        per_connection = claim_bytes / connections if connections else 0.0
        per_datagram = claim_bytes / covered if covered else 0.0
        return {
            "enabled": True,
            "datagrams_sent": rn.tally.sent,
            "datagrams_delivered": len(hops_seen),
            "late_orders": self.late_orders,
            "dropped": dict(dropped),
            "mean_hops": round(sum(hops_seen) / len(hops_seen), 3) if hops_seen else 0.0,
            "carrier_forwarded": rn.peers[CARRIER].stats.forwarded,
            "claims_on_chain": len(claims),
            "connections_claimed": connections,
            "hop_claims": hop_claims,
            "datagrams_per_claim": round(covered / connections, 1) if connections else 0.0,
            "reward_per_relay_gnc": {k: v / UNITS_PER_GNC for k, v in sorted(earned.items())},
            "claim_fees_gnc": fees / UNITS_PER_GNC,
            "chain_bytes_per_datagram": round(per_datagram, 2),
            "one_claim_per_datagram_bytes": round(per_connection, 1),
            "bytes_saving_factor": round(per_connection / per_datagram, 1) if per_datagram else 0.0,
        }

    def params_balance(self, address: Address) -> int:
        return sum(a.amount for a in self.params.allocations if a.address == address)

    def finish(self, max_ms: int = 6 * 3600 * 1000) -> bool:
        """Mine until every deferred transaction is submitted, mempools are empty and all
        nodes agree (bounded)."""
        deadline = self.backend.now() + max_ms
        while self.backend.now() < deadline:
            self.run_for(STEP_MS)
            if not self.actions and self.backend.settled():
                return True
        return False

    # --- report ----------------------------------------------------------------------------

    def report(self, balances0: dict[Address, int], converged: bool, simulation_s: float) -> dict[str, Any]:
        chain = self.backend.chain()
        by_type: Counter[str] = Counter()
        chain_bytes = 0
        miners: dict[Address, int] = defaultdict(int)
        claims: list[Transaction] = []
        for height in range(1, chain.height + 1):
            block = chain.block_at(height)
            assert block is not None
            chain_bytes += len(encode(block))
            by_type.update(type(t.payload).__name__ for t in block.txs)
            cb = block.txs[0].payload
            miners[block.header.miner] += cb.reward + cb.fees  # type: ignore[union-attr]
            claims.extend(t for t in block.txs if isinstance(t.payload, ClaimTransit))
        view = chain.view()
        delta = {a: chain.account(a).balance - b for a, b in balances0.items()}
        prosumers = [h for h in self.homes if h.pv_kw]
        consumers = [h for h in self.homes if not h.pv_kw]
        units = UNITS_PER_GNC

        def role_gnc(people: list[Participant]) -> float:
            return round(sum(delta[p.address] for p in people) / units, 6)

        subsidised = [
            r
            for h in self.homes
            if h.meter
            for i in range(self.first, self.first + self.s.simulation.intervals)
            if (r := view.get(READINGS, reading_key(h.meter.meter_id, i))) is not None and r.subsidised
        ]
        subsidies = len(subsidised)
        rate = gnc(self.s.government.subsidy)
        subsidy_units = sum(energy_cost(r.exported_wh, rate) for r in subsidised)
        prices = [c["price"] for c in self.tally.clearing if c["price"] is not None]
        exported = sum(plan.export_wh for plan in self.plans.values())
        nodes = self.backend.node_figures()
        return {
            "scenario": {
                "name": self.s.simulation.name,
                "seed": self.s.simulation.seed,
                "source": self.s.source,
            },
            "energy": {
                "pv_wh": sum(sum(h.pv_wh) for h in self.homes),
                "load_wh": sum(sum(h.load_wh) for h in self.homes),
                "battery_losses_wh": sum(h.battery.lost_wh for h in self.homes if h.battery),
                "exported_wh": exported,
                "unsold_export_wh": exported - self.tally.p2p_wh - self.tally.to_dso_wh,
                "p2p_wh": self.tally.p2p_wh,
                "bought_from_dso_wh": self.tally.from_dso_wh,
                "sold_to_dso_wh": self.tally.to_dso_wh,
                "curtailed_wh": self.tally.curtailed_wh,
                "contracts": self.tally.contracts,
            },
            "clearing_price": {
                "per_interval": [
                    {**c, "price_gnc_per_kwh": None if c["price"] is None else c["price"] / units}
                    for c in self.tally.clearing
                ],
                "mean_gnc_per_kwh": round(sum(prices) / len(prices) / units, 6) if prices else None,
            },
            "revenue_gnc": {
                "prosumers": role_gnc(prosumers),
                "consumers": role_gnc(consumers),
                "line_owners": role_gnc(self.line_owners),
                "dso": role_gnc([self.dso]),
                "government": role_gnc([self.government]),
                "miners": round(sum(miners.values()) / units, 6),
            },
            "subsidies": {
                "readings_subsidised": subsidies,
                "paid_gnc": round(subsidy_units / units, 6),
            },
            "relay": self.relay_report(claims),
            "security": {
                "flagged_meters": len(self.flagged_homes()),
                "trusting_homes": sum(1 for h in self.homes if h.policy and h.policy.trusted),
                "flags_on_chain": by_type.get("PublishFlag", 0),
            },
            "dso": {
                "curtailment_interval": self.curtail_interval,
                "curtailment_utc": None if self.curtail_interval is None else clock(self.curtail_interval),
                "overrides_recorded": by_type.get("RecordOverride", 0),
            },
            "chain": {
                "height": chain.height,
                "head": chain.head.hash.hex(),
                "blocks": chain.height,
                "bytes": chain_bytes,
                "transactions_by_type": dict(sorted(by_type.items())),
            },
            "converged": converged,
            "transactions": {
                "submitted": dict(self.tally.submitted),
                "refused": dict(self.tally.refused),
                "orders_refused": dict(self.tally.orders_refused),
            },
            "nodes": nodes,
            "timing": {
                "simulation_s": round(simulation_s, 2),
                "verifying_s": round(sum(n.get("validation_s", 0.0) for n in nodes.values()), 3),
                "power_flow_s": round(self.grid.seconds, 2),
            },
            "grid": {
                "line_owners": [
                    {
                        "name": owner.name,
                        "homes": len(self.grid.feeders[f]),
                        "losses_wh": round(self.tally.losses_wh[f], 1),
                        "transformer_losses_wh": round(self.tally.transformer_losses_wh[f], 1),
                        "max_loading_percent": round(self.tally.max_loading[f], 1),
                        "v_min_pu": round(self.tally.v_min[f], 4),
                        "v_max_pu": round(self.tally.v_max[f], 4),
                    }
                    for f, owner in enumerate(self.s.line_owners)
                ],
                "congested_intervals": self.tally.congested_intervals,
            },
            "participants": {
                "homes": len(self.homes),
                "prosumers": len(prosumers),
                "with_battery": sum(1 for h in self.homes if h.battery),
                "line_owners": len(self.line_owners),
                "meters_registered": sum(1 for m in self.meter_owner if view.get(METERS, m) is not None),
                "authorities": {
                    address_to_text(p.address): p.name
                    for p in (self.maker, self.dso, self.government, self.security)
                },
            },
        }


def trusts(i: int, share: float) -> bool:
    """Spread a share evenly over participants: the i-th is in when i * share crosses an integer."""
    return int((i + 1) * share) > int(i * share)


def clock(interval: Interval) -> str:
    """Start of ``interval`` as HH:MM (UTC)."""
    minutes = (interval % 96) * (INTERVAL_MS // 60_000)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def memory_network(s: Scenario, out: Path) -> Callable[[ChainParams], Backend]:
    """Mining full nodes on the in-memory network: ``out/chain`` (n0) and ``out/nodes/n1..``."""

    def connect(params: ChainParams) -> Backend:
        net = MemoryNetwork(
            start_ms=params.genesis_time,
            latency_ms=s.network.latency_ms,
            jitter_ms=s.network.jitter_ms,
            seed=s.simulation.seed,
        )
        for i in range(s.network.nodes):
            data_dir = out / "chain" if i == 0 else out / "nodes" / f"n{i}"
            config = NodeConfig(
                miner=PrivateKey.from_label(f"{s.simulation.name}/miner-{i}").address,
                hashes_per_tick=s.network.hashes_per_tick,
                template_refresh_ms=30_000,
                status_interval_ms=30_000,
            )
            net.add(Node(f"n{i}", Chain.create(data_dir, params), config))
        net.link_all()
        return MemoryBackend(net, round(s.network.tick_s * 1000))

    return connect


def simulate(scenario: Scenario, out: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Run ``scenario``, write ``out/report.json`` and ``out/chain/``; returns the report."""
    prepare_out_dir(out, "simulate")
    sim = Neighbourhood(scenario, memory_network(scenario, out))
    try:
        report = sim.run(progress)
    finally:
        sim.close()  # chains, MQTT clients and the broker, whatever happened
    report["verify"] = audit(out / "chain")
    report["timing"]["audit_s"] = report["verify"]["seconds"]
    write_report(out, report)
    return report


def devnet_network(
    s: Scenario, out: Path, nodes: int, speed: float, on_start: Callable[[Devnet], None] | None = None
) -> Callable[[ChainParams], Backend]:
    """``nodes`` node processes on 127.0.0.1 (``out/n0..``) on one scenario clock running
    ``speed`` times faster than real time, at the scenario's simulated hash rate."""

    def connect(params: ChainParams) -> Backend:
        sim_hash_rate = s.network.nodes * s.network.hashes_per_tick / s.network.tick_s  # per clock second
        per_tick = sim_hash_rate * speed * NODE_TICK_S / nodes
        clock = Clock(params.genesis_time + 1_000, now_ms(), speed)
        devnet = Devnet(out, nodes, hashes_per_tick=max(1, round(per_tick)), params=params, clock=clock)
        backend = DevnetBackend(devnet, act_every_ms=max(STEP_MS, clock.span(500)))
        try:
            devnet.start()
            if on_start is not None:
                on_start(devnet)
            backend.wait_linked(timeout_s=180)
        except BaseException:
            backend.close()
            raise
        return backend

    return connect


def simulate_on_devnet(
    scenario: Scenario,
    out: Path,
    nodes: int,
    speed: float,
    progress: Progress | None = None,
    on_start: Callable[[Devnet], None] | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` on a devnet of node processes driven through their HTTP APIs; write
    ``out/report.json``; every process is stopped at the end, whatever happens. Relays are not
    simulated here (orders travel as the nodes' order gossip; sellers settle their contracts)."""
    connect = devnet_network(scenario, out, nodes, speed, on_start)
    scenario = replace(
        scenario,
        network=replace(scenario.network, nodes=nodes),
        relay=replace(scenario.relay, enabled=False),
    )
    sim = Neighbourhood(scenario, connect)
    try:
        report = sim.run(progress)
    finally:
        sim.close()
    report["verify"] = audit(out / "n0")
    report["timing"]["audit_s"] = report["verify"]["seconds"]
    report["devnet"] = {"nodes": nodes, "speed": speed, "relays": "not simulated on a devnet"}
    write_report(out, report)
    return report
