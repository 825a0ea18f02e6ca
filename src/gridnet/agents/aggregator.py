"""Aggregator-mediated trading in the simulator (seed 003, section 3.1; ``ledger/txs/aggregator.py``):
a consortium of energy aggregators takes the requests and offers of a share of the homes, while
the others trade in the hub's double auction, and the report compares the two markets.

``[aggregators] enabled = true`` adds the consortium. Its *clients* are ``share`` of the homes,
spread evenly over them (every other home for 0.5), so that both markets hold homes with PV and
homes without. A client's device sends each bid as a signed request (AER, its price cap, TR)
and each offer to the aggregators instead of the hub. Ten minutes later, when the hub clears the
auction, the aggregators match the interval's requests with its offers: requests by price cap
(highest first), then by TR; each takes the cheapest offer it accepts that still has energy, at
the midpoint of the two prices, up to AER from that one seller (a request is one record with one
seller, so it may be granted less than it asked). After the interval the seller's device reads
its meter and signs the grant (DSS) of what it delivered of the energy allotted (AEG), the
processing aggregator (the members in turn) signs it (DSP), a majority signs the record, and the
consortium submits it once the seller's reading is on chain (the chain checks AEG against it):
TT is the time from the request to the block that records it. After every
``reward_every_intervals`` intervals (a period), once the period's records are on chain, a
majority rewards the ``reward_top`` clients that sold the most through it with ``reward_gnc``
each, from the fees it collected (less when the fees fall short).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from gridnet.agents.base import Agent
from gridnet.agents.roles import Role
from gridnet.contracts.channel import contract_id
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import decode_lenient
from gridnet.errors import ConfigError
from gridnet.ledger.params import Allocation
from gridnet.ledger.registry import Payload
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.aggregator import (
    AGGREGATORS,
    MAX_FEE_BPS,
    MAX_PERIOD_INTERVALS,
    MAX_REWARD_TOP,
    PERIODS,
    TRADE_RECORDS,
    Grant,
    Name,
    RecordTrade,
    RegisterAggregators,
    RewardContributors,
    TradeRecord,
    TradeRequest,
    aggregators_id,
    period_key,
    sign_grant,
    sign_processing,
    sign_request,
    top_contributors,
    trade_id,
    transfer_due,
)
from gridnet.ledger.txs.contract import CONTRACTS, OpenContract, SettleContract
from gridnet.ledger.txs.helios import MAX_MEMBERS, sign_as_member
from gridnet.ledger.txs.meter import READINGS, reading_key
from gridnet.market.orders import Side
from gridnet.sim.scenario import MAX_GNC, bounded, gnc, on_chain
from gridnet.units import UNITS_PER_GNC, Interval, PublicKey, Wh, energy_cost, interval_start

if TYPE_CHECKING:
    from gridnet.agents.home import Home
    from gridnet.agents.world import Look, World

DESK = "aggregators"
"""The consortium's participant name."""
GIVE_UP_MS = 3 * 3600 * 1000
"""How long after its interval a record waits for the seller's reading on chain."""


@dataclass(frozen=True)
class AggregatorsTable:
    enabled: bool = False
    name: str = on_chain("Aggregators", Name)
    """The consortium's name (its id on chain is its hash)."""
    members: int = bounded(3, 1, MAX_MEMBERS)
    """Aggregators in the consortium; a majority signs every act."""
    fee_bps: int = bounded(100, 0, MAX_FEE_BPS, "bps")
    """The aggregators' fee [1/10,000 of the energy's price], paid by the buyer."""
    share: float = bounded(0.5, 0, 1)
    """Share of the homes that trade through the aggregators (spread evenly over them)."""
    reward_top: int = bounded(2, 0, MAX_REWARD_TOP)
    """How many of a period's top sellers are rewarded (0: none, and then ``fee_bps`` 0)."""
    reward_every_intervals: int = bounded(16, 1, MAX_PERIOD_INTERVALS, "intervals")
    """A reward period [15-minute intervals]."""
    reward_gnc: float = bounded(0.01, 0, MAX_GNC, "GNC")
    """What each rewarded seller receives from the fees [GNC]."""


@dataclass
class Request:
    home: Home
    signed: TradeRequest
    signature: bytes

    @property
    def tid(self) -> bytes:
        return trade_id(self.signed)


@dataclass
class Offer:
    home: Home
    wh: Wh
    price: int
    """The seller's floor [base units/kWh]."""
    at_ms: int


@dataclass
class Allotment:
    """Energy the aggregators allotted a request from one seller's offer."""

    request: Request
    seller: Home
    wh: Wh
    price: int


class AggregatorDesk(Agent):
    role = "aggregators"

    def __init__(self, world: World, clients: list[Home]) -> None:
        super().__init__(DESK, world.key(DESK), world.node_for(2))
        self.t: AggregatorsTable = world.s.tables["aggregators"]
        keys = [world.key(f"{DESK}/member-{i}") for i in range(self.t.members)]
        self.members: list[PrivateKey] = sorted(keys, key=lambda k: k.public_key)
        self.majority = len(self.members) // 2 + 1
        self.cid = aggregators_id(self.key.public_key, self.t.name)
        self.clients: set[str] = {h.name for h in clients}
        self.requests: dict[Interval, list[Request]] = defaultdict(list)
        self.offers: dict[Interval, list[Offer]] = defaultdict(list)
        self.allotted: dict[Interval, list[Allotment]] = {}
        self.ordered_at: dict[Interval, int] = {}
        """When the homes sent their orders for each interval [ms]."""
        self.records: dict[bytes, Interval] = {}
        """TID -> interval of every record it signed."""
        self.selling: dict[tuple[str, Interval], list[bytes]] = defaultdict(list)
        """(Seller, interval) -> the TIDs of the records it signed that sell that seller's
        energy of that interval."""
        self.sent: set[bytes] = set()
        """Records submitted (their seller's reading came)."""
        self.failed: set[bytes] = set()
        """Records a node refused."""
        self.requested_wh = 0
        """Energy the clients' requests asked for (AER) [Wh]."""
        self.unmatched_wh = 0
        """Requested energy no offer covered [Wh]."""
        self.undelivered_wh = 0
        """Allotted energy the sellers' meters did not show delivered [Wh]."""
        self.refusals: Counter[str] = Counter()
        """Rule -> its transactions the nodes refused for it (``refused``: as the world counts
        them in ``transactions.refused_by``)."""
        self.rewards: list[dict[str, Any]] = []
        self.processed = 0

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(10))]

    def bootstrap(self, world: World) -> None:
        t = self.t
        members = tuple(k.public_key for k in self.members)
        act = RegisterAggregators(t.name, members, t.fee_bps, t.reward_every_intervals, t.reward_top, ())
        world.submit(self, self._signed(world, act, self.members, registrant=self.key.public_key))

    def _signed(
        self, world: World, act: Any, keys: Sequence[PrivateKey], registrant: PublicKey | None = None
    ) -> Any:
        """``act`` signed by a majority of ``keys`` (a registration: for ``registrant``)."""
        chain_id = world.backend.chain_id
        signed = keys[: self.majority]
        signatures = tuple(sign_as_member(k, chain_id, act, registrant=registrant) for k in signed)
        return msgspec.structs.replace(act, signatures=signatures)

    # --- the clients' orders ---------------------------------------------------------------

    def take(self, world: World, home: Home, side: Side, interval: Interval, wh: Wh, price: int) -> None:
        """A client's order: an offer, or a bid its device signs as a request (TR: now)."""
        assert home.meter is not None
        now = world.now()
        self.ordered_at.setdefault(interval, now)
        if side == Side.OFFER:
            self.offers[interval].append(Offer(home, wh, price, now))
            return
        self.requested_wh += wh
        request = TradeRequest(self.cid, home.key.public_key, home.meter.meter_id, interval, wh, price, now)
        signature = sign_request(home.key, world.backend.chain_id, request)
        self.requests[interval].append(Request(home, request, signature))

    def order(self, world: World, interval: Interval) -> None:
        self.ordered_at.setdefault(interval, world.now())  # (the direct market's orders go out now)

    def clear(self, world: World, interval: Interval) -> None:
        """Match the interval's requests with its offers (price, then time priority; one
        seller per request, at the midpoint of the two prices)."""
        requests = sorted(
            self.requests.pop(interval, []), key=lambda r: (-r.signed.max_price, r.signed.tr_ms, r.tid)
        )
        offers = sorted(self.offers.pop(interval, []), key=lambda o: (o.price, o.at_ms, o.home.name))
        left = [o.wh for o in offers]
        allotted: list[Allotment] = []
        for r in requests:
            for n, o in enumerate(offers):
                if left[n] and o.price <= r.signed.max_price and o.home is not r.home:
                    wh = min(r.signed.aer_wh, left[n])
                    left[n] -= wh
                    allotted.append(Allotment(r, o.home, wh, (r.signed.max_price + o.price) // 2))
                    break
            else:
                self.unmatched_wh += r.signed.aer_wh
                continue
            self.unmatched_wh += r.signed.aer_wh - allotted[-1].wh
        self.allotted[interval] = allotted

    # --- after delivery: grants, records, rewards ----------------------------------------------

    def measure(self, world: World, interval: Interval) -> None:
        """Once the meters have measured: each seller's device grants what its meter shows it
        delivered of what was allotted (in the order allotted), within what the buyer's meter
        shows it imported (a home is granted no energy it did not take), which its buyer then
        received (no shortfall of the DSO's); the record is signed and goes on chain after the
        reading."""
        used: dict[str, Wh] = defaultdict(int)
        taken: dict[str, Wh] = defaultdict(int)
        chain_id = world.backend.chain_id
        for a in self.allotted.pop(interval, []):
            exported, _ = world.metered(a.seller, interval)
            _, imported = world.metered(a.request.home, interval)
            aeg = min(a.wh, exported - used[a.seller.name], imported - taken[a.request.home.name])
            self.undelivered_wh += a.wh - max(0, aeg)
            if aeg < 1:
                continue
            used[a.seller.name] += aeg
            taken[a.request.home.name] += aeg
            received = world.received_otherwise[interval]
            received[a.request.home.address] = received.get(a.request.home.address, 0) + aeg
            assert a.seller.meter is not None
            grant = Grant(a.request.tid, a.seller.key.public_key, a.seller.meter.meter_id, aeg, a.price)
            et, _ = transfer_due(aeg, a.price, self.t.fee_bps)
            n = self.processed % len(self.members)
            self.processed += 1
            turn = self.members[n:] + self.members[:n]  # the processing aggregator first
            act = RecordTrade(
                self.cid,
                a.request.signed,
                a.request.signature,
                grant,
                sign_grant(a.seller.key, chain_id, grant),
                et,
                turn[0].public_key,
                sign_processing(turn[0], chain_id, grant, et),
                (),
            )
            self.submit_when_read(world, self._signed(world, act, turn), interval)
        if (interval + 1) % self.t.reward_every_intervals == 0:
            self.reward_when_recorded(world, interval // self.t.reward_every_intervals)

    def submit_when_read(self, world: World, record: RecordTrade, interval: Interval) -> None:
        tid = record.grant.tid
        self.records[tid] = interval
        self.selling[world.by_address[record.grant.seller].name, interval].append(tid)
        key = reading_key(record.grant.seller_meter, interval)

        def submit(_look: Look) -> None:
            self.sent.add(tid)
            world.submit(self, record)  # (a refusal, now or later, comes to ``refused``)

        def read(look: Look) -> bool:
            return look.view.get(READINGS, key) is not None

        world.when(self, read, submit, deadline=interval_start(interval) + GIVE_UP_MS)

    def reward_when_recorded(self, world: World, period: int) -> None:
        """Once the period's records are on chain (or given up), reward its top sellers."""
        every = self.t.reward_every_intervals
        tids = [tid for tid, i in self.records.items() if i // every == period]
        give_up = interval_start((period + 1) * every) + GIVE_UP_MS

        def recorded(look: Look) -> bool:
            return world.now() >= give_up or all(
                tid in self.failed or look.view.get(TRADE_RECORDS, tid) is not None for tid in tids
            )

        def reward(look: Look) -> None:
            consortium = look.view.get(AGGREGATORS, self.cid)
            tally = look.view.get(PERIODS, period_key(self.cid, period))
            if consortium is None or tally is None or self.t.reward_top == 0:
                return
            top = top_contributors(tally, consortium.reward_top)
            amount = min(gnc(self.t.reward_gnc), consortium.treasury // max(1, len(top)))
            if not top or amount < 1:
                return
            act = RewardContributors(self.cid, period, top, amount, ())
            # (kept in the report once the chain shows the period rewarded: a reward retried
            # after a nonce gap may yet be taken, and one refused comes to ``refused``)
            world.submit(self, self._signed(world, act, self.members))
            wh = {s.seller: s.wh for s in tally.sellers}
            self.rewards.append(
                {
                    "period": period,
                    "from_utc": datetime.fromtimestamp(interval_start(period * every) / 1000, UTC).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                    "to": [world.by_address[a].name for a in top],
                    "sold_wh": [wh[a] for a in top],
                    "amount_each_gnc": amount / UNITS_PER_GNC,
                }
            )

        world.when(self, recorded, reward)

    def refused(self, world: World, payload: Payload, rule: str) -> None:
        """A node refused one of its transactions (the world counts it too): a record refused is
        final (it never sells its seller's energy)."""
        self.refusals[rule] += 1
        if isinstance(payload, RecordTrade):
            self.failed.add(payload.grant.tid)

    def unsettled(
        self, world: World, view: StateView, home: Home, first: Interval, through: Interval
    ) -> Interval | None:
        """The first interval from ``first`` to ``through`` in which a trade may yet sell
        ``home``'s energy on the chain ``view`` shows (None: in none): one allotted from its
        offer and not granted yet, or one whose record is signed and neither in ``view`` nor
        refused, nor given up (its reading never came). What a record sells, the reading's
        ``sold_wh`` shows only once it is on chain."""
        now = world.now()
        for interval in range(first, through + 1):
            if any(a.seller is home for a in self.allotted.get(interval, ())):
                return interval
            for tid in self.selling.get((home.name, interval), ()):
                given_up = tid not in self.sent and now >= interval_start(interval) + GIVE_UP_MS
                if not (given_up or tid in self.failed or view.get(TRADE_RECORDS, tid) is not None):
                    return interval
        return None

    def granted_wh(self, view: StateView, home: Home, first: Interval, through: Interval) -> Wh:
        """What its records on the chain ``view`` shows granted from ``home``'s energy in
        intervals ``first`` to ``through`` (AEG) [Wh]."""
        return sum(
            r.aeg_wh
            for (seller, interval), tids in self.selling.items()
            if seller == home.name and first <= interval <= through
            for tid in tids
            if (r := view.get(TRADE_RECORDS, tid)) is not None
        )

    # --- the report ------------------------------------------------------------------------------

    def figures(self, world: World) -> dict[str, Any]:
        """Both markets over the run, read from the chain: the aggregators' records, and the
        contracts the hub's auction made between homes that trade directly."""
        chain = world.backend.chain()
        view = chain.view()
        from gridnet.agents.home import Home

        direct = {h.name for h in world.of(Home)} - self.clients
        deals = [
            d
            for i in range(world.first, world.last + 1)
            for d in world.deals.get(i, [])
            if d.buyer.name in direct and d.seller.name in direct
        ]
        direct_ids = {d.cid: d for d in deals}
        settled_at: dict[bytes, int] = {}
        chain_fees: dict[str, int] = defaultdict(int)
        signers: list[int] = []
        for height in range(1, chain.height + 1):
            block = chain.block_at(height)
            assert block is not None
            for tx in block.txs:
                p = tx.payload
                if isinstance(p, RecordTrade) and p.consortium == self.cid:
                    chain_fees["aggregated"] += tx.fee
                    signers.append(len({s.key for s in p.signatures}))
                elif isinstance(p, OpenContract) and contract_id(p.signed.terms) in direct_ids:
                    chain_fees["direct"] += tx.fee
                elif isinstance(p, SettleContract) and p.signed.state.contract in direct_ids:
                    chain_fees["direct"] += tx.fee
                    settled_at.setdefault(p.signed.state.contract, block.header.timestamp)
        records = [r for tid in self.records if (r := view.get(TRADE_RECORDS, tid)) is not None]
        agg_wh = sum(r.aeg_wh for r in records)
        agg_cost = sum(r.et - r.fee for r in records)
        agg_fees = sum(r.fee for r in records)
        direct_wh = direct_cost = direct_fees = 0
        latencies: list[float] = []
        for cid, deal in direct_ids.items():
            record = view.get(CONTRACTS, cid)
            if record is None or record.paid_wh == 0:
                continue
            direct_wh += record.paid_wh
            direct_cost += energy_cost(record.paid_wh, deal.terms.price)
            direct_fees += sum(energy_cost(record.paid_wh, f.fee) for f in deal.terms.line_fees)
            interval = deal.terms.first_interval
            if cid in settled_at and interval in self.ordered_at:
                latencies.append((settled_at[cid] - self.ordered_at[interval]) / 1000)
        consortium = view.get(AGGREGATORS, self.cid)
        rewarded = [
            r
            for r in self.rewards
            if (tally := view.get(PERIODS, period_key(self.cid, r["period"]))) is not None and tally.rewarded
        ]
        return {
            "enabled": True,
            "consortium": self.t.name,
            "registrant": self.key.public_key.hex(),
            "members": len(self.members),
            "majority": self.majority,
            "fee_bps": self.t.fee_bps,
            "clients": sorted(self.clients, key=lambda n: int(n.split("-")[-1])),
            "registered": consortium is not None,
            "records": len(records),
            "records_signed": len(self.records),
            "refused": sum(self.refusals.values()),
            "records_refused": len(self.failed),
            "fewest_member_signatures": min(signers, default=0),
            "majority_signed": bool(signers) and min(signers) >= self.majority,
            "aeg_within_aer": all(r.aeg_wh <= r.aer_wh for r in records),
            "requested_wh": self.requested_wh,
            "requested_wh_recorded": sum(r.aer_wh for r in records),
            "granted_wh": agg_wh,
            "unmatched_wh": self.unmatched_wh,
            "undelivered_wh": self.undelivered_wh,
            "treasury_gnc": 0.0 if consortium is None else consortium.treasury / UNITS_PER_GNC,
            "rewards": rewarded,
            "rewards_paid_gnc": round(sum(r["amount_each_gnc"] * len(r["to"]) for r in rewarded), 8),
            "comparison": {
                "aggregated": market(
                    len(records),
                    agg_wh,
                    agg_cost,
                    agg_fees,
                    chain_fees["aggregated"],
                    [r.tt_ms / 1000 for r in records],
                ),
                "direct": market(
                    len(direct_ids), direct_wh, direct_cost, direct_fees, chain_fees["direct"], latencies
                ),
                "fees_are": "aggregated: the aggregators' fee; direct: the line owners' fees on the "
                "contracts",
                "latency_is": "aggregated: TT, request to the block recording it; direct: order to the "
                "block that first settles the contract [simulated s]",
            },
        }


def market(
    trades: int, wh: int, cost: int, fees: int, chain_fees: int, latencies: list[float]
) -> dict[str, Any]:
    """One market's figures: energy [Wh], money [base units] and latencies [s] in."""
    kwh = wh / 1000
    return {
        "trades": trades,
        "energy_wh": wh,
        "paid_gnc": round(cost / UNITS_PER_GNC, 8),
        "mean_price_gnc_per_kwh": round(cost / UNITS_PER_GNC / kwh, 6) if wh else None,
        "fees_gnc": round(fees / UNITS_PER_GNC, 8),
        "fees_gnc_per_kwh": round(fees / UNITS_PER_GNC / kwh, 6) if wh else None,
        "chain_fees_gnc": round(chain_fees / UNITS_PER_GNC, 8),
        "latency_mean_s": round(statistics.fmean(latencies), 1) if latencies else None,
        "latency_median_s": round(statistics.median(latencies), 1) if latencies else None,
        "latency_max_s": round(max(latencies), 1) if latencies else None,
    }


def takes_order(world: World, home: Home, side: Side, interval: Interval, wh: Wh, price: int) -> bool:
    """Whether ``home`` trades through the aggregators: then its order goes to them (and not to
    the hub's auction)."""
    desk = world.by_name.get(DESK)
    if not isinstance(desk, AggregatorDesk) or home.name not in desk.clients:
        return False
    desk.take(world, home, side, interval, wh, price)
    return True


def trade_records(world: World) -> list[TradeRecord]:
    """Every trade the aggregators recorded on the chain (any consortium's)."""
    prefix = TRADE_RECORDS.prefix
    values = world.backend.chain().values
    return [decode_lenient(v, TradeRecord) for k, v in values.items() if k[: len(prefix)] == prefix]


def report(world: World, agents: Sequence[Agent]) -> dict[str, Any]:
    if not agents:
        return {"enabled": False}
    desk = agents[0]
    assert isinstance(desk, AggregatorDesk)
    return desk.figures(world)


def build(world: World) -> list[Agent]:
    from gridnet.agents.home import Home

    t: AggregatorsTable = world.s.tables["aggregators"]
    if not t.enabled:
        return []
    where = f"{world.s.source}: [aggregators]"
    if not 1 <= t.members <= MAX_MEMBERS:
        raise ConfigError(f"{where} members must be 1 to {MAX_MEMBERS}")
    if not 0 <= t.fee_bps <= MAX_FEE_BPS:
        raise ConfigError(f"{where} fee_bps must be 0 to {MAX_FEE_BPS}")
    if not 0 < t.share < 1:
        raise ConfigError(f"{where} share must be above 0 and below 1 (both markets need homes)")
    if not 1 <= t.reward_every_intervals <= MAX_PERIOD_INTERVALS or not 0 <= t.reward_top <= MAX_REWARD_TOP:
        raise ConfigError(
            f"{where} reward_every_intervals must be 1 to {MAX_PERIOD_INTERVALS} and reward_top "
            f"0 to {MAX_REWARD_TOP}"
        )
    if t.reward_gnc < 0:
        raise ConfigError(f"{where} reward_gnc must be at least 0")
    if t.reward_top == 0 and t.fee_bps > 0:  # (what the chain refuses is refused now, not mid-run)
        raise ConfigError(
            f"{where} fee_bps {t.fee_bps} with reward_top 0: the chain takes no fee for a treasury that "
            "rewards nobody; set fee_bps = 0, or reward_top to 1 or more"
        )
    homes = world.of(Home)
    clients = [h for i, h in enumerate(homes) if int((i + 1) * t.share) > int(i * t.share)]
    return [AggregatorDesk(world, clients)]


ROLE = Role("aggregators", 77, build, table=AggregatorsTable, report=report)
