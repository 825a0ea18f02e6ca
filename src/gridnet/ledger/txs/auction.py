"""On-chain auctions (seed 004's Energy Trading Layer), for chains whose genesis chooses
``[market] mode = "onchain"``.

PlaceOrder: a bid or an offer is a transaction. The sender owns the meter (registered in the
order's area), the meter is not vulnerable (the security layer), and the auction of the
delivery interval is open: it closes ``auction_close_ms`` before the interval starts. A bid
locks what its energy costs at its price. A mempool refuses an order for a closed auction
(``AuctionClosed``); one a block includes after the close (it waited in a mempool) has no
effect but its fee, and is counted as late: a transaction that could become invalid while it
waits would strand its sender's later transactions behind an unusable nonce. An auction that
cleared is closed whatever a later block's timestamp: a proof-of-work block need only be
later than the median of its last ancestors, so one may be stamped before the close after
its parent cleared the auction (an order it took would lock coin in a book no block clears).

The state transition clears: before its transactions, every block clears each auction whose
closing time its timestamp has reached (``clear_due_auctions``), in (interval, area) order.
The clearing is the off-chain market's double auction
(``market.matching.clear_double_auction``; trades at the uniform price, or each at its
offer's price when the genesis says ``[market] pricing = "pay_as_offered"``) over the
auction's orders, less those whose meter has become vulnerable since they were placed (left
out, a bid's coin returned). Every trade becomes an energy contract on chain
(``txs/contract.py``) at the trade's price: the buyer's
key verifies the states it signs, the deposit comes out of the bid's lock, and the rest of
the lock returns to the buyer. From there, settlement, disputes and closing are those of any
contract. Auction contracts carry no line fees: a line owner is no party to an auction.
The auction's orders and result stay in the state: anyone audits a clearing from it.
"""

from __future__ import annotations

from collections import defaultdict

from msgspec.structs import replace

from gridnet.contracts.channel import ContractTerms, contract_id, deposit
from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import hash32
from gridnet.encoding import U32, U63, AddressBytes, Area, HashBytes, PublicKeyBytes, Wire
from gridnet.errors import (
    AuctionClosed,
    AuctionFull,
    AuctionTooFarAhead,
    InsufficientBalance,
    MalformedTransaction,
    MarketOffChain,
    MeterNotOwned,
    RevokedMeter,
    TooManyAuctionOrders,
    WrongArea,
)
from gridnet.ledger.params import MARKET_ON_CHAIN, ChainParams
from gridnet.ledger.state import ACCOUNTS, StateView, register_table
from gridnet.ledger.txs.advisory import refuse_vulnerable, vulnerable_meter
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.contract import CONTRACTS, ContractRecord
from gridnet.ledger.txs.helios import refuse_over_cap
from gridnet.ledger.txs.identity import require_identity
from gridnet.ledger.txs.meter import METERS, MeterRecord
from gridnet.market.matching import Clearing, Trade, clear_double_auction
from gridnet.market.orders import Order, Side, VerifiedOrder
from gridnet.units import Address, Interval, energy_cost, interval_of, interval_start

MAX_AUCTION_ORDERS = 4096
"""Most orders one auction (area and delivery interval) holds."""
MAX_ORDERS_PER_OWNER = 16
"""Most orders one owner places in one auction (no one fills an auction to keep others out)."""
PAGE_ORDERS = 32
"""Orders per stored page of an auction (an order rewrites one page, not the auction)."""
ORDER_WINDOW = 96
"""Delivery intervals ahead of the block's an order may be for (a day of 15 minutes)."""
PAGE_AUCTIONS = 64
"""Open auctions (areas) per stored page of an interval's open auctions (an auction's first
order rewrites one page and the index of open intervals, whatever the number of areas)."""


class AuctionOrder(Wire, frozen=True):
    id: HashBytes
    """The PlaceOrder transaction's id."""
    side: U32
    owner: AddressBytes
    owner_key: PublicKeyBytes
    meter: AddressBytes
    wh: U63
    price: U63
    """A bid's maximum or an offer's minimum [base units / kWh]."""
    locked: U63
    """Coin the bid locked (0 for an offer) [base units]."""


class AuctionPage(Wire, frozen=True):
    orders: tuple[AuctionOrder, ...]


class Auction(Wire, frozen=True):
    """One area's auction of one delivery interval: open, then its result."""

    area: Area
    interval: U63
    orders: U32
    """Orders placed."""
    cleared: bool = False
    price: U63 = 0
    """The clearing price [base units / kWh] (0: nothing traded)."""
    traded_wh: U63 = 0
    left_out: U32 = 0
    """Orders left out at clearing: their meter had become vulnerable."""
    trades: tuple[Trade, ...] = ()
    """Its trades, in matching order (a bid matched with its owner's own offer is none)."""
    contracts: tuple[HashBytes, ...] = ()
    """The contract each trade became (same order as ``trades``)."""
    late: U32 = 0
    """Orders a block included after the auction closed (without effect: they paid a fee)."""


class AuctionRef(Wire, frozen=True):
    interval: U63
    area: Area


class OpenInterval(Wire, frozen=True):
    interval: U63
    auctions: U32
    """Auctions of the interval with orders (its open auctions' pages hold their areas)."""


class OpenIntervals(Wire, frozen=True):
    """Every delivery interval with an auction that has orders and is not cleared yet, in
    interval order. An order is for at most ``ORDER_WINDOW`` intervals after its block's and
    an auction clears at its close, so the index holds about as many entries as that window,
    however many areas trade: an auction's first order costs the same in any market."""

    entries: tuple[OpenInterval, ...]


class OpenAuctionPage(Wire, frozen=True):
    """The areas of an interval's open auctions, in the order they opened."""

    areas: tuple[Area, ...]


class OwnerOrders(Wire, frozen=True):
    count: U32


AUCTIONS = register_table("auctions", b"Q", Auction)
OWNER_ORDERS = register_table("auction_owner_orders", b"G", OwnerOrders)
AUCTION_PAGES = register_table("auction_pages", b"Y", AuctionPage)
OPEN_INTERVALS = register_table("open_intervals", b"Z", OpenIntervals)
OPEN_KEY = b"open"
OPEN_AUCTIONS = register_table("open_auctions", b"z", OpenAuctionPage)


def auction_key(interval: Interval, area: str) -> bytes:
    return interval.to_bytes(8, "big") + hash32(area.encode())


def page_key(interval: Interval, area: str, page: int) -> bytes:
    return auction_key(interval, area) + page.to_bytes(4, "big")


def open_page_key(interval: Interval, page: int) -> bytes:
    return interval.to_bytes(8, "big") + page.to_bytes(4, "big")


def closes_at(params: ChainParams, interval: Interval) -> int:
    """When the auction of ``interval`` closes [ms]."""
    return interval_start(interval) - params.auction_close_ms


class PlaceOrder(Wire, frozen=True, tag=24):
    side: U32
    """0 bid (buy), 1 offer (sell)."""
    meter: AddressBytes
    """The sender's meter: the buying meter of a bid, the selling meter of an offer."""
    area: Area
    interval: U63
    """Delivery interval."""
    wh: U63
    price: U63
    """A bid's maximum or an offer's minimum [base units / kWh]."""


def bid_lock(payload: PlaceOrder) -> int:
    return energy_cost(payload.wh, payload.price) if payload.side == Side.BID else 0


def validate_place_order(payload: PlaceOrder, params: ChainParams) -> None:
    if params.market_mode != MARKET_ON_CHAIN:
        raise MarketOffChain("this chain clears auctions off chain: post orders to a node's order book")
    if payload.side not in (Side.BID, Side.OFFER):
        raise MalformedTransaction(f"side {payload.side} is neither 0 (bid) nor 1 (offer)")
    if payload.wh == 0 or payload.price == 0:
        raise MalformedTransaction("an order trades some energy at a price above zero")


def is_auction_closed(auction: Auction | None, env: BlockEnv, interval: Interval) -> bool:
    """Whether the auction of ``interval`` takes no more orders in the block of ``env``:
    it cleared (for good, whatever the block's time: a proof-of-work block may be stamped
    before its parent), or the block's time reached its closing time."""
    if auction is not None and auction.cleared:
        return True
    return env.timestamp >= closes_at(env.params, interval)


def admit_place_order(state: StateView, env: BlockEnv, payload: PlaceOrder) -> None:
    """A mempool takes no order for an auction that has closed (a block that reaches the
    closing time after taking it includes it without effect)."""
    auction = state.get(AUCTIONS, auction_key(payload.interval, payload.area))
    if is_auction_closed(auction, env, payload.interval):
        raise AuctionClosed(f"the auction of interval {payload.interval} in {payload.area!r} has closed")


def require_trader(state: StateView, owner: Address, meter: Address, area: str) -> MeterRecord:
    """What an order's owner and meter must be, on chain (PlaceOrder) and off (a node's
    order book, ``node/orders.py``): the owner a registered identity, not revoked
    (``UnknownIdentity``, ``IdentityRevoked``), the meter registered to it
    (``MeterNotOwned``), not revoked by its manufacturer (``RevokedMeter``: it can record no
    reading, so no trade of it could be settled), in the order's area (``WrongArea``).
    Returns the meter's record."""
    require_identity(state, owner, "placing an order")
    record = state.get(METERS, meter)
    if record is None or record.owner != owner:
        raise MeterNotOwned(f"meter {address_to_text(meter)} is not registered to {address_to_text(owner)}")
    if record.revoked:
        raise RevokedMeter(f"meter {address_to_text(meter)} was revoked by its manufacturer")
    if record.area != area:
        raise WrongArea(f"meter {address_to_text(meter)} is in area {record.area!r}, not {area!r}")
    return record


def apply_place_order(state: StateView, env: BlockEnv, sender: Address, payload: PlaceOrder) -> None:
    params = env.params
    require_trader(state, sender, payload.meter, payload.area)
    key = auction_key(payload.interval, payload.area)
    auction = state.get(AUCTIONS, key) or Auction(payload.area, payload.interval, 0)
    if is_auction_closed(auction, env, payload.interval):  # late: included, no effect
        if auction.orders:
            state.put(AUCTIONS, key, replace(auction, late=auction.late + 1))
        return
    if payload.interval > interval_of(env.timestamp) + ORDER_WINDOW:
        raise AuctionTooFarAhead(
            f"interval {payload.interval} is more than {ORDER_WINDOW} intervals after the block's"
        )
    refuse_vulnerable(state, params, payload.meter, "placing an order")
    # (a trade is at most its order: the contract the clearing opens keeps to the island's cap,
    # as one opened by its parties must)
    refuse_over_cap(state, payload.meter, payload.wh, inject=payload.side == Side.OFFER, what="the order")
    if auction.orders >= MAX_AUCTION_ORDERS:
        raise AuctionFull(f"the auction of interval {payload.interval} in {payload.area!r} is full")
    owner_key = key + sender
    placed = state.get(OWNER_ORDERS, owner_key)
    if placed is not None and placed.count >= MAX_ORDERS_PER_OWNER:
        raise TooManyAuctionOrders(
            f"{address_to_text(sender)} already placed {MAX_ORDERS_PER_OWNER} orders in the auction of "
            f"interval {payload.interval} in {payload.area!r}"
        )
    locked = bid_lock(payload)
    acct = state.account(sender)
    if acct.balance < locked:
        raise InsufficientBalance(f"the bid locks {locked}; the balance is {acct.balance}")
    state.put(ACCOUNTS, sender, replace(acct, balance=acct.balance - locked))
    order = AuctionOrder(
        env.txid, payload.side, sender, env.sender_key, payload.meter, payload.wh, payload.price, locked
    )
    pkey = page_key(payload.interval, payload.area, auction.orders // PAGE_ORDERS)
    page = state.get(AUCTION_PAGES, pkey)
    state.put(AUCTION_PAGES, pkey, AuctionPage((*(page.orders if page else ()), order)))
    if auction.orders == 0:
        open_auction(state, payload.interval, payload.area)
    state.put(AUCTIONS, key, replace(auction, orders=auction.orders + 1))
    state.put(OWNER_ORDERS, owner_key, OwnerOrders(1 if placed is None else placed.count + 1))


def open_auction(state: StateView, interval: Interval, area: str) -> None:
    """Put the auction of ``interval`` in ``area`` (its first order) among the open ones: on
    the last page of its interval's open auctions, the interval's count one more."""
    index = state.get(OPEN_INTERVALS, OPEN_KEY)
    entries = list(index.entries if index else ())
    at = next((n for n, e in enumerate(entries) if e.interval >= interval), len(entries))
    if at == len(entries) or entries[at].interval != interval:
        entries.insert(at, OpenInterval(interval, 0))
    count = entries[at].auctions
    key = open_page_key(interval, count // PAGE_AUCTIONS)
    page = state.get(OPEN_AUCTIONS, key)
    state.put(OPEN_AUCTIONS, key, OpenAuctionPage((*(page.areas if page else ()), area)))
    entries[at] = OpenInterval(interval, count + 1)
    state.put(OPEN_INTERVALS, OPEN_KEY, OpenIntervals(tuple(entries)))


def as_order(o: AuctionOrder, area: str, interval: Interval) -> Order:
    """An auction order as the market's ``Order`` (what the double auction takes)."""
    return Order(Side(o.side), o.owner, o.owner_key, o.meter, area, interval, o.wh, o.price, interval, 0)


def auction_orders(state: StateView, auction: Auction) -> list[AuctionOrder]:
    """Every order of ``auction``, in the order they were placed."""
    out: list[AuctionOrder] = []
    for n in range((auction.orders + PAGE_ORDERS - 1) // PAGE_ORDERS):
        page = state.get(AUCTION_PAGES, page_key(auction.interval, auction.area, n))
        if page is not None:
            out.extend(page.orders)
    return out


def clear_due_auctions(state: StateView, env: BlockEnv) -> None:
    """Clear every open auction whose closing time the block's timestamp reached."""
    if env.params.market_mode != MARKET_ON_CHAIN:
        return
    index = state.get(OPEN_INTERVALS, OPEN_KEY)
    if index is None:
        return
    due = [e for e in index.entries if closes_at(env.params, e.interval) <= env.timestamp]
    if not due:
        return
    for entry in due:
        areas: list[str] = []
        for n in range((entry.auctions + PAGE_AUCTIONS - 1) // PAGE_AUCTIONS):
            key = open_page_key(entry.interval, n)
            page = state.get(OPEN_AUCTIONS, key)
            assert page is not None, "an open interval has its pages"
            areas.extend(page.areas)
            state.put(OPEN_AUCTIONS, key, None)
        for area in sorted(areas):
            clear_auction(state, env, AuctionRef(entry.interval, area))
    rest = index.entries[len(due) :]  # (sorted by interval: the due ones come first)
    state.put(OPEN_INTERVALS, OPEN_KEY, OpenIntervals(rest) if rest else None)


def clear_auction(state: StateView, env: BlockEnv, ref: AuctionRef) -> Clearing:
    """Clear one auction: leave out vulnerable meters' orders, run the double auction, open
    a contract per trade, return what each bid locked beyond its contracts' deposits."""
    params = env.params
    key = auction_key(ref.interval, ref.area)
    auction = state.get(AUCTIONS, key)
    assert auction is not None, "an open auction has its record"
    orders = auction_orders(state, auction)  # (its pages stay: the book is part of the record)
    kept = [o for o in orders if vulnerable_meter(state, params, o.meter) is None]
    by_id = {o.id: o for o in kept}
    verified = [VerifiedOrder(o.id, as_order(o, ref.area, ref.interval)) for o in kept]
    clearing = clear_double_auction(
        [v for v in verified if v.order.side == Side.BID],
        [v for v in verified if v.order.side == Side.OFFER],
        params.auction_pricing,
    )
    used: defaultdict[bytes, int] = defaultdict(int)
    cids = []
    for n, trade in enumerate(clearing.trades):  # (an owner's bid meeting its own offer is no trade)
        bid = by_id[trade.bid_id]
        terms = ContractTerms(
            chain=env.chain_id,
            buyer=trade.buyer,
            seller=trade.seller,
            buyer_meter=bid.meter,
            seller_meter=trade.seller_meter,
            line_fees=(),
            price=trade.price,
            first_interval=ref.interval,
            last_interval=ref.interval,
            max_wh=trade.wh,
            dispute_window=params.max_dispute_window,
            nonce=n,
        )
        while state.get(CONTRACTS, contract_id(terms)) is not None:  # (same terms agreed off chain)
            terms = replace(terms, nonce=terms.nonce + len(clearing.trades))
        cid = contract_id(terms)
        locked = deposit(terms)
        used[bid.id] += locked
        state.put(CONTRACTS, cid, ContractRecord(terms, bid.owner_key, locked, last_change_height=env.height))
        cids.append(cid)
    for o in orders:  # what each bid locked and its contracts do not hold goes back
        if o.locked > used[o.id]:
            state.credit(o.owner, o.locked - used[o.id])
    state.put(
        AUCTIONS,
        key,
        replace(
            auction,
            cleared=True,
            price=clearing.price or 0,
            traded_wh=clearing.traded_wh,
            left_out=len(orders) - len(kept),
            trades=clearing.trades,
            contracts=tuple(cids),
        ),
    )
    return clearing


PLACE_ORDER_RULES = TxRules(
    PlaceOrder, validate_place_order, apply_place_order, spends=bid_lock, admit=admit_place_order
)
