"""On-chain auctions (seed 004's ETL): orders are transactions and the block that reaches an
auction's closing time clears it into contracts. Each rule broken, asserting its named
rejection; the clearing checked from the chain (contracts, locks returned, coin conserved)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.contracts.channel import ContractState, Delivery, contract_id, sign_state
from gridnet.crypto.keys import PrivateKey
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
    UnknownIdentity,
    VulnerableMeter,
    WrongArea,
)
from gridnet.ledger.chain import AddStatus
from gridnet.ledger.mempool import Mempool
from gridnet.ledger.params import MARKET_ON_CHAIN, block_reward
from gridnet.ledger.supply import account as supply_account
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.trial import TrialState
from gridnet.ledger.txs import auction as auction_module
from gridnet.ledger.txs.auction import (
    AUCTIONS,
    OPEN_AUCTIONS,
    OPEN_INTERVALS,
    OPEN_KEY,
    OpenInterval,
    PlaceOrder,
    auction_key,
    closes_at,
    open_page_key,
)
from gridnet.ledger.txs.contract import CONTRACTS, SettleContract
from gridnet.ledger.txs.firmware import PublishFirmware
from gridnet.ledger.txs.meter import RevokeMeter, SubmitReadings, registration
from gridnet.ledger.verify import verify_chain
from gridnet.market.orders import Side
from gridnet.meter.certificate import SignedCertificate, issue_certificate
from gridnet.meter.telemetry import SimulatedMeter
from gridnet.units import UNITS_PER_GNC, energy_cost, interval_of
from tests.helpers import GENESIS_TIME, next_block, register_identity, supply
from tests.ledger.test_contracts import (
    BUYER,
    BUYER_METER,
    LINE_A,
    LINE_B,
    MAKER,
    SELLER,
    SELLER_METER,
    Market,
    open_market,
)
from tests.ledger.test_security_layer import ADVISOR, FIX, advisory, sel_market, status
from tests.ledger.vectors import record_valid, snapshot

N5 = LINE_A  # a second seller (seed 004's n5)
N5_METER = SimulatedMeter(PrivateKey.from_label("n5-meter"))
DELIVERY = interval_of(GENESIS_TIME) + 4  # an hour after genesis
PER_MWH = UNITS_PER_GNC // 1000  # 1 GNC per MWh, in base units per kWh


def bid(wh: int = 576, price: int = 60 * PER_MWH, **kw: object) -> PlaceOrder:
    order = PlaceOrder(Side.BID, BUYER_METER.meter_id, "north", DELIVERY, wh, price)
    return msgspec.structs.replace(order, **kw)  # type: ignore[arg-type]


def offer(meter: bytes = SELLER_METER.meter_id, price: int = 45 * PER_MWH) -> PlaceOrder:
    return PlaceOrder(Side.OFFER, meter, "north", DELIVERY, 700, price)


def certified(meter: PrivateKey, serial: str) -> SignedCertificate:
    return issue_certificate(MAKER, meter.public_key, vendor="Acme", model="M", firmware="1", serial=serial)


def auction_market(path: Path) -> Market:
    """The security layer's market on an on-chain-auction chain, with a second seller (n5)."""
    m = sel_market(path, market_mode=MARKET_ON_CHAIN)
    m.mine(m.tx(N5, register_identity(m.chain, N5).payload))
    cert = issue_certificate(
        MAKER, N5_METER.key.public_key, vendor="Acme", model="M", firmware="1", serial="n5"
    )
    m.mine(m.tx(N5, registration(N5_METER.key, cert, "north", N5.address, m.chain.chain_id)))
    return m


@pytest.fixture
def market(tmp_path: Path) -> Market:
    return auction_market(tmp_path / "c")


def close_auction(m: Market, vector: tuple[str, str] | None = None) -> None:
    """Mine the block that reaches the auction's closing time (recorded as the consensus
    vector ``(name, description)`` when given)."""
    pre = snapshot(m.chain)
    block = next_block(m.chain, timestamp=closes_at(m.chain.params, DELIVERY))
    assert m.chain.add_block(block, now=block.header.timestamp).status is AddStatus.EXTENDED
    if vector is not None:
        record_valid(*vector, pre, block, block.header.timestamp, m.chain)


def now(m: Market) -> int:
    """A second after the head (the clock's now is months after these auctions closed)."""
    return m.chain.head.header.timestamp + 1_000


def refused(m: Market, key: PrivateKey, payload: PlaceOrder) -> Exception:
    """The rule a block one second after the head breaks with ``payload``."""
    return m.refused(key, payload, at=now(m))


def stateless(m: Market, payload: PlaceOrder) -> None:
    validate_transaction(m.pending(BUYER, payload), m.chain.params, m.chain.chain_id)


def test_an_off_chain_chain_takes_no_order_transactions(tmp_path: Path) -> None:
    with pytest.raises(MarketOffChain):
        stateless(open_market(tmp_path / "c"), bid())


def test_order_rules(market: Market) -> None:
    for bad in (bid(wh=0), bid(price=0), bid(side=2)):
        with pytest.raises(MalformedTransaction):
            stateless(market, bad)
    assert isinstance(refused(market, SELLER, bid()), MeterNotOwned)  # the buyer's meter
    assert isinstance(refused(market, BUYER, bid(area="south")), WrongArea)
    assert isinstance(
        refused(market, BUYER, bid(interval=interval_of(GENESIS_TIME) + 200)), AuctionTooFarAhead
    )
    assert isinstance(refused(market, BUYER, bid(wh=10**9)), InsufficientBalance)
    assert isinstance(refused(market, LINE_B, bid()), UnknownIdentity)  # funded, no identity
    market.mine(market.tx(ADVISOR, advisory()))
    assert isinstance(refused(market, SELLER, offer()), VulnerableMeter)


def test_a_revoked_meter_places_no_order(market: Market) -> None:
    """A meter its manufacturer revoked records no reading (``RevokedMeter``), so an order of
    it could clear into a contract that is never settled: its orders were taken all the same,
    and took their place in the auction from the honest ones. They are refused now."""
    market.mine(market.tx(MAKER, RevokeMeter(SELLER_METER.key.address)))
    assert isinstance(refused(market, SELLER, offer()), RevokedMeter)


def test_the_block_that_reaches_the_closing_time_clears_the_auction(market: Market) -> None:
    before, height = supply(market.chain), market.chain.height
    balance = market.chain.account(BUYER.address).balance
    orders = [
        market.tx(BUYER, bid()),
        market.tx(SELLER, offer()),
        market.tx(N5, offer(N5_METER.meter_id, price=50 * PER_MWH)),
    ]
    market.mine(*orders)
    fees = sum(t.fee for t in orders if t.sender == BUYER.public_key)
    locked = energy_cost(576, 60 * PER_MWH)
    assert market.chain.account(BUYER.address).balance == balance - fees - locked
    view = market.chain.view()
    assert view.get(AUCTIONS, auction_key(DELIVERY, "north")).orders == 3  # type: ignore[union-attr]
    close_auction(
        market,
        (
            "auction_cleared_into_a_contract",
            "on an on-chain-auction chain, the empty block that reaches the auction's closing time "
            "clears a bid and two offers: one contract at the uniform price, the bid's surplus lock returned",
        ),
    )
    view = market.chain.view()
    auction = view.get(AUCTIONS, auction_key(DELIVERY, "north"))
    assert auction is not None and auction.cleared and auction.traded_wh == 576 and auction.left_out == 0
    assert auction.price == (60 + 45) * PER_MWH // 2  # the uniform price: n3 (45) wins over n5 (50)
    assert (
        view.get(OPEN_INTERVALS, OPEN_KEY) is None
        and view.get(OPEN_AUCTIONS, open_page_key(DELIVERY, 0)) is None
    )
    (cid,) = auction.contracts
    record = view.get(CONTRACTS, cid)
    assert record is not None and record.terms.seller == SELLER.address and record.terms.max_wh == 576
    assert record.terms.line_fees == () and record.buyer_key == BUYER.public_key
    assert record.remaining == energy_cost(576, auction.price)
    # The bid's lock less the contract's deposit came back; no coin was made or lost.
    assert market.chain.account(BUYER.address).balance == balance - fees - record.remaining
    minted = sum(block_reward(market.chain.params, h) for h in (height + 1, height + 2))
    assert supply(market.chain) + record.remaining == before + minted
    # A mempool takes no order for it; a block that includes one anyway gives it no effect.
    late = market.tx(BUYER, bid(wh=10))
    vtx = validate_transaction(late, market.chain.params, market.chain.chain_id)
    with pytest.raises(AuctionClosed):
        TrialState(market.chain).check(
            Mempool(market.chain.params, market.chain.chain_id), vtx, now=now(market)
        )
    balance = market.chain.account(BUYER.address).balance
    market.mine(late)
    assert market.chain.account(BUYER.address).balance == balance - late.fee
    cleared = market.chain.view().get(AUCTIONS, auction_key(DELIVERY, "north"))
    assert cleared is not None and cleared.late == 1 and cleared.orders == 3 and cleared.contracts == (cid,)
    # The contract settles like any other, on the seller's meter reading.
    meter = SimulatedMeter(SELLER_METER.key)
    meter.total_exported_wh = 1_600  # (what open_market's readings counted)
    market.mine(market.tx(SELLER, SubmitReadings((meter.read(DELIVERY, 700, 0),))))
    paid = market.chain.account(SELLER.address).balance
    state = sign_state(ContractState(cid, 1, (Delivery(DELIVERY, 576),)), BUYER)
    market.mine(market.tx(BUYER, SettleContract(state)))
    assert market.chain.account(SELLER.address).balance - paid == energy_cost(576, auction.price)
    assert contract_id(record.terms) == cid


def test_an_order_after_the_clearing_is_late_in_a_block_stamped_before_the_close(
    market: Market, tmp_path: Path
) -> None:
    """A proof-of-work block need only be later than the median time of its last blocks: after
    the block stamped at the close cleared the auction, the next may be stamped before the
    close. An order it includes is late all the same, and a mempool refuses it. (It had been
    placed: its lock on the cleared auction's pages never came back, as no block clears an
    auction twice, and the audit of that valid chain failed with SupplyMismatch.)"""
    market.mine(market.tx(SELLER, offer()), market.tx(BUYER, bid()))
    close_auction(market)
    chain = market.chain
    earlier = closes_at(chain.params, DELIVERY) - 1_000
    assert chain.median_time_past(chain.head) < earlier  # (a valid time for the next block)
    late = market.tx(BUYER, bid(wh=500))
    vtx = validate_transaction(late, chain.params, chain.chain_id)
    with pytest.raises(AuctionClosed):
        TrialState(chain).check(Mempool(chain.params, chain.chain_id), vtx, now=earlier)
    balance = chain.account(BUYER.address).balance
    pre = snapshot(chain)
    block = next_block(chain, [late], timestamp=earlier)
    assert chain.add_block(block, now=earlier).status is AddStatus.EXTENDED
    record_valid(
        "auction_order_after_its_clearing_is_late",
        "on an on-chain-auction chain, after the block stamped at the auction's close cleared it, "
        "a block stamped a second before the close includes a bid for it: the bid is late (its fee "
        "paid, nothing locked or placed, the auction's late count one more)",
        pre,
        block,
        earlier,
        chain,
    )
    auction = chain.view().get(AUCTIONS, auction_key(DELIVERY, "north"))
    assert auction is not None and auction.cleared and auction.orders == 2 and auction.late == 1
    assert chain.view().get(OPEN_INTERVALS, OPEN_KEY) is None
    assert chain.account(BUYER.address).balance == balance - late.fee  # nothing locked
    assert supply_account(chain.params, chain.height, chain.values).unaccounted == 0
    report = verify_chain(tmp_path / "c")
    assert report.ok, report


def test_a_meter_found_vulnerable_before_the_auction_closes_is_left_out(market: Market) -> None:
    """Seed 004's variant: n3 cannot be updated, so the auction goes on without it and n5 wins."""
    market.mine(
        market.tx(BUYER, bid()),
        market.tx(SELLER, offer()),
        market.tx(N5, offer(N5_METER.meter_id, price=50 * PER_MWH)),
    )
    market.mine(market.tx(ADVISOR, advisory(("1",), id="A-1")))  # every meter of the product...
    # ...and the buyer and n5 install the fix; n3 does not.
    market.mine(market.tx(MAKER, PublishFirmware("Acme", "M", "2", FIX)))
    market.mine(market.tx(BUYER, status(BUYER_METER.key, 1)), market.tx(N5, status(N5_METER.key, 1)))
    seller_before = market.chain.account(SELLER.address).balance
    close_auction(market)
    auction = market.chain.view().get(AUCTIONS, auction_key(DELIVERY, "north"))
    assert auction is not None and auction.left_out == 1 and auction.price == (60 + 50) * PER_MWH // 2
    (cid,) = auction.contracts
    record = market.chain.view().get(CONTRACTS, cid)
    assert record is not None and record.terms.seller == N5.address
    assert market.chain.account(SELLER.address).balance == seller_before  # an offer locks nothing


def test_an_owners_own_bid_and_offer_make_no_contract(market: Market) -> None:
    second = SimulatedMeter(PrivateKey.from_label("buyer-second-meter"))
    cert = issue_certificate(
        MAKER, second.key.public_key, vendor="Acme", model="M", firmware="1", serial="b2"
    )
    market.mine(
        market.tx(BUYER, registration(second.key, cert, "north", BUYER.address, market.chain.chain_id))
    )
    balance = market.chain.account(BUYER.address).balance
    own = [
        market.tx(BUYER, bid(price=50 * PER_MWH)),
        market.tx(BUYER, offer(second.meter_id, price=40 * PER_MWH)),
    ]
    market.mine(*own)
    close_auction(market)
    auction = market.chain.view().get(AUCTIONS, auction_key(DELIVERY, "north"))
    assert auction is not None and auction.traded_wh == 0 and auction.trades == auction.contracts == ()
    assert auction.price == 0  # (nothing traded: its own orders set no price)
    assert market.chain.account(BUYER.address).balance == balance - sum(t.fee for t in own)  # lock returned


def test_a_sellers_own_bid_and_offer_set_no_price(market: Market) -> None:
    """The red team's wash: the buyer bids 576 Wh at 60, the seller offers at 45 (price 52);
    the seller's own 1 Wh bid and 1 Wh offer at 59 meet after them. They set no price: the
    buyer's contract is at 52 (it was at 59, 12 % more, for the seller's fees), and the
    seller's bid lock comes back whole."""
    balance = market.chain.account(SELLER.address).balance
    orders = [
        market.tx(BUYER, bid()),
        market.tx(SELLER, offer()),
        market.tx(SELLER, bid(wh=1, price=59 * PER_MWH, meter=SELLER_METER.meter_id)),
        market.tx(SELLER, msgspec.structs.replace(offer(price=59 * PER_MWH), wh=1)),
    ]
    market.mine(*orders)
    close_auction(market)
    auction = market.chain.view().get(AUCTIONS, auction_key(DELIVERY, "north"))
    assert auction is not None and auction.price == (60 + 45) * PER_MWH // 2 and auction.traded_wh == 576
    (cid,) = auction.contracts
    record = market.chain.view().get(CONTRACTS, cid)
    assert record is not None and record.terms.price == auction.price and record.terms.buyer == BUYER.address
    fees = sum(t.fee for t in orders if t.sender == SELLER.public_key)
    assert market.chain.account(SELLER.address).balance == balance - fees


def test_the_open_index_holds_intervals_and_an_intervals_areas_are_on_pages(
    market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The open index was one record of every open auction: offers lock no coin, so for about
    0.18 GNC of fees a stranger's meters in a thousand areas took it past the 4 MiB a state
    value may hold, and then every order opening an auction (an honest home's first bid in its
    own area) was StateOutOfRange; well before that, each such order rewrote megabytes (64 ms
    against 0.02; red team). Now the index holds an entry per delivery interval (about
    ORDER_WINDOW of them) and each interval's areas are on pages of PAGE_AUCTIONS."""
    monkeypatch.setattr(auction_module, "PAGE_AUCTIONS", 2)
    areas = ["west", "east", "south", "centre", "hill"]
    meters = [SimulatedMeter(PrivateKey.from_label(f"seller-meter-{a}")) for a in areas]
    market.mine(
        *(
            market.tx(
                SELLER, registration(m.key, certified(m.key, a), a, SELLER.address, market.chain.chain_id)
            )
            for m, a in zip(meters, areas, strict=True)
        )
    )
    offers = [offer(m.meter_id) for m in meters]
    market.mine(
        *(market.tx(SELLER, msgspec.structs.replace(o, area=a)) for o, a in zip(offers, areas, strict=True)),
        market.tx(SELLER, msgspec.structs.replace(offers[0], area="west", interval=DELIVERY + 1)),
        market.tx(BUYER, bid()),
    )
    view = market.chain.view()
    index = view.get(OPEN_INTERVALS, OPEN_KEY)
    assert index is not None and index.entries == (OpenInterval(DELIVERY, 6), OpenInterval(DELIVERY + 1, 1))
    pages = [view.get(OPEN_AUCTIONS, open_page_key(DELIVERY, n)) for n in range(4)]
    assert [p.areas if p else None for p in pages] == [
        ("west", "east"),
        ("south", "centre"),
        ("hill", "north"),
        None,
    ]
    close_auction(market)
    view = market.chain.view()
    for area in [*areas, "north"]:
        auction = view.get(AUCTIONS, auction_key(DELIVERY, area))
        assert auction is not None and auction.cleared, area
    assert all(view.get(OPEN_AUCTIONS, open_page_key(DELIVERY, n)) is None for n in range(3))
    index = view.get(OPEN_INTERVALS, OPEN_KEY)
    assert index is not None and index.entries == (OpenInterval(DELIVERY + 1, 1),)
    west = view.get(AUCTIONS, auction_key(DELIVERY + 1, "west"))
    assert west is not None and not west.cleared


def test_an_auction_holds_a_bounded_number_of_orders(market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auction_module, "MAX_AUCTION_ORDERS", 2)
    market.mine(market.tx(BUYER, bid()), market.tx(SELLER, offer()))
    assert isinstance(refused(market, N5, offer(N5_METER.meter_id)), AuctionFull)


def test_no_owner_fills_an_auction(market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auction_module, "MAX_ORDERS_PER_OWNER", 2)
    market.mine(market.tx(SELLER, offer()), market.tx(SELLER, offer(price=46 * PER_MWH)))
    assert isinstance(refused(market, SELLER, offer(price=47 * PER_MWH)), TooManyAuctionOrders)
    market.mine(market.tx(N5, offer(N5_METER.meter_id)))  # others still may
