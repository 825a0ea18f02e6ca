"""The DSO: runs the substation (the area's market hub), buys any surplus at its feed-in
price and sells any shortfall at its retail price, balances what forecasts got wrong at its
imbalance price, and watches the grid.

As the hub it receives the homes' orders and contract states (as datagrams when relays run,
else from its node's market topic and from the buyers), clears each interval's auction and
turns every trade into a contract all parties sign. After each interval it reads the power
flow: where a cable is over its limit or a voltage outside the band, it signs a command for
the homes downstream (curtail export when they push power out, limit import when they draw
it) for the next ``[dso] command_hold`` intervals and sends it to each home's device.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from gridnet.agents.base import Agent
from gridnet.agents.carrier import claim_receipts
from gridnet.agents.contracts import close_when_done, dispute_if_short, dues, settle_when_ready
from gridnet.agents.manufacturer import Manufacturer, build_meter, register_identity
from gridnet.agents.meters import relay_command, relay_for
from gridnet.agents.roles import Role
from gridnet.agents.world import Deal
from gridnet.contracts.channel import ContractState, ContractTerms, Delivery, LineFee, sign_state
from gridnet.grid.commands import CommandKind, DsoCommand, sign_command
from gridnet.ledger.params import Allocation
from gridnet.ledger.txs.advisory import vulnerable_meter
from gridnet.ledger.txs.auction import AUCTIONS, as_order, auction_key, auction_orders, closes_at
from gridnet.ledger.txs.authority import RegisterAuthority, flagged_by
from gridnet.ledger.txs.contract import CONTRACTS, OpenContract
from gridnet.ledger.txs.meter import METERS
from gridnet.market.matching import Trade, clear_with_eligibility
from gridnet.market.orders import Order, Side, SignedOrder, VerifiedOrder, admit_orders, validate_order
from gridnet.market.policy import MeterStanding, Policy
from gridnet.security.roles import FlagTarget
from gridnet.security.roles import Role as AuthorityRole
from gridnet.sim.relaynet import CommandNote, OrderNote, StateNote
from gridnet.sim.scenario import gnc
from gridnet.units import Address, Interval

if TYPE_CHECKING:
    from collections.abc import Callable

    from gridnet.agents.world import World


class Dso(Agent):
    role = "dso"

    def __init__(self, world: World) -> None:
        super().__init__("dso", world.key("dso"), world.node_for(0))
        self.meter = build_meter(world, self.name, world.key("dso/substation-meter"))
        self.book: dict[Interval, list[SignedOrder]] = defaultdict(list)
        """Orders that reached the hub by datagram, by interval."""
        self.cleared: set[Interval] = set()
        self.late_orders = 0
        self.refused_orders = 0
        """Orders that reached the hub breaking a market rule (a forged one, one signed for
        another chain's market): left out of its auction."""
        self.clearing: list[dict[str, int | None]] = []
        self.commands: list[DsoCommand] = []
        self.relay_spans: dict[tuple[str, int], list[tuple[Interval, Interval]]] = {}
        """(home, relay) -> the intervals its commands keep that relay open (meters as devices)."""
        self.relays_open: set[tuple[str, int]] = set()
        self.relay_nonce = 0
        self.books: dict[Interval, list[tuple[Order, int]]] = {}
        """Each cleared interval's orders (its own included) with the energy each traded [Wh]."""
        self.shortfall_wh = 0
        """Homes' import no contract covered that its substation meter shows it supplied [Wh]."""
        self.from_area_wh = 0
        """Homes' import that neither a contract nor the DSO supplied: neighbours' export that
        no contract sold, which nobody paid for [Wh]."""
        self.auctions: set[Interval] = set()
        """On-chain market: intervals whose auction it placed its orders in, not cleared yet."""
        self.own_due: dict[Interval, int] = {}
        """On-chain market: when it places its own orders in each interval's auction [ms]."""

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(world.s.dso.start_gnc))]

    def bootstrap(self, world: World) -> None:
        register_identity(world, self)
        for home in world.agents:  # a pool per home, for the commands it may send it
            if home.feeder is not None:
                world.open_pool(self, f"dso/pool/{home.name}", home)
        world.submit(self, RegisterAuthority(int(AuthorityRole.DSO), "Distribution System Operator"))
        world.one(Manufacturer).fit_meter(world, self)

    # --- the hub -------------------------------------------------------------------------

    def tick(self, world: World) -> None:
        for interval, due in list(self.own_due.items()):
            if world.now() >= due:
                del self.own_due[interval]
                self.place_own(world, interval)
        if self.auctions:
            self.read_auctions(world)
        if not self.inbox:
            return
        notes, self.inbox = self.inbox, []
        for note in notes:
            if isinstance(note, OrderNote):
                interval = note.order.order.interval
                if interval in self.cleared:
                    self.late_orders += 1  # arrived after its auction: it does not trade
                else:
                    self.book[interval].append(note.order)
            elif isinstance(note, StateNote):
                settle_when_ready(world, self, note.state)

    def clear(self, world: World, interval: Interval) -> None:
        """Clear what reached the hub, with its own bid and offer sized to the book (anyone
        holding the same orders gets the same result); every trade becomes a contract. On an
        on-chain market the chain clears: it only places its own bid and offer."""
        assert self.meter is not None
        if world.onchain:
            return  # the chain clears (it placed its own orders in ``tick``)
        book = world.market(self, interval) if world.relaynet is None else self.book.pop(interval, [])
        valid, refused = admit_orders(book, now_interval=interval - 1, chain_id=world.backend.chain_id)
        self.refused_orders += len(refused)  # (forged, or signed for another chain: left out)
        verified = self.admissible(world, valid)
        offered = sum(v.order.wh for v in verified if v.order.side == Side.OFFER)
        bid = sum(v.order.wh for v in verified if v.order.side == Side.BID)
        own = []
        if offered:  # it buys any surplus at its feed-in price
            own.append((Side.BID, offered, gnc(world.s.dso.buy_price)))
        if bid:  # and sells any shortfall at its retail price
            own.append((Side.OFFER, bid, gnc(world.s.dso.sell_price)))
        for side, wh, price in own:
            signed = self.signed_order(world, side, interval, wh, price)
            if world.relaynet is None:
                world.post_order(self, signed)  # on its topic too, for anyone recomputing
            verified.append(
                validate_order(signed, now_interval=interval - 1, chain_id=world.backend.chain_id)
            )
        self.cleared.add(interval)
        clearing = clear_with_eligibility(
            [v for v in verified if v.order.side == Side.BID],
            [v for v in verified if v.order.side == Side.OFFER],
            self.eligibility(world, verified),
        )
        bids_in = [v for v in verified if v.order.side == Side.BID]
        offers_in = [v for v in verified if v.order.side == Side.OFFER]
        self.clearing.append(
            {
                "interval": interval,
                "price": clearing.price,
                "traded_wh": clearing.traded_wh,
                "bids": len(bids_in),
                "offers": len(offers_in),
                "bid_wh": sum(v.order.wh for v in bids_in),
                "offer_wh": sum(v.order.wh for v in offers_in),
            }
        )
        traded: dict[bytes, int] = defaultdict(int)
        for t in clearing.trades:
            traded[t.bid_id] += t.wh
            traded[t.offer_id] += t.wh
        self.books[interval] = [(v.order, traded[v.id]) for v in verified]
        bids = {v.id: v for v in verified if v.order.side == Side.BID}
        opens = [self.contract(world, interval, n, t, bids[t.bid_id]) for n, t in enumerate(clearing.trades)]
        world.submit_all([o for o in opens if o is not None])  # (each node checks its share as one batch)

    # --- the on-chain market --------------------------------------------------------------

    def order(self, world: World, interval: Interval) -> None:
        """On an on-chain market: it will place its own orders halfway between the homes'
        and the auction's closing time (so the homes' orders are on chain, and its own can
        still be)."""
        if world.onchain:
            assert world.params is not None
            closes = closes_at(world.params, interval)
            self.own_due[interval] = world.now() + max(0, closes - world.now()) // 2

    def place_own(self, world: World, interval: Interval) -> None:
        """Its bid for the surplus (at its feed-in price) and offer for the shortfall (at its
        retail price) the auction's orders on its node's head show."""
        view = world.look(self.node).view
        auction = view.get(AUCTIONS, auction_key(interval, world.area))
        orders = auction_orders(view, auction) if auction is not None else []
        offered = sum(o.wh for o in orders if o.side == Side.OFFER)
        bid = sum(o.wh for o in orders if o.side == Side.BID)
        if offered:
            world.place_order(self, Side.BID, interval, offered, gnc(world.s.dso.buy_price), self)
        if bid:
            world.place_order(self, Side.OFFER, interval, bid, gnc(world.s.dso.sell_price), self)
        self.auctions.add(interval)

    def read_auctions(self, world: World) -> None:
        """Once the chain cleared an auction it placed orders in: its book, its result, and a
        deal per trade (the contracts are open on chain already)."""
        view = world.look(self.node).view
        for interval in sorted(self.auctions):
            auction = view.get(AUCTIONS, auction_key(interval, world.area))
            if auction is None or not auction.cleared:
                continue
            self.auctions.discard(interval)
            traded: dict[bytes, int] = defaultdict(int)
            for t in auction.trades:
                traded[t.bid_id] += t.wh
                traded[t.offer_id] += t.wh
            orders = auction_orders(view, auction)
            book = [(as_order(o, world.area, interval), traded[o.id]) for o in orders]
            self.books[interval] = book
            self.clearing.append(
                {
                    "interval": interval,
                    "price": auction.price if auction.trades else None,
                    "traded_wh": auction.traded_wh,
                    "bids": sum(1 for o in orders if o.side == Side.BID),
                    "offers": sum(1 for o in orders if o.side == Side.OFFER),
                    "bid_wh": sum(o.wh for o in orders if o.side == Side.BID),
                    "offer_wh": sum(o.wh for o in orders if o.side == Side.OFFER),
                }
            )
            world.tally.orders_left_out += auction.left_out
            for trade, cid in zip(auction.trades, auction.contracts, strict=True):
                record = view.get(CONTRACTS, cid)
                assert record is not None, "a cleared auction's contracts are on chain"
                buyer, seller = world.by_address[trade.buyer], world.by_address[trade.seller]
                world.deals[interval].append(Deal(record.terms, trade, buyer, seller))

    def admissible(self, world: World, orders: list[VerifiedOrder]) -> list[VerifiedOrder]:
        """The security layer: orders of meters vulnerable on its node's head are left out."""
        assert world.params is not None
        view = world.look(self.node).view
        kept = [v for v in orders if vulnerable_meter(view, world.params, v.order.meter) is None]
        world.tally.orders_left_out += len(orders) - len(kept)
        return kept

    def eligibility(
        self, world: World, orders: list[VerifiedOrder]
    ) -> Callable[[Order], Callable[[Order], bool]]:
        """Each buyer's policy judges the selling meters by what the chain says of them."""
        view = world.look(self.node).view
        standings = {}
        for v in orders:
            record = view.get(METERS, v.order.meter) if v.order.side == Side.OFFER else None
            if record is not None:
                standings[v.order.meter] = MeterStanding(
                    manufacturer=record.manufacturer,
                    flagged_by=flagged_by(view, FlagTarget.METER, v.order.meter),
                    revoked=record.revoked,
                )
        filters: dict[Address, Callable[[Order], bool]] = {}
        for agent in world.agents:
            policy = getattr(agent, "policy", None)
            if isinstance(policy, Policy):
                filters[agent.address] = policy.offer_filter(standings)
        own = Policy().offer_filter(standings)  # the DSO trusts no flagger
        return lambda bid: filters.get(bid.owner, own)

    def contract(
        self, world: World, interval: Interval, n: int, t: Trade, bid: VerifiedOrder
    ) -> tuple[Agent, OpenContract] | None:
        """The contract of trade ``t``, agreed by its parties: its buyer opens it (what to
        submit), or None when a party refused the terms."""
        buyer, seller = world.by_address[t.buyer], world.by_address[t.seller]
        terms = ContractTerms(
            chain=world.backend.chain_id,
            buyer=buyer.address,
            seller=seller.address,
            buyer_meter=bid.order.meter,
            seller_meter=t.seller_meter,
            line_fees=line_fees(world, buyer, seller),
            price=t.price,
            first_interval=interval,
            last_interval=interval,
            max_wh=t.wh,
            dispute_window=world.s.chain.dispute_window_blocks,
            nonce=n,
        )
        signed = world.agree(terms)
        if signed is None:
            return None
        world.deals[interval].append(Deal(terms, t, buyer, seller))
        return buyer, OpenContract(signed)

    # --- the grid ------------------------------------------------------------------------

    def measure(self, world: World, interval: Interval) -> None:
        """With meters as devices: before the homes' meters measure ``interval``, it opens the
        relays its commands act through for the intervals they cover and closes them after,
        each with a relay command it signs."""
        for (name, relay), spans in list(self.relay_spans.items()):
            wanted = any(first <= interval <= last for first, last in spans)
            if wanted == ((name, relay) in self.relays_open):
                continue
            home = world.by_name[name]
            device = getattr(home, "device_meter", None)
            assert home.meter is not None and device is not None
            self.relay_nonce += 1
            action = "command in force" if wanted else "command over"
            device.command(
                relay_command(self.key, home.meter.meter_id, relay, wanted, self.relay_nonce, action)
            )
            if wanted:
                self.relays_open.add((name, relay))
            else:
                self.relays_open.discard((name, relay))
                self.relay_spans[(name, relay)] = [s for s in spans if s[1] >= interval]

    def balance(self, world: World, interval: Interval) -> None:
        """Its substation meter reads the power flow through the area's transformers (export
        into the area when the grid supplied it, import when the area fed the grid). What its
        meter exported beyond its contracts' deliveries is the homes' shortfall it supplied
        (in proportion to each home's, rounded down); a home's import that neither a contract
        nor the DSO supplied came from neighbours' export no contract sold (``World.from_area``).
        Then it reads the power flow."""
        assert self.meter is not None
        through = world.transformer_wh(interval)
        world.publish(self.meter.read(interval, max(0, through), max(0, -through)))
        due = dues(world, interval)
        deals = world.deals.get(interval, [])
        exported, _ = world.metered(self, interval)
        left = max(0, exported - sum(due[d.cid] for d in deals if d.seller is self))
        received: dict[Address, int] = defaultdict(int, world.received_otherwise.get(interval, {}))
        for d in deals:
            received[d.buyer.address] += due[d.cid]
        lacking = {
            agent.address: max(0, world.metered(agent, interval)[1] - received[agent.address])
            for agent in world.agents
            if agent.feeder is not None and agent is not self
        }
        total = sum(lacking.values())
        for address, wh in lacking.items():
            supplied = wh if total <= left else wh * left // total
            self.shortfall_wh += supplied
            if wh > supplied:  # (no shortfall of the DSO's: the home acknowledges none of it)
                self.from_area_wh += wh - supplied
                world.from_area[interval][address] = wh - supplied
                otherwise = world.received_otherwise[interval]
                otherwise[address] = otherwise.get(address, 0) + wh - supplied
        self.watch_grid(world, interval)

    def watch_grid(self, world: World, interval: Interval) -> None:
        flow = world.flows.get(interval)
        grid = world.grid
        if flow is None or grid is None or not flow.congested:
            return
        s = world.s
        hold = s.dso.command_hold
        for f in range(len(grid.feeders)):
            downstream = grid.downstream(flow, f)
            if not downstream:
                continue
            homes = [world.by_name[n] for n in downstream]
            net = sum(world.metered(h, interval)[0] - world.metered(h, interval)[1] for h in homes)
            kind, limit = (
                (CommandKind.CURTAIL_EXPORT, s.dso.curtail_limit_w)
                if net > 0
                else (CommandKind.LIMIT_IMPORT, s.dso.import_limit_w)
            )
            meters = tuple(sorted(h.meter.meter_id for h in homes if h.meter is not None))
            command = DsoCommand(
                issuer=self.key.public_key,
                area=world.area,
                meters=meters,
                kind=int(kind),
                limit_w=limit,
                first_interval=interval + 1,
                last_interval=interval + hold,
                nonce=interval * 16 + f,
            )
            signed = sign_command(self.key, command, world.backend.chain_id)
            self.commands.append(command)
            relay = relay_for(command)
            for home in homes:
                if relay is not None and getattr(home, "device_meter", None) is not None:
                    span = (command.first_interval, command.last_interval)
                    self.relay_spans.setdefault((home.name, relay), []).append(span)
            for home in homes:
                world.send(self, CommandNote(signed), home)

    def acknowledge(self, world: World, interval: Interval) -> None:
        """As a buyer (of surplus): acknowledge what each seller's meter shows delivered. As a
        seller: dispute a state paying less than it delivered (within what its substation
        meter exported and each buyer's meter imported)."""
        due = dues(world, interval)
        for deal in world.deals.get(interval, []):
            if deal.seller is self and due[deal.cid]:
                dispute_if_short(world, self, deal, due[deal.cid])
            if deal.buyer is not self:
                continue
            wh = due[deal.cid]
            if wh:
                state = sign_state(ContractState(deal.cid, 1, (Delivery(interval, wh),)), self.key)
                world.send(self, StateNote(state), self if world.relaynet is not None else deal.seller)
            if wh < deal.trade.wh:
                close_when_done(world, self, deal.terms, settled_seq=1 if wh else 0)

    def day_end(self, world: World, intervals: list[Interval]) -> None:
        claim_receipts(world, self)  # the hub ends every connection it received on


def line_fees(world: World, *parties: Agent) -> tuple[LineFee, ...]:
    """Line owners between the parties: their feeders' owners (the DSO sits at the substation)."""
    owners = [a for a in world.agents if a.role == "line_owner"]
    feeders = sorted({p.feeder for p in parties if p.feeder is not None})
    return tuple(LineFee(owners[f].address, owners[f].quote()) for f in feeders)  # type: ignore[attr-defined]


def build(world: World) -> list[Agent]:
    return [Dso(world)]


ROLE = Role("dso", 45, build)
