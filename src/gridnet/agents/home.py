"""A home: its PV array, battery and load (the world's physics), its meter, and the device
that trades for it under its owner's private policy.

The device orders on a *forecast* (the real PV and load with a seeded error, ``[homes]
forecast_error``); the meter then reads what really happened. As a buyer, the device
acknowledges what each seller's signed reading shows was delivered, and buys what it still
lacks from the DSO at the imbalance price under its day's balancing contract. As a seller,
it checks that each contract was settled for all it delivered and disputes a state that
acknowledges less with the buyer's later one. It follows a DSO command when its policy
trusts the DSO for commands, and otherwise records its override on chain.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from gridnet.agents.base import Agent
from gridnet.agents.carrier import claim_hops, claim_receipts
from gridnet.agents.contracts import close_when_done, dispute_if_short, dues, settle_when_ready
from gridnet.agents.device import SimulatedDevice
from gridnet.agents.dso import line_fees
from gridnet.agents.helios import island_caps
from gridnet.agents.manufacturer import Manufacturer, build_meter, firmware_image, register_identity
from gridnet.agents.meters import CONNECTION, PV_RELAY, RELEASE, relay_command, relay_for
from gridnet.agents.roles import Role
from gridnet.agents.world import Deal
from gridnet.contracts.channel import (
    MAX_SPAN,
    ContractState,
    ContractTerms,
    Delivery,
    SignedState,
    contract_id,
    sign_state,
)
from gridnet.errors import ConfigError, FirmwareInstallFailed, GridnetError, shown
from gridnet.grid.commands import CommandKind, DsoCommand, SignedCommand, addresses, covers
from gridnet.ledger.params import Allocation
from gridnet.ledger.registry import Payload
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.advisory import vulnerability, vulnerable_meter
from gridnet.ledger.txs.contract import OpenContract
from gridnet.ledger.txs.firmware import RELEASES, release_key
from gridnet.ledger.txs.grid import RecordOverride, check_dso_command
from gridnet.ledger.txs.meter import METERS, ReportMeterStatus
from gridnet.market.orders import Side
from gridnet.market.policy import Policy, PriceWindow, load_policy
from gridnet.meter.device import MeterDevice, RelayState
from gridnet.meter.status import firmware_image_hash
from gridnet.sim.physics import INTERVAL_H, Battery
from gridnet.sim.relaynet import CommandNote, StateNote
from gridnet.sim.scenario import Scenario, data_path, gnc
from gridnet.units import INTERVAL_MS, Interval, UnitsPerKWh, Wh, interval_start
from gridnet.world.demand import Consumer, demand
from gridnet.world.solar import PvArray, Sky, irradiance, pv_energy

if TYPE_CHECKING:
    from gridnet.agents.world import World

SECURE_EVERY_MS = 5 * 60_000
"""How often a home's device checks its meter's firmware against the advisories on chain."""


@dataclass
class Energy:
    """A home's energy in one interval: planned on the forecast, or what really happened."""

    export_wh: Wh = 0
    import_wh: Wh = 0
    curtailed_wh: Wh = 0
    """PV energy a DSO command kept off the grid (and the battery could not store)."""
    sell_down_wh: Wh = 0
    """Battery energy it sells (its state of charge above the policy's threshold)."""
    night_charge_wh: Wh = 0
    """Energy it buys to charge its battery (below the threshold, no sun; and ``check_wh``)."""
    check_wh: Wh = 0
    """Of that, what a scheduled check of its policy buys (bid at the check's price)."""
    shed_wh: Wh = 0
    """Load its island node's withdrawal cap left unserved (the battery could not cover it)."""


@dataclass
class Balancing:
    """The home's balancing contract with the DSO for a span of intervals: the shortfall it
    acknowledges, interval by interval, at the imbalance price."""

    terms: ContractTerms
    delivered: dict[Interval, Wh] = field(default_factory=dict)
    seq: int = 0
    sent: int = 0
    """Intervals acknowledged in the last state it sent."""

    @property
    def acknowledged_wh(self) -> Wh:
        return sum(self.delivered.values())


class Home(Agent):
    role = "home"

    def __init__(self, name: str, world: World, index: int) -> None:
        super().__init__(name, world.key(name), world.node_for(index))
        self.meter = build_meter(world, name, world.key(f"{name}/meter"))
        self.index = index
        self.policy = Policy()
        self.sell_floor: UnitsPerKWh | None = None
        self.pv_kw = 0.0
        self.annual_kwh = 0.0
        self.load_profile = ""
        self.business = False
        """A business (BDEW ``[homes] business_profile``), not a household."""
        self.pv_wh: list[Wh] = []
        """Its PV array's production in each interval of the run [Wh] (pvlib)."""
        self.load_wh: list[Wh] = []
        """Its consumption in each interval of the run [Wh] (demandlib's BDEW profile)."""
        self.pv_forecast: list[Wh] = []
        self.load_forecast: list[Wh] = []
        self.battery: Battery | None = None
        self.acks_own_meter = False
        """Its device first acknowledges only what its own meter imported (a seller disputes)."""
        self.plans: dict[Interval, Energy] = {}
        self.real: dict[Interval, Energy] = {}
        self.soc: dict[Interval, float | None] = {}
        """Its battery's state of charge at the end of each interval [%] (None: no battery)."""
        self.commands: list[DsoCommand] = []
        """DSO commands it follows."""
        self.overridden: list[tuple[DsoCommand, int, str]] = []
        """With its meter as a device: the DSO commands it overrides that act through a relay,
        with that relay and its reason (it keeps the relay closed while they are in force)."""
        self.device_meter: MeterDevice | None = None
        """Its meter as a device (``[meters] devices``): the world feeds it, it measures."""
        self.inverter_down: tuple[Interval, Interval | None] | None = None
        """The intervals its PV inverter is broken (``[maintenance]``): from the first, up to the
        second (None: not repaired yet)."""
        self.release_wh = 0
        """Redeemed energy a Helios controller's release feeder holds for it [Wh]: it flows,
        serving its load first, while the controller keeps its meter's release relay closed."""
        self.relay_nonce = 0
        """The last nonce of a relay command it signed as its meter's owner."""
        self.start_gnc: float | None = None
        """What it holds at the start when another role decides it (else ``[homes] start_gnc``)."""
        self.island_caps: tuple[Wh, Wh] | None = island_caps(world.s)
        """As a node of a Helios island: the most it may inject and withdraw an interval [Wh]."""
        self.overrides = 0
        self.commands_refused = 0
        self.commands_read = 0
        """Sequence number of the last command its device read from its DSO's node."""
        self.next_check: dict[int, int] = {}
        """Its policy's scheduled checks: index -> when [ms] each is next due."""
        self.wanted: tuple[Wh, int] | None = None
        """What a check decided to buy (energy, price cap), for the next interval it orders."""
        self.balancing: dict[Interval, Balancing] = {}
        """First interval of each span -> its balancing contract."""
        self.final_states: dict[bytes, SignedState] = {}
        self.tried_releases: set[str] = set()
        """Firmware versions its device tried to install (once each)."""
        self.updates_installed = 0
        self.update_failures = 0
        self.next_secure = 0
        """When its device next checks its meter against the advisories [ms]."""
        self.banned = False
        """Its meter is vulnerable on chain (as its device last saw): it places no orders."""
        self.orders_withheld = 0

    # --- set-up --------------------------------------------------------------------------

    def allocations(self, world: World) -> list[Allocation]:
        start = world.s.homes.start_gnc if self.start_gnc is None else self.start_gnc
        return [Allocation(self.address, gnc(start))]

    def bootstrap(self, world: World) -> None:
        register_identity(world, self)
        world.open_pool(self, f"{self.name}/pool", world.with_role("dso"))  # to the hub
        world.one(Manufacturer).fit_meter(world, self)
        self.open_balancing(world, world.first)

    @property
    def device(self) -> SimulatedDevice:
        """Its meter and battery, as its trading device reaches them (the meter adapter)."""
        assert self.meter is not None
        return SimulatedDevice(self.meter, self.battery)

    # --- physics -------------------------------------------------------------------------

    def limits(self, interval: Interval) -> tuple[Wh | None, Wh | None]:
        """The export and import caps [Wh] on ``interval``: its island node's, and those the
        DSO commands it follows set."""
        export_cap, import_cap = self.island_caps if self.island_caps is not None else (None, None)
        for c in self.commands:
            if covers(c, interval):
                cap = round(c.limit_w * INTERVAL_H)
                if c.kind == CommandKind.LIMIT_IMPORT:
                    import_cap = cap if import_cap is None else min(import_cap, cap)
                else:
                    export_cap = cap if export_cap is None else min(export_cap, cap)
        return export_cap, import_cap

    def energy(
        self,
        interval: Interval,
        pv: Wh,
        load: Wh,
        battery: Battery | None,
        plan: Energy | None,
        check_wh: Wh = 0,
        *,
        disconnected: bool = False,
    ) -> Energy:
        """Its energy in ``interval`` with this PV and load: the battery absorbs the surplus
        or covers the deficit; without ``plan`` the policy decides whether to sell the
        battery down or charge it at night (and charges ``check_wh`` more, what a scheduled
        check decided to buy), with one it does what was planned (as far as the battery
        allows); a followed command caps the export or the import, and an island node's caps
        bound both (load it cannot draw is shed), as an open connection relay
        (``disconnected``) bounds both to zero. All that is asked of the battery is netted
        first, and it makes one move (charge or discharge) within its power limit: a planned
        sell-down in an interval it stores a surplus only stores less."""
        e = Energy()
        export_cap, import_cap = (0, 0) if disconnected else self.limits(interval)
        surplus = pv - load
        moved = 0  # the battery's one move [Wh]: + charged, - discharged
        if battery is not None:
            battery.begin_interval()
            moved = self.battery_move(battery, e, surplus, pv, plan, check_wh, export_cap, import_cap)
        grid = surplus - moved  # + exported, - imported [Wh]
        e.export_wh, e.import_wh = max(0, grid), max(0, -grid)
        if export_cap is not None and e.export_wh > export_cap:
            e.curtailed_wh = e.export_wh - export_cap
            e.export_wh = export_cap
        hard = disconnected or self.island_caps is not None
        if hard and import_cap is not None and e.import_wh > import_cap:
            e.shed_wh = e.import_wh - import_cap
            e.import_wh = import_cap
        return e

    def battery_move(
        self,
        battery: Battery,
        e: Energy,
        surplus: Wh,
        pv: Wh,
        plan: Energy | None,
        check_wh: Wh,
        export_cap: Wh | None,
        import_cap: Wh | None,
    ) -> Wh:
        """Move ``battery`` once for the interval and return the move [Wh] (+ charged, -
        discharged): what the home asks of it (store the ``surplus`` unless its policy sells
        the battery down now; cover a deficit), plus what its device trades (a sell-down, a
        night charge, a check's purchase: ``plan``'s, or the policy's on the battery as it
        is), kept within the caps (the battery stores export over the cap and covers import
        over it as far as it can). ``e`` gets the trades as they went: the sell-down and
        charge are what the trade moved the battery beyond what the home alone asked."""
        policy = self.policy
        own = surplus if surplus < 0 or not policy.wants_to_sell(battery.soc_percent) else 0
        own_move = battery.clip(own)
        sell = charge = check = 0
        if plan is not None:  # the device operates the delivery it planned
            sell, charge = plan.sell_down_wh, plan.night_charge_wh
        elif (threshold := policy.sell_above_soc) is not None and policy.wants_to_sell(battery.soc_percent):
            above = battery.soc_wh - round(battery.capacity_wh * threshold / 100) + min(0, own_move)
            sell = max(0, min(above, battery.capacity_wh // 4))
        elif policy.wants_to_buy(battery.soc_percent) and pv == 0:
            charge = battery.capacity_wh // 8
        if plan is None:
            check = check_wh
        asked = own + charge + check - sell
        traded = battery.clip(asked)
        lowest = asked if export_cap is None else max(asked, surplus - export_cap)
        target = lowest if import_cap is None else min(lowest, surplus + import_cap)
        # (the home's own battery through its device's adapter; a plan moves a copy of it)
        operate = self.device.operate if battery is self.battery and self.meter is not None else battery.move
        moved = operate(battery.clip(target))
        trade = traded - own_move  # what the trade moved, less what a cap took back of it
        if trade < 0:
            e.sell_down_wh = -min(0, trade + max(0, moved - traded))
        else:
            e.night_charge_wh = max(0, trade - max(0, traded - moved))
            e.check_wh = min(check, max(0, e.night_charge_wh - charge))
        return moved

    # --- trading -------------------------------------------------------------------------

    def tick(self, world: World) -> None:
        now = world.now()
        self.run_checks(now)
        if now >= self.next_secure:  # its device watches the advisories every few minutes
            self.next_secure = now + SECURE_EVERY_MS
            self.secure(world)
        if world.relaynet is None:  # no relays: its device reads its DSO's node for commands
            commands, self.commands_read = world.commands(world.with_role("dso"), self.commands_read)
            self.inbox.extend(CommandNote(c) for c in commands)
        if not self.inbox:
            return
        notes, self.inbox = self.inbox, []
        for note in notes:
            if isinstance(note, CommandNote):
                self.on_command(world, note.command)
            elif isinstance(note, StateNote):  # a buyer's state, to settle as the seller
                settle_when_ready(world, self, note.state)

    def on_command(self, world: World, signed: SignedCommand) -> None:
        """Its device checks a DSO command on chain; its policy follows it or overrides it."""
        assert self.meter is not None
        look = world.look(self.node)
        try:
            issuer = check_dso_command(look.view, signed, world.backend.chain_id)
        except GridnetError:
            self.commands_refused += 1
            return
        if not addresses(signed.command, self.meter.meter_id, world.area):
            return  # for other meters of the area
        if self.policy.follows(signed.command.kind, issuer):
            self.commands.append(signed.command)
        else:
            reason = (
                "policy: this kind of command is overridden"
                if self.policy.trusts("dso", issuer)
                else "policy: the DSO is not trusted for commands"
            )
            world.submit(self, RecordOverride(signed, self.meter.meter_id, reason))
            self.overrides += 1
            relay = relay_for(signed.command)
            if self.device_meter is not None and relay is not None:
                # The DSO opens the relay before each interval the command covers (``Dso.measure``),
                # after this: its device closes it again then (``keep_overridden_closed``).
                self.overridden.append((signed.command, relay, reason))

    def run_checks(self, now: int) -> None:
        """Its policy's scheduled checks that are due: one whose battery holds less than its
        threshold buys, in the next interval it orders for, up to its target at its price
        (less what earlier checks bought that is still to be delivered)."""
        for n, check in enumerate(self.policy.checks):
            if now < self.next_check.get(n, 0):
                continue
            self.next_check[n] = now + check.every_s * 1000
            stored = self.device.stored_wh()
            if stored is not None and stored < check.below_wh:
                # What it already bought for the battery and is still to come counts too.
                coming = sum(p.check_wh for i, p in self.plans.items() if i not in self.real)
                if stored + coming < check.until_wh:
                    self.wanted = (check.until_wh - stored - coming, check.max_price)

    def secure(self, world: World) -> None:
        """The security layer on its premises: when an advisory covers the firmware its meter
        reports on chain and the meter's manufacturer published the fixing release, fetch the
        image, check it against the release's hash, install it through the adapter and send
        the meter's new signed status. A meter that fails to install stays banned."""
        assert self.meter is not None and world.params is not None
        view = world.look(self.node).view
        record = view.get(METERS, self.meter.meter_id)
        advisory = None if record is None else vulnerability(view, world.params, record)
        self.banned = advisory is not None
        if record is None or advisory is None or advisory.fixed_in in ("", *self.tried_releases):
            return
        key = release_key(record.manufacturer, record.vendor, record.model, advisory.fixed_in)
        release = view.get(RELEASES, key)
        image = firmware_image(advisory.fixed_in)  # from the manufacturer's download server
        if release is None or firmware_image_hash(image) != release.image:
            return  # not published (yet), or not the image published: nothing to install
        self.tried_releases.add(advisory.fixed_in)
        try:
            status = self.device.install(advisory.fixed_in, image)
        except FirmwareInstallFailed:
            self.update_failures += 1
            return
        self.updates_installed += 1
        world.submit(self, ReportMeterStatus(status))

    def order(self, world: World, interval: Interval) -> None:
        """Plan ``interval`` on the forecast (from the battery as it will be then: as it is
        now, through the running interval's plan) and send its orders to the hub."""
        assert self.meter is not None
        battery = copy.copy(self.battery)
        running = interval - 1
        if battery is not None and running in self.plans and running not in self.real:
            k = running - world.first
            self.energy(running, self.pv_forecast[k], self.load_forecast[k], battery, self.plans[running])
        k = interval - world.first
        wanted, check_price = self.wanted if self.wanted else (0, 0)
        self.wanted = None
        plan = self.energy(interval, self.pv_forecast[k], self.load_forecast[k], battery, None, wanted)
        self.plans[interval] = plan
        dso = world.with_role("dso")
        # It offers what it expects to export less one forecast error (short deliveries cost
        # its buyers the imbalance price) and bids for all it expects to import.
        offer = round(plan.export_wh * (1.0 - world.s.homes.forecast_error))
        for side, wh, price in (
            (Side.OFFER, offer, self.policy.min_sell_price(interval)),
            (Side.BID, plan.import_wh - plan.check_wh, self.policy.max_buy_price(interval)),
            (Side.BID, plan.check_wh, check_price),
        ):
            if wh and price is not None and self.banned:
                self.orders_withheld += 1  # the chain would refuse it: its meter is banned
            elif wh and price is not None:
                from gridnet.agents.aggregator import takes_order  # (a client of the aggregators)

                if not takes_order(world, self, side, interval, wh, price):
                    world.place_order(self, side, interval, wh, price, dso)
        if (interval - world.first) % MAX_SPAN == 0 and interval != world.first:
            self.open_balancing(world, interval)

    def measure(self, world: World, interval: Interval) -> None:
        """What really happened: the real PV and load, the battery, the commands it follows;
        its meter signs and publishes the reading."""
        assert self.meter is not None
        k = interval - world.first
        device = self.device_meter
        if device is None:
            pv = self.pv_working(interval, k)
            real = self.energy(interval, pv, self.load_wh[k], self.battery, self.plans.get(interval))
        else:
            real = self.measure_device(world, device, interval, k)
        if self.inverter_broken(interval):
            real.curtailed_wh += self.pv_wh[k]  # (what its PV would have produced: lost)
        self.real[interval] = real
        self.soc[interval] = None if self.battery is None else round(self.battery.soc_percent, 2)
        world.publish(self.meter.read(interval, real.export_wh, real.import_wh))

    def inverter_broken(self, interval: Interval) -> bool:
        """Whether its PV inverter is broken in ``interval`` (``[maintenance]``): decided by
        the interval measured, not by the clock, which has run on to the next interval's
        start when an interval is measured."""
        down = self.inverter_down
        return down is not None and down[0] <= interval and (down[1] is None or interval < down[1])

    def pv_working(self, interval: Interval, k: int) -> Wh:
        """What its PV array produces in ``interval``, the run's ``k``-th: nothing while its
        inverter is broken (``[maintenance]``)."""
        return 0 if self.inverter_broken(interval) else self.pv_wh[k]

    def measure_device(self, world: World, device: MeterDevice, interval: Interval, k: int) -> Energy:
        """Its energy with its meter as a device: the relays decide what can flow (an open PV
        relay keeps the PV off, an open connection relay cuts it off the grid, a closed release
        relay lets redeemed energy in, serving its load first and then charging its battery),
        then the world feeds the
        device, which measures it: the export over the interval's first half, the import (and
        the release) over its second, the PV over all of it."""
        closed = self.keep_overridden_closed(world, [r.closed for r in device.relays()], interval)
        pv = self.pv_working(interval, k) if closed[PV_RELAY] else 0
        load = self.load_wh[k]
        cap = load if self.island_caps is None else self.island_caps[1]
        release = min(load, self.release_wh, cap) if closed[RELEASE] else 0
        real = self.energy(
            interval,
            pv,
            load - release,
            self.battery,
            self.plans.get(interval),
            disconnected=not closed[CONNECTION],
        )
        real.curtailed_wh += self.pv_working(interval, k) - pv
        # Then its battery, unless it sold down (it moves one way an interval: its surplus is
        # not negative here, so only a sell-down discharges it).
        sold_down = real.sell_down_wh > 0
        if closed[RELEASE] and self.release_wh > release and self.battery is not None and not sold_down:
            room = min(self.release_wh, cap) - release - real.import_wh
            release += self.battery.charge(max(0, room))
        if self.island_caps is not None and real.import_wh + release > self.island_caps[1]:
            over = min(real.import_wh, real.import_wh + release - self.island_caps[1])
            real.import_wh -= over  # its island cap holds for both feeders together
            real.shed_wh += over
        start, half = interval_start(interval), INTERVAL_MS // 2
        device.set_clock(start + half)
        exported = device.feed("ac", 0, real.export_wh * 8, half)
        device.set_clock(start + INTERVAL_MS)
        imported = -device.feed("ac", 0, -real.import_wh * 8, half)
        released = -device.feed("ac", 1, -release * 8, half)
        device.feed("dc", 0, pv * 4, INTERVAL_MS)
        measured = (exported, imported, released)
        assert measured == (real.export_wh, real.import_wh, release), "the device measured another flow"
        if released:  # redeemed energy: its meter reads it imported, and it is no shortfall of the DSO's
            self.release_wh -= released
            real.import_wh += released
            received = world.received_otherwise[interval]
            received[self.address] = received.get(self.address, 0) + released
        return real

    def keep_overridden_closed(self, world: World, closed: list[bool], interval: Interval) -> list[bool]:
        """Its relays as they conduct in ``interval`` (``closed``, as its device read them),
        once its device has closed again, with its own key, each relay the DSO opened for a
        command it overrides that covers ``interval`` (unless a command it follows, in force
        too, acts through the same relay). The DSO opens a relay before the command's first
        interval is measured, after the command reached the home: closing it on arrival would
        change nothing."""
        followed = {relay_for(c) for c in self.commands if covers(c, interval)}
        for command, relay, reason in self.overridden:
            if not closed[relay] and covers(command, interval) and relay not in followed:
                closed[relay] = self.set_relay(world, relay, True, reason).closed
        return closed

    def set_relay(self, world: World, relay: int, closed: bool, reason: str) -> RelayState:
        """As its meter's owner: open or close one of its relays (its state after)."""
        assert self.meter is not None and self.device_meter is not None
        self.relay_nonce += 1
        command = relay_command(self.key, self.meter.meter_id, relay, not closed, self.relay_nonce, reason)
        return self.device_meter.command(command)

    def acknowledge(self, world: World, interval: Interval) -> None:
        """As a buyer: acknowledge what each seller delivered and what is still missing (to
        the DSO, under the balancing contract). As a seller: watch that it is paid in full."""
        due = dues(world, interval)
        deals = world.deals.get(interval, [])
        bought = [d for d in deals if d.buyer is self]
        _, imported = world.metered(self, interval)
        received = sum(due[d.cid] for d in bought) + world.received_otherwise.get(interval, {}).get(
            self.address, 0
        )
        total_bought = sum(d.trade.wh for d in bought)
        for deal in bought:
            wh = acked = due[deal.cid]
            if wh:
                final = ContractState(deal.cid, 2, (Delivery(interval, wh),))
                self.final_states[deal.cid] = sign_state(final, self.key)
                if self.acks_own_meter and imported < total_bought:
                    acked = wh * imported // total_bought or wh  # what its own meter says it took
                state = sign_state(ContractState(deal.cid, 1, (Delivery(interval, acked),)), self.key)
                self.send_state(world, deal, state)
            if acked < deal.trade.wh:
                close_when_done(world, self, deal.terms, settled_seq=1 if wh else 0)
        for deal in deals:
            if deal.seller is self and due[deal.cid]:
                dispute_if_short(world, self, deal, due[deal.cid])
        self.record_shortfall(world, interval, max(0, imported - received))

    def send_state(self, world: World, deal: Deal, state: SignedState) -> None:
        """To the hub, which settles it (relays), or to the seller, who does (no relays)."""
        to = world.with_role("dso") if world.relaynet is not None else deal.seller
        world.send(self, StateNote(state), to)

    def final_state(self, cid: bytes) -> SignedState | None:
        """Its device's state acknowledging all the seller's meter shows (asked in a dispute)."""
        return self.final_states.get(cid)

    # --- balancing -----------------------------------------------------------------------

    def open_balancing(self, world: World, first: Interval) -> None:
        """The contract under which it buys its shortfall from the DSO at the imbalance price,
        from ``first`` for up to MAX_SPAN intervals; opened once both meters are registered."""
        dso = world.with_role("dso")
        assert self.meter is not None and dso.meter is not None
        last = min(first + MAX_SPAN - 1, world.last)
        terms = ContractTerms(
            chain=world.backend.chain_id,
            buyer=self.address,
            seller=dso.address,
            buyer_meter=self.meter.meter_id,
            seller_meter=dso.meter.meter_id,
            line_fees=line_fees(world, self),
            price=gnc(world.s.dso.imbalance_price),
            first_interval=first,
            last_interval=last,
            max_wh=self.balancing_wh(world, last - first + 1),
            dispute_window=world.s.chain.dispute_window_blocks,
            nonce=first,
        )
        signed = world.agree(terms)
        if signed is None:
            return
        self.balancing[first] = Balancing(terms)
        self.open_when_admissible(world, OpenContract(signed))

    def open_when_admissible(self, world: World, act: OpenContract) -> None:
        """Open a balancing contract once both meters are registered and neither is banned by
        an advisory (given up when its span ends)."""
        terms = act.signed.terms
        meters = (terms.buyer_meter, terms.seller_meter)
        assert world.params is not None
        params = world.params

        def admissible(view: StateView) -> bool:
            return all(
                view.get(METERS, m) is not None and vulnerable_meter(view, params, m) is None for m in meters
            )

        world.later(self, act, admissible, deadline=interval_start(terms.last_interval + 1))

    def dropped(self, world: World, payload: Payload, rule: str) -> None:
        """A balancing contract submitted just before an advisory banned a meter, and mined
        after: it waits again."""
        if isinstance(payload, OpenContract) and payload.signed.terms in (
            b.terms for b in self.balancing.values()
        ):
            self.open_when_admissible(world, payload)

    def balancing_wh(self, world: World, span: int) -> Wh:
        """The most its balancing contract over ``span`` intervals delivers: ``[dso]
        balancing_kwh``, within its island node's import cap (a contract that could deliver more
        an interval is refused, ``IslandCapExceeded``)."""
        wh = round(world.s.dso.balancing_kwh * 1000)
        return wh if self.island_caps is None else min(wh, self.island_caps[1] * span)

    def record_shortfall(self, world: World, interval: Interval, shortfall: Wh) -> None:
        span = max((f for f in self.balancing if f <= interval), default=None)
        if span is None:
            return
        b = self.balancing[span]
        wh = min(shortfall, b.terms.max_wh - b.acknowledged_wh)
        if wh > 0:
            b.delivered[interval] = wh
        last = b.terms.last_interval
        every = world.s.dso.balancing_every
        if ((interval - span + 1) % every == 0 or interval == last) and len(b.delivered) > b.sent:
            b.seq += 1
            b.sent = len(b.delivered)
            deliveries = tuple(Delivery(i, w) for i, w in sorted(b.delivered.items()))
            state = sign_state(ContractState(contract_id(b.terms), b.seq, deliveries), self.key)
            world.send(self, StateNote(state), world.with_role("dso"))
        if interval == last:
            close_when_done(world, self, b.terms, settled_seq=b.seq)

    # --- the end -------------------------------------------------------------------------

    def day_end(self, world: World, intervals: list[Interval]) -> None:
        claim_receipts(world, self)  # the DSO's commands it received by datagram

    def wrap_up(self, world: World) -> None:
        claim_hops(world, self)


def build(world: World) -> list[Agent]:
    """The scenario's homes: the first ``pv_share`` have PV (the first ``battery_share`` of
    those a battery), then the businesses; feeders in turn; the last homes without PV are on
    the hill (relays). Each home draws its prices and sizes from its own generators, every
    value whether it has a use for it or not: a key changes only what it is about (had the
    homes drawn in turn from one generator, only those with a battery drawing a capacity,
    ``battery_share`` would have changed every later home's PV and load)."""
    s = world.s
    h = s.homes
    owners = len(s.line_owners)
    maker = world.with_role("manufacturer").address
    security = world.with_role("security").address
    dso = world.with_role("dso").address
    n_pv = round(h.count * h.pv_share)
    n_bat = round(n_pv * h.battery_share)
    businesses = range(n_pv, n_pv + h.businesses)
    hill_first = h.count - s.relay.hill_homes if s.relay.enabled else h.count
    unknown = sorted(set(s.policies) - {f"home-{i}" for i in range(h.count)})
    if unknown:
        raise ConfigError(
            f"{s.source}: [policies] names {shown(unknown[0])}, which is no home "
            f"(home-0 to home-{h.count - 1})"
        )
    homes: list[Home] = []
    for i in range(h.count):
        home = Home(f"home-{i}", world, i)
        has_pv, has_bat = i < n_pv, i < n_bat
        prices, drawn = _draws(s, home.name, "prices"), _draws(s, home.name, "sizes")
        cap = gnc(round(prices.uniform(*h.buy_cap), 4))
        floor = gnc(round(prices.uniform(*h.sell_floor), 4))
        capacity = round(drawn.uniform(*h.battery_kwh) * 1000)
        pv_kw = round(drawn.uniform(*h.pv_kw), 2)
        annual_kwh = round(drawn.uniform(*h.annual_kwh), 1)
        trusted = {"meters": frozenset({security})} if _spread(i, s.security.trusting_share) else {}
        if not (has_pv and _spread(i, s.dso.override_share)):
            trusted["dso"] = frozenset({dso})
        home.policy = Policy(
            buy=(PriceWindow(0, 1440, cap),),
            sell=(PriceWindow(0, 1440, floor),) if has_pv else (),
            buy_below_soc=h.battery_buy_below if has_bat else None,
            sell_above_soc=h.battery_sell_above if has_bat else None,
            source=f"{s.source}: [homes]",
            trusted=trusted,
            manufacturers=frozenset({maker}),
        )
        home.sell_floor = floor if has_pv else None
        if home.name in s.policies:  # the owner's own policy file replaces the generated one
            currencies = {"GNC": Decimal(1), s.currency.name.upper(): s.currency.gnc_per_unit()}
            try:
                home.policy = load_policy(data_path(s.source, s.policies[home.name]), currencies)
            except ConfigError as exc:
                raise ConfigError(f"{s.source}: [policies] {home.name}: {exc}") from None
            floors = [w.price for w in home.policy.sell]
            home.sell_floor = min(floors) if floors else None
        if has_bat:
            home.battery = Battery(capacity, capacity // 2, round(h.battery_kw * 1000), h.battery_efficiency)
        home.feeder = i % owners
        home.on_hill = i >= hill_first
        home.pv_kw = pv_kw if has_pv else 0.0
        home.business = i in businesses
        home.annual_kwh = h.business_kwh if home.business else annual_kwh
        home.load_profile = h.business_profile if home.business else h.load_profile
        home.acks_own_meter = not has_pv and _every(i - n_pv, h.ack_own_meter_share)
        homes.append(home)
    _profiles(world, homes)
    return list(homes)


def _profiles(world: World, homes: list[Home]) -> None:
    """Each home's PV and load over the run: the sky over the site once (pvlib), then an
    array per PV home and a BDEW profile per home (demandlib), seeded by the scenario; and
    the device's forecast of both, with the scenario's seeded error."""
    s = world.s
    weather_file = data_path(s.source, s.weather.weather_file) if s.weather.sky == "file" else None
    sky = Sky(s.weather.sky, s.weather.cloudiness, s.simulation.seed, weather_file, s.weather.temp_air_c)
    start, n = world.first * 900_000, s.simulation.intervals
    light = irradiance(s.site, start, n, sky)
    world.weather_filled_hours = light.filled_hours
    for home in homes:
        array = PvArray(home.pv_kw, s.homes.pv_tilt_deg, s.homes.pv_azimuth_deg, s.homes.pv_losses_percent)
        home.pv_wh = pv_energy(array, light) if home.pv_kw else [0] * n
        label = f"{s.simulation.name}/{s.simulation.seed}/{home.name}"
        consumer = Consumer(home.annual_kwh, home.load_profile, s.homes.load_variation, label)
        home.load_wh = demand(consumer, start, n, s.site.timezone)
        rng = random.Random(f"{label}/forecast")
        home.pv_forecast = forecast(home.pv_wh, s.homes.forecast_error, rng)
        home.load_forecast = forecast(home.load_wh, s.homes.forecast_error, rng)


def _draws(s: Scenario, home: str, purpose: str) -> random.Random:
    """``home``'s own generator for ``purpose``, seeded by the scenario and nothing else."""
    return random.Random(f"{s.simulation.name}/{s.simulation.seed}/{home}/{purpose}")


def forecast(real: list[Wh], error: float, rng: random.Random) -> list[Wh]:
    """``real`` with a seeded relative error of standard deviation ``error`` (never below 0)."""
    return [max(0, round(wh * (1.0 + rng.gauss(0.0, error)))) if error else wh for wh in real]


def _every(j: int, share: float) -> bool:
    """The ``j``-th of a group is in a ``share`` of it taken from its start: the 0th, then
    every ``1 / share``-th."""
    return share > 0 and j % max(1, round(1 / share)) == 0


def _spread(i: int, share: float) -> bool:
    """Spread a share evenly over participants: the i-th is in when i * share crosses an integer."""
    return int((i + 1) * share) > int(i * share)


ROLE = Role("home", 50, build)
