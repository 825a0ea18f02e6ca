"""Auction benchmark: the same orders cleared on chain (seed 004) and off chain (paper 001).

On chain (``[market] mode = "onchain"``), every order is a ``PlaceOrder`` transaction and the
first block whose timestamp reaches the auction's closing time clears it inside the state
transition, opening a contract per trade. The benchmark builds such a chain in a temporary
directory (easy proof-of-work, as in the tests): ``homes`` homes register their identities
and meters, place ``orders`` orders (bids and offers over a range of prices, from ``seed``)
in blocks before the close, and then the clearing block and an empty block at the same
height (timestamped just before the close) are each applied to the same state
(``apply_block``: header, transactions, clearing, state root), alternately, ``rounds``
times. The clearing's cost is the difference of the two least times (a busy machine only adds
time: with medians, noise on a small book could make the empty block the slower one).

Off chain, the hub clears the same orders (as ``VerifiedOrder``) with
``clear_double_auction``, one auction per area, timed in the same process; both clearings
must trade the same energy at the same price in every area. Each home is a buyer or a
seller for the interval (a surplus or not): an owner's bid matched with its own offer makes
no contract on chain, so the two clearings would not compare.

Chain bytes per trade: on chain, every ``PlaceOrder`` transaction over the contracts the
clearing opened (the contracts themselves cost no transaction); off chain, one
``OpenContract`` per trade of the hub's clearing, its terms signed by buyer, seller and two
line owners (as the simulator's hub agrees them), signed and checked (statelessly) for an
off-chain chain of the same parameters.

Rates are set against the raw Ed25519 verification rate measured in the same process, as in
the other benchmarks: machines are noisy, the ratios are what count.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from gridnet.bench.ledger import measure_raw_verify
from gridnet.contracts.channel import ContractTerms, LineFee, SignedTerms, sign_terms
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.identity import find_identity_proof
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import AddStatus, Chain
from gridnet.ledger.genesis import chain_id_of
from gridnet.ledger.miner import produce_block
from gridnet.ledger.params import MARKET_OFF_CHAIN, MARKET_ON_CHAIN, Allocation, ChainParams, default_params
from gridnet.ledger.registry import Payload
from gridnet.ledger.state import StateView
from gridnet.ledger.transactions import Transaction, min_fee, sign_transaction
from gridnet.ledger.transition import apply_block, validate_transaction
from gridnet.ledger.txs.auction import AUCTIONS, MAX_AUCTION_ORDERS, PlaceOrder, auction_key, closes_at
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.contract import OpenContract
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.meter import registration
from gridnet.market.matching import Clearing, clear_double_auction
from gridnet.market.orders import Order, Side, VerifiedOrder, compute_order_id
from gridnet.meter.certificate import issue_certificate, meter_id
from gridnet.security.roles import Role
from gridnet.sim.neighbourhood import CLEAR_AFTER_MS
from gridnet.units import INTERVAL_MS, UNITS_PER_GNC, energy_cost, interval_of
from gridnet.work import target_from_bits, target_to_bytes

Progress = Callable[[str], None]

PER_KWH = UNITS_PER_GNC // 100
"""0.01 GNC per kWh [base units / kWh]."""
BASE_PRICE = 15 * PER_KWH
"""Centre of the generated prices (0.15 GNC/kWh); bids sit a little above, offers below."""
PRICE_SPREAD = 8 * PER_KWH
SHIFT = 1 * PER_KWH
WH_RANGE = (100, 3_000)
LINE_FEES = (1 * PER_KWH, 3 * PER_KWH // 2)
"""The two line owners' fees (the simulator's default line owners: 0.01 and 0.015 GNC/kWh)."""
ORDERS_PER_BLOCK = 500
ORDERS_AHEAD_MS = INTERVAL_MS
"""The simulator's homes order an interval ahead of delivery (in either mode)."""
MAKER = PrivateKey.from_label("bench-auction-maker")
MINER = PrivateKey.from_label("bench-auction-miner")
LINE_OWNERS = (PrivateKey.from_label("bench-auction-line-a"), PrivateKey.from_label("bench-auction-line-b"))


@dataclass(frozen=True, slots=True)
class Home:
    key: PrivateKey
    meter: PrivateKey
    area: str
    side: Side
    """A buyer (no surplus for the interval) or a seller."""


@dataclass(frozen=True, slots=True)
class BenchOrder:
    home: int
    wh: int
    price: int


def make_homes(n: int, areas: int) -> list[Home]:
    """Homes spread over the areas; in each area, buyers and sellers alternate."""
    return [
        Home(
            PrivateKey.from_label(f"bench-auction-home-{i}"),
            PrivateKey.from_label(f"bench-auction-meter-{i}"),
            f"area-{i % areas}",
            Side.OFFER if (i // areas) % 2 else Side.BID,
        )
        for i in range(n)
    ]


def make_orders(homes: list[Home], n: int, seed: int) -> list[BenchOrder]:
    """``n`` orders, home after home, of random energy and price (bids a little above offers
    on average, so that about half the energy trades)."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        h = k % len(homes)
        shift = SHIFT if homes[h].side == Side.BID else -SHIFT
        wh = rng.randint(*WH_RANGE)
        out.append(BenchOrder(h, wh, BASE_PRICE + shift + rng.randint(-PRICE_SPREAD, PRICE_SPREAD)))
    return out


def chain_params(homes: list[Home], orders: int, mode: int) -> ChainParams:
    """Default parameters with easy targets (4-bit blocks, 6-bit identities, as the tests),
    every home funded for its bids' locks and fees."""
    per_home = math.ceil(orders / len(homes))
    worst_lock = energy_cost(WH_RANGE[1], BASE_PRICE + SHIFT + PRICE_SPREAD)
    gnc = 10 + math.ceil(per_home * worst_lock / UNITS_PER_GNC) * 2
    keys = [h.key for h in homes] + [MAKER]
    base = default_params(tuple(Allocation(k.address, gnc * UNITS_PER_GNC) for k in keys))
    easy = target_to_bytes(target_from_bits(4))
    return msgspec.structs.replace(
        base,
        initial_target=easy,
        pow_limit=easy,
        identity_target=target_to_bytes(target_from_bits(6)),
        market_mode=mode,
    )


def sign(params: ChainParams, chain_id: bytes, key: PrivateKey, payload: Payload, nonce: int) -> Transaction:
    fee = min_fee(params.min_fee_per_byte, payload, nonce)
    return sign_transaction(key, chain_id, payload, nonce, fee)


def mined(chain: Chain, txs: list[Transaction], timestamp: int) -> Block:
    """The next block on ``chain``'s head with every one of ``txs`` (not added)."""
    vtxs = [validate_transaction(t, chain.params, chain.chain_id) for t in txs]
    block, template = produce_block(chain, MINER.address, vtxs, now=timestamp, timestamp=timestamp)
    if template.rejected:
        vtx, exc = template.rejected[0]
        raise RuntimeError(f"the benchmark's {type(vtx.tx.payload).__name__} was rejected: {exc!r}")
    return block


def extend(chain: Chain, txs: list[Transaction]) -> int:
    """Mine and add the next block (a block interval after the head); returns its height."""
    ts = chain.head.header.timestamp + chain.params.block_interval_ms
    result = chain.add_block(mined(chain, txs, ts), now=ts)
    if result.status is not AddStatus.EXTENDED:
        raise RuntimeError(f"the benchmark's block did not extend the chain: {result.status}")
    return chain.height


def apply_seconds(chain: Chain, block: Block) -> float:
    """Time the state transition of ``block`` on ``chain``'s head (validate the header and
    the transactions, start the block — the clearing —, apply, compare the state root),
    then undo it: the chain is left as it was."""
    ctx = chain.header_context(chain.head, block.header.timestamp)
    size = len(encode(block))
    view = StateView(chain.values)
    start = time.perf_counter()
    result = apply_block(view, chain.commitment, block, ctx, encoded_size=size)
    elapsed = time.perf_counter() - start
    chain.commitment.revert(result.commit_undo)
    return elapsed


def open_contracts(
    params: ChainParams, homes: list[Home], clearings: dict[str, Clearing], delivery: int
) -> list[Transaction]:
    """The off-chain mode's transactions for the hub's trades: one OpenContract per trade,
    sent by the buyer, its terms signed by buyer, seller and both line owners."""
    chain_id = chain_id_of(params)
    by_address = {h.key.address: h for h in homes}
    nonces = {h.key.address: 2 for h in homes}  # (after its identity and its meter)
    fees = tuple(LineFee(k.address, fee) for k, fee in zip(LINE_OWNERS, LINE_FEES, strict=True))
    out = []
    for area in sorted(clearings):
        for n, trade in enumerate(clearings[area].trades):
            buyer, seller = by_address[trade.buyer], by_address[trade.seller]
            terms = ContractTerms(
                chain=chain_id,
                buyer=trade.buyer,
                seller=trade.seller,
                buyer_meter=meter_id(buyer.meter.public_key),
                seller_meter=trade.seller_meter,
                line_fees=fees,
                price=trade.price,
                first_interval=delivery,
                last_interval=delivery,
                max_wh=trade.wh,
                dispute_window=params.max_dispute_window,
                nonce=n,
            )
            signers = (buyer.key, seller.key, *LINE_OWNERS)
            signed = SignedTerms(terms, tuple(sign_terms(terms, k) for k in signers))
            tx = sign(params, chain_id, buyer.key, OpenContract(signed), nonces[trade.buyer])
            nonces[trade.buyer] += 1
            validate_transaction(tx, params, chain_id)  # every party's signature, the fee
            out.append(tx)
    return out


def check_sizes(*, homes: int, orders: int, areas: int) -> None:
    """``ValueError`` for sizes the benchmark cannot run with."""
    if areas < 1 or homes < 2 * areas:
        raise ValueError(f"{homes} homes cannot give each of {areas} area(s) a buyer and a seller")
    if orders < 2 or orders > areas * MAX_AUCTION_ORDERS:
        raise ValueError(
            f"{orders} orders in {areas} area(s): from 2 to {MAX_AUCTION_ORDERS} orders per area "
            "(an auction's most)"
        )


def run(
    *,
    homes: int = 200,
    orders: int = 2_000,
    areas: int = 4,
    seed: int = 1,
    rounds: int = 7,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Clear ``orders`` orders of ``homes`` homes in ``areas`` areas on chain and off chain."""
    say = progress or (lambda _msg: None)
    check_sizes(homes=homes, orders=orders, areas=areas)
    people = make_homes(homes, areas)
    book = make_orders(people, orders, seed)
    params = chain_params(people, orders, MARKET_ON_CHAIN)
    delivery = interval_of(params.genesis_time) + 4  # an hour after genesis
    close = closes_at(params, delivery)
    say("measuring raw Ed25519 verification")
    verify_before = measure_raw_verify()

    with tempfile.TemporaryDirectory(prefix="gridnet-bench-auction-") as tmp:
        chain = Chain.create(Path(tmp) / "chain", params)
        try:
            cid = chain.chain_id
            say(f"registering {homes} homes' identities and meters")
            target = params.identity_target_int
            setup = [
                sign(params, cid, MAKER, RegisterIdentity(find_identity_proof(MAKER.address, target)), 0),
                sign(params, cid, MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Bench Meters"), 1),
            ]
            for h in people:
                proof = find_identity_proof(h.key.address, target)
                setup.append(sign(params, cid, h.key, RegisterIdentity(proof), 0))
            extend(chain, setup)
            meters = []
            for n, h in enumerate(people):
                cert = issue_certificate(
                    MAKER, h.meter.public_key, vendor="Acme", model="M", firmware="1", serial=f"b{n}"
                )
                meters.append(
                    sign(params, cid, h.key, registration(h.meter, cert, h.area, h.key.address, cid), 1)
                )
            extend(chain, meters)

            say(f"placing {orders} orders")
            nonces = [2] * homes
            order_txs = []
            for o in book:
                h = people[o.home]
                payload = PlaceOrder(
                    int(h.side), meter_id(h.meter.public_key), h.area, delivery, o.wh, o.price
                )
                order_txs.append(sign(params, cid, h.key, payload, nonces[o.home]))
                nonces[o.home] += 1
            last_order_height = 0
            for i in range(0, orders, ORDERS_PER_BLOCK):
                last_order_height = extend(chain, order_txs[i : i + ORDERS_PER_BLOCK])
            if chain.head.header.timestamp >= close:
                raise RuntimeError("the orders' blocks reached the auction's closing time")

            say("timing the clearing block against an empty block at the same height")
            clearing_block = mined(chain, [], close)
            empty_block = mined(chain, [], close - 1)
            apply_seconds(chain, clearing_block)  # warm up both
            apply_seconds(chain, empty_block)
            clear_times, empty_times = [], []
            for _ in range(rounds):
                empty_times.append(apply_seconds(chain, empty_block))
                clear_times.append(apply_seconds(chain, clearing_block))
            clear_s = min(clear_times)
            empty_s = min(empty_times)
            clearing_s = clear_s - empty_s  # (checked once both clearings are shown to agree)
            start = time.perf_counter()
            chain.add_block(clearing_block, now=close)
            add_s = time.perf_counter() - start
            clearing_height = chain.height
            view = chain.view()
            auctions = {}
            for area in sorted({h.area for h in people}):
                auction = view.get(AUCTIONS, auction_key(delivery, area))
                if auction is None or not auction.cleared:
                    raise RuntimeError(f"the auction of {area} was not cleared by the clearing block")
                auctions[area] = auction
        finally:
            chain.close()

    say("clearing the same orders off chain")
    verified: dict[str, tuple[list[VerifiedOrder], list[VerifiedOrder]]] = {a: ([], []) for a in auctions}
    for k, o in enumerate(book):
        h = people[o.home]
        order = Order(
            h.side,
            h.key.address,
            h.key.public_key,
            meter_id(h.meter.public_key),
            h.area,
            delivery,
            o.wh,
            o.price,
            delivery,
            k,
        )
        verified[h.area][h.side].append(VerifiedOrder(compute_order_id(order), order))
    books = [verified[a] for a in sorted(verified)]
    offchain_times = []
    results: list[Clearing] = []
    for _ in range(rounds):
        start = time.perf_counter()
        results = [clear_double_auction(bids, offers) for bids, offers in books]
        offchain_times.append(time.perf_counter() - start)
    offchain_s = min(offchain_times)
    clearings = dict(zip(sorted(verified), results, strict=True))
    for area, auction in auctions.items():
        off = clearings[area]
        if (auction.traded_wh, auction.price) != (off.traded_wh, off.price or 0):
            raise RuntimeError(
                f"{area}: on chain {auction.traded_wh} Wh at {auction.price}, "
                f"off chain {off.traded_wh} Wh at {off.price}"
            )
    if clearing_s <= 0:
        raise RuntimeError("the clearing block took no longer than an empty one: too few orders")

    say("signing the off-chain mode's OpenContract transactions")
    offchain_params = msgspec.structs.replace(params, market_mode=MARKET_OFF_CHAIN)
    contracts = open_contracts(offchain_params, people, clearings, delivery)
    verify_after = measure_raw_verify()
    ed_rate = (verify_before + verify_after) / 2

    onchain_trades = sum(len(a.contracts) for a in auctions.values())
    offchain_trades = len(contracts)
    order_bytes = sum(len(encode(t)) for t in order_txs)
    contract_bytes = sum(len(encode(t)) for t in contracts)
    onchain_rate = orders / clearing_s
    offchain_rate = orders / offchain_s
    if not onchain_trades or not offchain_trades:
        raise RuntimeError("no order traded: use more orders")
    onchain_per_trade = order_bytes / onchain_trades
    offchain_per_trade = contract_bytes / offchain_trades
    block_ms = params.block_interval_ms
    close_ms = params.auction_close_ms
    return {
        "onchain_orders_per_s": round(onchain_rate, 1),
        "offchain_orders_per_s": round(offchain_rate, 1),
        "onchain_to_offchain_ratio": round(onchain_rate / offchain_rate, 4),
        "ed25519_verify_per_s": round(ed_rate, 1),
        "onchain_to_ed25519": round(onchain_rate / ed_rate, 3),
        "offchain_to_ed25519": round(offchain_rate / ed_rate, 3),
        "homes": homes,
        "orders": orders,
        "areas": areas,
        "seed": seed,
        "rounds": rounds,
        "traded_wh": sum(a.traded_wh for a in auctions.values()),
        "prices": {area: a.price for area, a in auctions.items()},
        "onchain_trades": onchain_trades,
        "offchain_trades": offchain_trades,
        # To 0.1 µs: a small book clears off chain in tens of µs (10 µs steps could read 0).
        "onchain_clearing_s": round(clearing_s, 7),
        "onchain_clearing_block_apply_s": round(clear_s, 7),
        "onchain_empty_block_apply_s": round(empty_s, 7),
        "onchain_clearing_block_add_s": round(add_s, 7),
        "offchain_clearing_s": round(offchain_s, 7),
        "onchain_order_tx_bytes": order_bytes,
        "onchain_bytes_per_trade": round(onchain_per_trade, 1),
        "offchain_open_contract_bytes": contract_bytes,
        "offchain_bytes_per_trade": round(offchain_per_trade, 1),
        "onchain_to_offchain_bytes_ratio": round(onchain_per_trade / offchain_per_trade, 3),
        "onchain_latency_blocks": clearing_height - last_order_height + 1,
        "offchain_latency_blocks": 1,
        "auction_close_ms": close_ms,
        "block_interval_ms": block_ms,
        "hub_clear_after_ms": CLEAR_AFTER_MS,
        "orders_ahead_ms": ORDERS_AHEAD_MS,
        "latency": {
            "onchain": (
                f"an order must be in a block before the auction closes, {close_ms} ms before "
                "delivery; the contract exists at the first block at or after the close (no "
                "transaction): at least 2 blocks from order to contract (the order's, the "
                f"clearing one); ordering {ORDERS_AHEAD_MS} ms ahead, "
                f"{ORDERS_AHEAD_MS - close_ms} ms plus up to one block ({block_ms} ms) "
                "from order to contract"
            ),
            "offchain": (
                f"the hub clears {CLEAR_AFTER_MS} ms after the orders go out; the contract "
                "exists once its OpenContract is mined: 1 block after the clearing, "
                f"{CLEAR_AFTER_MS} ms plus one block ({block_ms} ms) from order to contract, "
                f"{ORDERS_AHEAD_MS - CLEAR_AFTER_MS - block_ms} ms before delivery"
            ),
        },
    }
