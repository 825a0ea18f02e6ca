"""Vehicle-to-vehicle energy trading in the simulator (seed 003, section 3.2; PETCON;
``ledger/txs/vehicle.py``, ``market/ev_auction.py``).

``[ev] enabled = true`` gives ``vehicles`` electric vehicles to the homes (one each, in turn)
and a charging hotspot (a workplace car park) with its local aggregators. A trusted authority
(the vehicle registry) registers every vehicle, with its owner's consent, and the hotspot with
its terms (the station's fee, the charging and parking discounts, the penalty).

Each vehicle is one of its home's assets: its battery, its charging power, its daily trip
(``commute_kwh`` each way, 30 minutes) and its day, drawn per day: it leaves home to arrive at the
hotspot in the ``arrive_utc`` window and leaves it in the ``depart_utc`` window. A
``home_charger_share`` of them charge at home when back (to ``home_charge_to`` percent, at
``home_charger_kw``): that charging is part of the home's load, ordered and metered with it.
The others charge only at the hotspot.

Every ``auction_every_intervals`` intervals the aggregator auctions the next period among the
vehicles parked through all of it. Each takes a role from its state of charge: *charging*
below its target for the way home (a vehicle without a home charger wants ``fill_to``
percent), *discharging* above it, *idle* within 0.5 kWh of it; no vehicle moves more than its
charging power allows over the period. A charging vehicle values its first kWh at
``station_price`` (the station's grid tariff: its alternative) and its last at its own
``value_floor``; a discharging vehicle's first kWh costs what recharging it costs (the DSO's
retail price at home; the station's tariff without a home charger) and its deepest up to
``wear_gnc`` more. The aggregator runs the iterative double auction on these requests; every
pair it forms becomes a deal both vehicles sign and an aggregator processes (``OpenEvDeal``,
on chain before the period begins).
The same requests also go through the one-shot double auction, for the report's comparison
(welfare, rounds, messages). During the period the station moves the energy; a vehicle leaves
early in ``early_leave_share`` of the auctions it trades in (its deals fall short and it pays
the penalty). After the period the station signs each deal's delivery and the next aggregator
in turn processes it (``SettleEvDeal``). A vehicle leaving with less than it needs for the way (and,
without a home charger, back the next morning) tops up from the station's grid supply first.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gridnet.agents.base import Agent
from gridnet.agents.manufacturer import register_identity
from gridnet.agents.roles import Role
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import ConfigError
from gridnet.ledger.params import Allocation
from gridnet.ledger.state import IDENTITIES, StateView
from gridnet.ledger.txs.authority import AUTHORITIES, RegisterAuthority
from gridnet.ledger.txs.vehicle import (
    EV_DEALS,
    HOTSPOTS,
    VEHICLES,
    Breaker,
    DealStatus,
    DealTerms,
    Delivery,
    Name,
    OpenEvDeal,
    Processing,
    RegisterHotspot,
    RegisterVehicle,
    SettleEvDeal,
    VehicleConsent,
    deal_figures,
    deal_id,
    hotspot_id,
    sign_consent,
    sign_deal,
    sign_delivery,
    sign_processing,
)
from gridnet.market.ev_auction import Offer, Outcome, Request, iterative_auction, one_shot_auction
from gridnet.security.roles import Role as AuthorityRole
from gridnet.sim.scenario import IN_UNITS, MAX_PRICE, PRICE, bounded, gnc, on_chain, time_of_day
from gridnet.units import UNITS_PER_GNC, Interval, Wh, energy_cost

if TYPE_CHECKING:
    from gridnet.agents.home import Home
    from gridnet.agents.world import Look, World

DAY = 96
COMMUTE_INTERVALS = 2
"""A trip between home and the hotspot takes 30 minutes."""
DEADBAND_WH = 500
"""A vehicle within this of its target takes no role (idle)."""


@dataclass(frozen=True)
class EvTable:
    enabled: bool = False
    vehicles: int = bounded(12, 1, 1_000)
    hotspot: str = on_chain("Depot", Name)
    aggregators: int = bounded(2, 1, 32)
    """Local aggregators at the hotspot: one processes each deal, another its settlement."""
    home_charger_share: float = bounded(0.5, 0, 1)
    battery_kwh: tuple[float, float] = bounded((40.0, 75.0), 0, 1_000, "kWh")
    power_kw: float = bounded(11.0, 0, 1_000, "kW")
    """Most power a vehicle takes or gives at the hotspot [kW]."""
    home_charger_kw: float = bounded(7.4, 0, 1_000, "kW")
    home_charge_to: float = bounded(90.0, 0, 100, "%")
    """[%] a vehicle with a home charger charges to at home."""
    fill_to: float = bounded(80.0, 0, 100, "%")
    """[%] a vehicle without one wants at the hotspot."""
    reserve_percent: float = bounded(15.0, 0, 100, "%")
    """[%] of its battery a vehicle keeps beyond its trip."""
    commute_kwh: tuple[float, float] = bounded((3.0, 9.0), 0, 1_000, "kWh")
    """Range of the vehicles' one-way trips [kWh]."""
    arrive_utc: tuple[str, str] = ("07:00", "09:00")
    depart_utc: tuple[str, str] = ("16:00", "18:00")
    soc_start: tuple[float, float] = bounded((30.0, 90.0), 0, 100, "%")
    """Range of the vehicles' state of charge when the run starts [%]."""
    station_price: float = bounded(0.55, 0, MAX_PRICE, PRICE)
    """The station's grid tariff [GNC/kWh]: a charging vehicle's value of its first kWh."""
    value_floor: tuple[float, float] = bounded((0.32, 0.42), 0, MAX_PRICE, PRICE)
    """Range of the charging vehicles' value of the last kWh they want [GNC/kWh]."""
    wear_gnc: tuple[float, float] = bounded((0.02, 0.10), 0, MAX_PRICE, PRICE)
    """Range of what a discharging vehicle's deepest kWh costs beyond its first [GNC/kWh]."""
    fee_gnc: float = bounded(0.04, 0, MAX_PRICE, PRICE)
    charging_discount_gnc: float = bounded(0.01, 0, MAX_PRICE, PRICE)
    parking_discount_gnc: float = bounded(0.02, 0, MAX_PRICE, PRICE)
    penalty_pct: int = bounded(20, 0, 100, "%")
    auction_every_intervals: int = bounded(4, 1, DAY, "intervals")
    max_rounds: int = bounded(40, 1, 64)
    tolerance_wh: int = bounded(50, 0, 1_000_000, "Wh")
    early_leave_share: float = bounded(0.05, 0, 1)

    def problem(self) -> str | None:
        """What its keys say together that no vehicle can be (None: nothing; the scenario's
        loader asks): a battery of no whole Wh, or a trip the smallest battery cannot hold
        (both ways for a vehicle without a home charger: one has none when
        ``home_charger_share`` is below 1). Compared in Wh, as each vehicle's draws are
        rounded (rounding keeps the order): every vehicle drawn then fits."""
        smallest = round(self.battery_kwh[0] * 1000)
        if smallest < 1:
            return "[ev] battery_kwh must be at least 0.001 (1 Wh)"
        ways = 1 if self.home_charger_share >= 1 else 2
        most = ways * round(self.commute_kwh[1] * 1000)
        if most <= smallest:
            return None
        trip = "its trip home" if ways == 1 else "its trip home and back (without a home charger)"
        return (
            f"[ev] commute_kwh does not fit in battery_kwh: a vehicle leaves the hotspot holding {trip}, "
            f"up to {most / 1000:,g} kWh, and the smallest battery holds {smallest / 1000:,g} kWh; give a "
            "smaller commute_kwh or a larger battery_kwh"
        )


@dataclass
class Car:
    """A vehicle: its home, battery, trips and the state the simulator keeps of it."""

    name: str
    key: PrivateKey
    home: Home
    battery_wh: Wh
    power_w: int
    commute_wh: Wh
    charger: bool
    soc_wh: Wh
    value_lo: int
    wear: int
    target_wh: Wh
    """What it wants when it leaves the hotspot: its trip home and its reserve (without a home
    charger, ``fill_to`` percent and at least the trip back the next morning too), at most its
    battery."""
    least_wh: Wh
    """What it must hold to leave: the way home (and back, without a home charger), at most its
    battery (a top-up never fills it beyond)."""
    days: dict[int, tuple[Interval, Interval]] = field(default_factory=dict)
    """Day -> (interval it arrives at the hotspot, interval it leaves)."""
    home_plan: dict[Interval, Wh] = field(default_factory=dict)
    """Energy it charges at home in each interval [Wh] (part of its home's load)."""
    home_charged_wh: Wh = 0
    top_up_wh: Wh = 0
    """Energy it bought from the station's grid supply before leaving [Wh]."""
    left_early: int = 0

    @property
    def address(self) -> bytes:
        return self.key.address

    def at_hotspot(self, i: Interval) -> bool:
        arrive, leave = self.days.get(i // DAY, (0, 0))
        return arrive <= i < leave

    def on_road(self, i: Interval) -> bool:
        arrive, leave = self.days.get(i // DAY, (0, 0))
        return arrive - COMMUTE_INTERVALS <= i < arrive or leave <= i < leave + COMMUTE_INTERVALS

    def next_leaving_home(self, start: Interval) -> Interval | None:
        """The first interval from ``start`` on that it sets off for the hotspot."""
        return min(
            (a - COMMUTE_INTERVALS for a, _ in self.days.values() if a - COMMUTE_INTERVALS >= start),
            default=None,
        )


@dataclass
class LiveDeal:
    terms: DealTerms
    did: bytes
    buyer: Car
    seller: Car
    delivered: Wh = 0
    broken_by: Breaker = Breaker.NONE
    on_chain: bool | None = None
    """Whether the chain took it (None: not looked at yet)."""

    def planned(self, i: Interval) -> Wh:
        """What flows in interval ``i`` when both stay."""
        n = self.terms.last_interval - self.terms.first_interval + 1
        k = i - self.terms.first_interval
        wh = self.terms.energy_wh
        return wh * (k + 1) // n - wh * k // n


@dataclass
class AuctionLog:
    period: Interval
    vehicles: int
    charging: int
    discharging: int
    iterative: Outcome
    one_shot: Outcome


class VehicleRegistry(Agent):
    """The trusted authority: it registers the vehicles (with their owners' consent) and the hotspot."""

    role = "vehicle_registry"

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(5))]

    def bootstrap(self, world: World) -> None:
        register_identity(world, self)
        world.submit(self, RegisterAuthority(int(AuthorityRole.VEHICLE_REGISTRY), "Vehicle Registry"))


class EvDesk(Agent):
    """The hotspot's local aggregators and its charging station, and the vehicles' devices."""

    role = "ev"

    def __init__(self, world: World, registry: VehicleRegistry, cars: list[Car]) -> None:
        super().__init__("ev-aggregator", world.key("ev-aggregator"), world.node_for(1))
        self.t: EvTable = world.s.tables["ev"]
        self.registry = registry
        self.cars = cars
        self.lags = sorted(
            (world.key(f"ev-aggregator/{n}") for n in range(self.t.aggregators)), key=lambda k: k.public_key
        )
        self.station = world.key("ev-station")
        self.hid = hotspot_id(registry.key.public_key, self.t.hotspot)  # (the registry registers it)
        self.seed = f"{world.s.simulation.name}/{world.s.simulation.seed}"
        """Seeds each vehicle's draws for a period (whether it leaves early, and when)."""
        self.deals: list[LiveDeal] = []
        self.auctions: list[AuctionLog] = []
        self.roles = {"charging": 0, "discharging": 0, "idle": 0}
        """Roles the parked vehicles took, summed over the periods auctioned."""
        self.periods = 0
        """Periods with a vehicle parked through them."""
        self.processed = 0

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(10))]

    # --- set-up ----------------------------------------------------------------------------

    def bootstrap(self, world: World) -> None:
        t, reg = self.t, self.registry
        chain_id = world.backend.chain_id
        hotspot = RegisterHotspot(
            t.hotspot, self.station.public_key, tuple(k.public_key for k in self.lags), self.station.address,
            gnc(t.fee_gnc), gnc(t.charging_discount_gnc), gnc(t.parking_discount_gnc), t.penalty_pct,
        )  # fmt: skip

        def authority(view: StateView) -> bool:
            return view.get(AUTHORITIES, reg.address) is not None

        world.later(reg, hotspot, authority)
        for car in self.cars:
            consent = VehicleConsent(
                car.key.public_key, car.home.address, reg.address, car.battery_wh, car.power_w
            )
            act = RegisterVehicle(
                car.key.public_key, car.home.key.public_key, car.battery_wh, car.power_w,
                sign_consent(car.home.key, chain_id, consent), sign_consent(car.key, chain_id, consent),
            )  # fmt: skip

            def ready(view: StateView, owner: bytes = car.home.address) -> bool:
                return authority(view) and view.get(IDENTITIES, owner) is not None

            world.later(reg, act, ready)
            if car.charger and not car.at_hotspot(world.first) and not car.on_road(world.first):
                self.plan_home_charging(world, car, world.first)

    def plan_home_charging(self, world: World, car: Car, start: Interval) -> None:
        """Charge at home from ``start`` until full (``home_charge_to``) or it leaves again: the
        energy joins its home's load (and the forecast its device orders on)."""
        home, t = car.home, self.t
        per_interval = round(t.home_charger_kw * 1000 / 4)
        want = round(car.battery_wh * t.home_charge_to / 100) - car.soc_wh
        leaves = car.next_leaving_home(start)
        stop = world.last + 1 if leaves is None else min(leaves, world.last + 1)
        for i in range(start, stop):
            if want <= 0:
                break
            wh = min(per_interval, want)
            k = i - world.first
            home.load_wh[k] += wh
            home.load_forecast[k] += wh
            car.home_plan[i] = wh
            want -= wh

    # --- the auctions ----------------------------------------------------------------------

    def order(self, world: World, interval: Interval) -> None:
        n = self.t.auction_every_intervals
        if interval % n == 0 and interval + n - 1 <= world.last:
            self.auction(world, interval)

    def expected_soc(self, car: Car, period: Interval) -> Wh:
        """Its state of charge when ``period`` starts: what flows in the interval before, and
        the trip if it arrives just then."""
        soc = car.soc_wh
        for d in self.deals:
            live = d.broken_by == Breaker.NONE and d.on_chain is not False
            if live and d.terms.first_interval <= period - 1 <= d.terms.last_interval:
                soc += d.planned(period - 1) if d.buyer is car else 0
                soc -= d.planned(period - 1) if d.seller is car else 0
        arrive, _ = car.days.get(period // DAY, (0, 0))
        return soc - (car.commute_wh if arrive == period else 0)

    def auction(self, world: World, period: Interval) -> None:
        t = self.t
        n = t.auction_every_intervals
        here = [c for c in self.cars if all(c.at_hotspot(i) for i in range(period, period + n))]
        requests: list[Request] = []
        offers: list[Offer] = []
        station = gnc(t.station_price)
        home_price = gnc(world.s.dso.sell_price)
        for car in here:
            soc = self.expected_soc(car, period)
            move = car.power_w * n // 4
            target = car.target_wh
            if soc < target - DEADBAND_WH:
                want = min(move, target - soc, car.battery_wh - soc)
                requests.append(Request(car.address, want, station, min(station, car.value_lo)))
            elif soc > target + DEADBAND_WH:
                first = home_price if car.charger else station
                offers.append(Offer(car.address, min(move, soc - target), first, first + car.wear))
        if here:
            self.periods += 1
            self.roles["charging"] += len(requests)
            self.roles["discharging"] += len(offers)
            self.roles["idle"] += len(here) - len(requests) - len(offers)
        if not requests or not offers:
            return
        wedge = gnc(t.fee_gnc) - gnc(t.charging_discount_gnc)
        gain = gnc(t.parking_discount_gnc)
        iterative = iterative_auction(
            requests, offers, buyer_wedge=wedge, seller_gain=gain, tolerance_wh=t.tolerance_wh,
            max_rounds=t.max_rounds,
        )  # fmt: skip
        one_shot = one_shot_auction(requests, offers, buyer_wedge=wedge, seller_gain=gain)
        self.auctions.append(AuctionLog(period, len(here), len(requests), len(offers), iterative, one_shot))
        if iterative.price is None:
            return
        by_address = {c.address: c for c in here}
        chain_id = world.backend.chain_id
        traders: dict[bytes, Car] = {}
        for pair in iterative.pairs:
            buyer, seller = by_address[pair.buyer], by_address[pair.seller]
            terms = DealTerms(
                self.hid, buyer.address, seller.address, pair.wh, iterative.price, gnc(t.fee_gnc),
                gnc(t.charging_discount_gnc), gnc(t.parking_discount_gnc), t.penalty_pct, period,
                period + n - 1,
            )  # fmt: skip
            did = deal_id(terms)
            lag = self.lags[self.processed % len(self.lags)]
            self.processed += 1
            act = OpenEvDeal(
                terms,
                sign_deal(buyer.key, chain_id, terms),
                sign_deal(seller.key, chain_id, terms),
                lag.public_key,
                sign_processing(lag, chain_id, Processing(did)),
            )
            # Followed whatever its node answers now: one refused for a nonce gap is tried again
            # (World.submit) and may yet open; the chain says at its first interval.
            self.deals.append(LiveDeal(terms, did, buyer, seller))
            if world.submit(self, act):
                traders[buyer.address], traders[seller.address] = buyer, seller
        if n > 1:
            for car in traders.values():
                # Its own draws for the period, both every time: whether one vehicle trades or
                # leaves early changes no other's.
                rng = random.Random(f"{self.seed}/ev/leave/{car.name}/{period}")
                leaves, at = rng.random(), rng.randint(1, n - 1)
                if leaves < t.early_leave_share:  # it leaves before the period ends
                    arrive, _ = car.days[period // DAY]
                    car.days[period // DAY] = (arrive, period + at)
                    car.left_early += 1

    # --- the energy, the trips, the settlements --------------------------------------------

    def measure(self, world: World, interval: Interval) -> None:
        look = world.look(self.node)
        for d in self.deals:
            if d.terms.first_interval <= interval <= d.terms.last_interval:
                self.flow(look, d, interval)
        for car in self.cars:
            car.soc_wh += car.home_plan.get(interval, 0)
            car.home_charged_wh += car.home_plan.get(interval, 0)
            self.trip(world, car, interval + 1)
        for d in self.deals:
            if d.terms.last_interval == interval and d.on_chain:
                self.settle(world, d)

    def flow(self, look: Look, d: LiveDeal, i: Interval) -> None:
        """The station moves the deal's share of interval ``i`` while both vehicles are there
        (and the buyer's battery has room, the seller's energy)."""
        if d.on_chain is None:
            d.on_chain = look.view.get(EV_DEALS, d.did) is not None
        if not d.on_chain or d.broken_by != Breaker.NONE:
            return
        b, s = d.buyer, d.seller
        if not s.at_hotspot(i) or not b.at_hotspot(i):
            d.broken_by = Breaker.SELLER if not s.at_hotspot(i) else Breaker.BUYER
            return
        want = d.planned(i)
        wh = min(want, b.battery_wh - b.soc_wh, s.soc_wh)
        b.soc_wh += wh
        s.soc_wh -= wh
        d.delivered += wh
        if wh < want:
            d.broken_by = Breaker.SELLER if s.soc_wh == 0 else Breaker.BUYER

    def trip(self, world: World, car: Car, i: Interval) -> None:
        """At the start of interval ``i``: it arrives at the hotspot, leaves it (topping up first
        if it must), or gets home (and plugs in)."""
        arrive, leave = car.days.get(i // DAY, (-1, -1))
        if i == arrive:
            car.soc_wh = max(0, car.soc_wh - car.commute_wh)
        elif i == leave and car.soc_wh < (least := min(car.least_wh, car.battery_wh)):
            car.top_up_wh += least - car.soc_wh  # (never more than the battery holds)
            car.soc_wh = least
        elif i == leave + COMMUTE_INTERVALS:
            car.soc_wh = max(0, car.soc_wh - car.commute_wh)
            if car.charger:
                self.plan_home_charging(world, car, i + 1)

    def settle(self, world: World, d: LiveDeal) -> None:
        """The station signs what it measured; the next aggregator processes it once the deal is
        open on chain."""
        chain_id = world.backend.chain_id
        broken = d.broken_by if d.delivered < d.terms.energy_wh else Breaker.NONE
        delivery = Delivery(d.did, d.buyer.address, d.delivered, int(broken))
        lag = self.lags[self.processed % len(self.lags)]
        self.processed += 1
        act = SettleEvDeal(
            delivery,
            sign_delivery(self.station, chain_id, delivery),
            lag.public_key,
            sign_processing(lag, chain_id, Processing(d.did, delivery)),
        )

        def open_deal(view: StateView) -> bool:
            record = view.get(EV_DEALS, d.did)
            return record is not None and record.status == DealStatus.OPEN

        world.later(self, act, open_deal)

    # --- the report ------------------------------------------------------------------------

    def figures(self, world: World) -> dict[str, Any]:
        view = world.backend.chain().view()
        records = [(d, r) for d in self.deals if (r := view.get(EV_DEALS, d.did)) is not None]
        settled = [(d, r) for d, r in records if r.status == DealStatus.SETTLED]
        spot = view.get(HOTSPOTS, self.hid)
        registered = sum(view.get(VEHICLES, c.address) is not None for c in self.cars)
        t = self.t
        parking = sum(energy_cost(r.delivered_wh, r.terms.parking_discount) for _, r in settled)
        logs = self.auctions

        def side(pick: str) -> dict[str, Any]:
            outs: list[Outcome] = [getattr(a, pick) for a in logs]
            rounds = [o.rounds for o in outs]
            traded = [o for o in outs if o.price is not None]
            return {
                "welfare_gnc": round(sum(o.welfare for o in outs) / UNITS_PER_GNC, 6),
                "traded_wh": sum(o.traded_wh for o in outs),
                "deals": sum(len(o.pairs) for o in outs),
                "rounds_total": sum(rounds),
                "rounds_max": max(rounds, default=0),
                "messages": sum(o.messages for o in outs),
                "mean_price_gnc_per_kwh": round(
                    sum(o.price or 0 for o in traded) / len(traded) / UNITS_PER_GNC, 6
                )
                if traded
                else None,
            }

        iterative, one_shot = side("iterative"), side("one_shot")
        gain = iterative["welfare_gnc"] - one_shot["welfare_gnc"]
        return {
            "enabled": True,
            "hotspot": t.hotspot,
            "registrant": self.registry.key.public_key.hex(),
            "vehicles": len(self.cars),
            "home_chargers": sum(c.charger for c in self.cars),
            "registered": registered,
            "hotspot_registered": spot is not None,
            "periods": self.periods,
            "roles": dict(self.roles),
            "auctions": len(logs),
            "deals_signed": len(self.deals),
            "deals_on_chain": len(records),
            "deals_settled": len(settled),
            "deals_refused": len(self.deals) - len(records),
            "deals_broken": {
                "by_buyer": sum(r.broken_by == Breaker.BUYER for _, r in settled),
                "by_seller": sum(r.broken_by == Breaker.SELLER for _, r in settled),
            },
            "left_early": sum(c.left_early for c in self.cars),
            "agreed_wh": sum(r.terms.energy_wh for _, r in settled),
            "charged_wh": sum(r.delivered_wh for _, r in settled),
            "paid_gnc": round(sum(r.paid for _, r in settled) / UNITS_PER_GNC, 6),
            "penalties_gnc": round(sum(r.penalty for _, r in settled) / UNITS_PER_GNC, 6),
            "parking_discounts_gnc": round(parking / UNITS_PER_GNC, 6),
            "station_fees_gnc": 0.0 if spot is None else round(spot.fees / UNITS_PER_GNC, 6),
            "home_charging_wh": sum(c.home_charged_wh for c in self.cars),
            "station_top_up_wh": sum(c.top_up_wh for c in self.cars),
            "comparison": {
                "iterative": iterative,
                "one_shot": one_shot,
                "welfare_gain_gnc": round(gain, 6),
                "welfare_gain_percent": round(100 * gain / one_shot["welfare_gnc"], 2)
                if one_shot["welfare_gnc"] > 0
                else None,
                "welfare_is": "the energy's value to the charging vehicles less its cost to the "
                "discharging ones, on their true curves, summed over every auction [GNC]",
                "messages_are": "iterative: the price to every vehicle and its answer, each round, and "
                "the result; one-shot: an order and a result per vehicle",
            },
            "cars": [
                {
                    "vehicle": c.name,
                    "home": c.home.name,
                    "home_charger": c.charger,
                    "battery_kwh": c.battery_wh / 1000,
                    "bought_wh": v.bought_wh if (v := view.get(VEHICLES, c.address)) else 0,
                    "sold_wh": v.sold_wh if v else 0,
                    "deals": v.deals if v else 0,
                    "broken": v.broken if v else 0,
                    "soc_end_percent": round(100 * c.soc_wh / c.battery_wh, 1),
                }
                for c in self.cars
            ],
            "record": deal_figures(view, settled[0][0].did) if settled else None,
        }


def report(world: World, agents: Sequence[Agent]) -> dict[str, Any]:
    desk = next((a for a in agents if isinstance(a, EvDesk)), None)
    return {"enabled": False} if desk is None else desk.figures(world)


def build(world: World) -> list[Agent]:
    from gridnet.agents.home import Home

    t: EvTable = world.s.tables["ev"]
    if not t.enabled:
        return []
    where = f"{world.s.source}: [ev]"
    homes = world.of(Home)
    checks = (
        (1 <= t.vehicles <= 1_000, "vehicles must be 1 to 1000"),
        (bool(homes), "the vehicles need homes ([homes] count)"),
        (1 <= t.aggregators <= 32, "aggregators must be 1 to 32"),
        (0 <= t.home_charger_share <= 1 and 0 <= t.early_leave_share <= 1, "the shares must be 0 to 1"),
        (0 < t.battery_kwh[0] <= t.battery_kwh[1] <= 1_000, "battery_kwh must be a range in 0 to 1000"),
        (0 < t.power_kw <= 1_000 and 0 < t.home_charger_kw <= 1_000, "the powers must be above 0, to 1000"),
        (0 <= t.commute_kwh[0] <= t.commute_kwh[1], "commute_kwh must be a range of 0 or more"),
        (0 <= t.soc_start[0] <= t.soc_start[1] <= 100, "soc_start must be a range within 0 to 100"),
        (0 < t.home_charge_to <= 100 and 0 < t.fill_to <= 100, "home_charge_to and fill_to must be 0 to 100"),
        (0 <= t.reserve_percent < 100, "reserve_percent must be 0 to below 100"),
        (
            t.auction_every_intervals >= 1 and DAY % t.auction_every_intervals == 0,
            "auction_every_intervals must divide a day (96)",
        ),
        (1 <= t.max_rounds <= 64 and t.tolerance_wh >= 0, "max_rounds must be 1 to 64, tolerance_wh >= 0"),
        (0 <= t.penalty_pct <= 100, "penalty_pct must be 0 to 100"),
        (
            t.charging_discount_gnc >= 0 and t.parking_discount_gnc >= 0
            and gnc(t.charging_discount_gnc) + gnc(t.parking_discount_gnc) <= gnc(t.fee_gnc),
            f"the discounts must be 0 or more and add up to at most fee_gnc {IN_UNITS}",
        ),
        (
            0 <= t.value_floor[0] <= t.value_floor[1] and 0 <= t.wear_gnc[0] <= t.wear_gnc[1]
            and gnc(t.station_price) > 0,
            f"value_floor and wear_gnc must be ranges of 0 or more, station_price above 0 {IN_UNITS}",
        ),
    )  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{where} {message}")
    arrive = tuple(time_of_day(x, f"{where} arrive_utc") for x in t.arrive_utc)
    depart = tuple(time_of_day(x, f"{where} depart_utc") for x in t.depart_utc)
    if not arrive[0] <= arrive[1] < depart[0] <= depart[1] <= DAY - 1 - COMMUTE_INTERVALS:
        raise ConfigError(f"{where} arrive_utc must be a window before depart_utc's, both within the day")
    if arrive[0] < COMMUTE_INTERVALS:
        raise ConfigError(f"{where} arrive_utc must start at 00:30 or later (the trip takes 30 minutes)")
    s = world.s
    cars: list[Car] = []
    for n in range(t.vehicles):
        # Its own generators: a longer run (more days of arrivals) keeps every vehicle's sizes.
        rng = random.Random(f"{s.simulation.name}/{s.simulation.seed}/ev/{n}")
        battery = round(rng.uniform(*t.battery_kwh) * 1000)
        commute = round(rng.uniform(*t.commute_kwh) * 1000)
        charger = int((n + 1) * t.home_charger_share) > int(n * t.home_charger_share)
        reserve = commute + round(battery * t.reserve_percent / 100)
        # (at most what the battery holds: the loader refuses a trip it cannot hold, but the
        # reserve is on top of it)
        want = reserve if charger else max(reserve + commute, round(battery * t.fill_to / 100))
        car = Car(
            name=f"ev-{n}",
            key=world.key(f"ev-{n}"),
            home=homes[n % len(homes)],
            battery_wh=battery,
            power_w=round(t.power_kw * 1000),
            commute_wh=commute,
            charger=charger,
            soc_wh=round(battery * rng.uniform(*t.soc_start) / 100),
            value_lo=gnc(round(rng.uniform(*t.value_floor), 4)),
            wear=gnc(round(rng.uniform(*t.wear_gnc), 4)),
            target_wh=min(battery, want),
            least_wh=min(battery, commute if charger else 2 * commute),
        )
        for day in range(world.first // DAY, world.last // DAY + 1):
            when = random.Random(f"{s.simulation.name}/{s.simulation.seed}/ev/{n}/day/{day}")
            car.days[day] = (
                day * DAY + when.randint(arrive[0], arrive[1]),
                day * DAY + when.randint(depart[0], depart[1]),
            )
        cars.append(car)
    registry = VehicleRegistry("vehicle-registry", world.key("vehicle-registry"), world.node_for(0))
    return [registry, EvDesk(world, registry, cars)]


ROLE = Role("ev", 82, build, table=EvTable, report=report)
