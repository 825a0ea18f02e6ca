"""Aggregator-mediated trading (seed 003, sections 3.1.1-3.1.3): energy aggregators, a consortium,
grant buyers' requests from sellers' metered energy and record each trade on chain.

A consortium of aggregators is registered by a majority of its members (``RegisterAggregators``)
with its fee and its reward rule. A buyer signs a *request* (``TradeRequest``: its meter (MID),
the energy it requests (AER), the most it pays per kWh, the delivery interval and the time it
asks (TR)); its id is the TID. The aggregators match it with a seller's offer; after the
interval the seller signs the *grant* (DSS) of the energy granted (AEG) at the agreed price, one
member, the *processing* aggregator, signs the trade (DSP), and a majority of the members sign
the record (``RecordTrade``). The chain checks every signature, that the seller's meter reading
of the interval is on chain and shows AEG exported and not yet sold (by contracts or other
records: the seller's reading's ``sold_wh`` grows), and that the coin transferred (ET) is AEG at
the agreed price plus the aggregators' fee; the buyer pays ET, the seller receives the energy's
price and the consortium's treasury the fee. The record stays on chain with the time taken (TT:
the recording block's time less TR).

Every ``period_intervals`` intervals form a period; the consortium rewards, from its treasury,
its ``reward_top`` sellers that sold the most energy through it in a period
(``RewardContributors``, majority-signed): the chain checks the recipients against its tally
of the period's records, and closes the period to later records.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec.structs import replace

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.crypto.hashing import hash32, registered_id
from gridnet.crypto.keys import Domain, PrivateKey, SignatureCheck, verify_signature
from gridnet.encoding import (
    U32,
    U63,
    AddressBytes,
    HashBytes,
    PublicKeyBytes,
    SignatureBytes,
    Wire,
    encode,
)
from gridnet.errors import (
    AggregatorsExist,
    GrantExceedsAvailable,
    GrantExceedsRequest,
    GrantMismatch,
    InsufficientBalance,
    InsufficientConsortium,
    MalformedTransaction,
    NoConsortiumMajority,
    NotTopContributors,
    PeriodFull,
    PeriodNotOver,
    PeriodRewarded,
    ProcessingSignatureInvalid,
    RequestInFuture,
    RequestSignatureInvalid,
    SellerReadingMissing,
    SellerSignatureInvalid,
    TradeMeterNotOwned,
    TradeRecorded,
    TransferMismatch,
    TreasuryShort,
    UnknownAggregators,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import ACCOUNTS, StateView, register_table
from gridnet.ledger.txs.advisory import refuse_vulnerable
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.credit import record_sale
from gridnet.ledger.txs.helios import (
    MAX_MEMBERS,
    MemberSignature,
    check_consortium,
    check_consortium_shape,
    refuse_over_cap,
)
from gridnet.ledger.txs.identity import require_identity
from gridnet.ledger.txs.meter import METERS, READINGS, reading_key
from gridnet.units import Address, Hash32, Interval, PublicKey, energy_cost, interval_of, interval_start

MAX_FEE_BPS = 5_000
"""The aggregators' fee is at most half the energy's price."""
MAX_PERIOD_INTERVALS = 7 * 96
MAX_REWARD_TOP = 32
MAX_PERIOD_SELLERS = 1_024
"""Distinct sellers one period's tally holds (a neighbourhood's consortium)."""
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Aggregators(Wire, frozen=True):
    """A consortium of energy aggregators (the seed's supervisory nodes)."""

    name: Name
    members: tuple[PublicKeyBytes, ...]
    fee_bps: U32
    """The aggregators' fee [1/10,000 of the energy's price], paid by the buyer on top."""
    period_intervals: U32
    """A reward period [15-minute intervals]; periods are ``interval // period_intervals``."""
    reward_top: U32
    """How many of a period's top sellers a reward pays (0: the consortium pays none, and takes no
    fee: its treasury pays out only as rewards)."""
    treasury: U63 = 0
    """Fees collected and not paid out as rewards [base units]."""
    fees: U63 = 0
    """Fees ever collected [base units]."""
    rewarded: U63 = 0
    """Rewards ever paid [base units]."""
    records: U63 = 0
    traded_wh: U63 = 0
    """Energy granted over all its records [Wh]."""

    @property
    def majority(self) -> int:
        return len(self.members) // 2 + 1


class TradeRecord(Wire, frozen=True):
    """One trade as the chain keeps it: the seed's record fields."""

    consortium: HashBytes
    mid: AddressBytes
    """The buyer's meter (MID)."""
    buyer: AddressBytes
    seller: AddressBytes
    seller_meter: AddressBytes
    interval: U63
    """The delivery interval."""
    aer_wh: U63
    """Energy requested (AER) [Wh]."""
    aeg_wh: U63
    """Energy granted (AEG) [Wh]."""
    price: U63
    """The agreed price [base units/kWh]."""
    et: U63
    """Coin the buyer transferred (ET): the energy's price plus the fee [base units]."""
    fee: U63
    """Of which the aggregators' fee [base units]."""
    dss: SignatureBytes
    """The seller's signature of the grant (DSS)."""
    processor: PublicKeyBytes
    dsp: SignatureBytes
    """The processing aggregator's signature (DSP)."""
    tr_ms: U63
    """Time of request (TR) [ms]."""
    tt_ms: U63
    """Time taken (TT): the recording block's time less TR [ms]."""
    height: U63
    """The recording block."""


class SellerWh(Wire, frozen=True):
    seller: AddressBytes
    wh: U63


class PeriodTally(Wire, frozen=True):
    """Energy each seller sold through the consortium in one period, in the order they first sold."""

    sellers: tuple[SellerWh, ...] = ()
    rewarded: bool = False


AGGREGATORS = register_table("aggregators", b"g", Aggregators)
TRADE_RECORDS = register_table("aggregator_records", b"r", TradeRecord)
"""TID -> its record."""
PERIODS = register_table("aggregator_periods", b"p", PeriodTally)
"""Consortium id || period (8 bytes big-endian) -> its tally."""


def aggregators_id(registrant: PublicKey, name: str) -> Hash32:
    """The id of the consortium ``name`` registered by the key ``registrant`` (the sender of its
    ``RegisterAggregators``): each registrant names its own, so nobody takes a name from another."""
    return registered_id(b"aggregators/", registrant, name)


def period_key(consortium: bytes, period: int) -> bytes:
    return consortium + period.to_bytes(8, "big")


# --- what the parties sign --------------------------------------------------------------------


class TradeRequest(Wire, frozen=True):
    """A buyer's request for energy, to a consortium of aggregators."""

    consortium: HashBytes
    buyer_key: PublicKeyBytes
    """The buyer's key (its address is the buyer)."""
    mid: AddressBytes
    """The buyer's meter (MID)."""
    interval: U63
    """The delivery interval."""
    aer_wh: U63
    """Energy requested (AER) [Wh]."""
    max_price: U63
    """The most it pays for the energy [base units/kWh] (the fee comes on top)."""
    tr_ms: U63
    """Time of request (TR) [ms]; before the interval starts."""

    @property
    def buyer(self) -> Address:
        return address_from_public_key(self.buyer_key)


class Grant(Wire, frozen=True):
    """What a seller grants a request, once its meter has read the interval."""

    tid: HashBytes
    """The request's id."""
    seller_key: PublicKeyBytes
    seller_meter: AddressBytes
    aeg_wh: U63
    """Energy granted (AEG) [Wh]."""
    price: U63
    """The agreed price [base units/kWh]."""

    @property
    def seller(self) -> Address:
        return address_from_public_key(self.seller_key)


class Processing(Wire, frozen=True):
    """What the processing aggregator signs (DSP): the grant and the coin to transfer."""

    grant: Grant
    et: U63


def trade_id(request: TradeRequest) -> Hash32:
    """The TID: the digest of the request."""
    return hash32(encode(request))


def sign_request(key: PrivateKey, chain_id: Hash32, request: TradeRequest) -> bytes:
    return key.sign(Domain.AGGREGATOR_REQUEST, chain_id + encode(request))


def sign_grant(key: PrivateKey, chain_id: Hash32, grant: Grant) -> bytes:
    """The seller's DSS."""
    return key.sign(Domain.AGGREGATOR_GRANT, chain_id + encode(grant))


def sign_processing(key: PrivateKey, chain_id: Hash32, grant: Grant, et: int) -> bytes:
    """The processing aggregator's DSP."""
    return key.sign(Domain.AGGREGATOR_PROCESSING, chain_id + encode(Processing(grant, et)))


def trade_fee(cost: int, fee_bps: int) -> int:
    """The aggregators' fee on ``cost`` [base units], rounded down."""
    return cost * fee_bps // 10_000


def transfer_due(aeg_wh: int, price: int, fee_bps: int) -> tuple[int, int]:
    """(ET, fee) for ``aeg_wh`` at ``price`` under a fee of ``fee_bps`` [base units]."""
    cost = energy_cost(aeg_wh, price)
    fee = trade_fee(cost, fee_bps)
    return cost + fee, fee


# --- transactions -----------------------------------------------------------------------------


class RegisterAggregators(Wire, frozen=True, tag=38):
    name: Name
    members: tuple[PublicKeyBytes, ...]
    """Ordered by key, each once."""
    fee_bps: U32
    period_intervals: U32
    reward_top: U32
    signatures: tuple[MemberSignature, ...]
    """A majority of the members."""


class RecordTrade(Wire, frozen=True, tag=39):
    consortium: HashBytes
    request: TradeRequest
    request_signature: SignatureBytes
    """The buyer's, over the request."""
    grant: Grant
    dss: SignatureBytes
    """The seller's, over the grant (DSS)."""
    et: U63
    """Coin the buyer transfers (ET) [base units]."""
    processor: PublicKeyBytes
    dsp: SignatureBytes
    """The processing aggregator's, over the grant and ET (DSP)."""
    signatures: tuple[MemberSignature, ...]
    """A majority of the members, over the record (with no member signatures)."""


class RewardContributors(Wire, frozen=True, tag=40):
    consortium: HashBytes
    period: U63
    sellers: tuple[AddressBytes, ...]
    """The period's top sellers, most energy first (ties: lower address first)."""
    amount_each: U63
    """[base units], from the treasury."""
    signatures: tuple[MemberSignature, ...]


# --- reading the state ------------------------------------------------------------------------


def _consortium(state: StateView, cid: bytes) -> Aggregators:
    found = state.get(AGGREGATORS, cid)
    if found is None:
        raise UnknownAggregators(f"no consortium of aggregators {cid.hex()[:16]}")
    return found


def _check_majority(
    chain_id: Hash32,
    act: Wire,
    members: tuple[bytes, ...],
    signatures: tuple[MemberSignature, ...],
    what: str,
    *,
    registrant: PublicKey | None = None,
) -> None:
    """``check_consortium`` with a majority of ``members`` as the threshold."""
    try:
        check_consortium(
            chain_id, act, members, len(members) // 2 + 1, signatures, what, registrant=registrant
        )
    except InsufficientConsortium as e:
        raise NoConsortiumMajority(f"{e} (a majority of {len(members)})") from e


def _require_meter(state: StateView, meter: bytes, owner: Address, whose: str) -> None:
    record = state.get(METERS, meter)
    if record is None or record.revoked or record.owner != owner:
        raise TradeMeterNotOwned(
            f"the {whose}'s meter {address_to_text(meter)} is not registered to {address_to_text(owner)}"
        )


def top_contributors(tally: PeriodTally, k: int) -> tuple[Address, ...]:
    """The ``k`` sellers that sold the most in the period, most first (ties: lower address)."""
    ranked = sorted(tally.sellers, key=lambda s: (-s.wh, s.seller))
    return tuple(s.seller for s in ranked[:k] if s.wh > 0)


# --- rules ------------------------------------------------------------------------------------


def validate_register(payload: RegisterAggregators, params: ChainParams) -> None:
    check_consortium_shape(payload.members, len(payload.members) // 2 + 1, payload.signatures)
    if payload.fee_bps > MAX_FEE_BPS:
        raise MalformedTransaction(f"fee_bps {payload.fee_bps} exceeds {MAX_FEE_BPS}")
    if not 1 <= payload.period_intervals <= MAX_PERIOD_INTERVALS or payload.reward_top > MAX_REWARD_TOP:
        raise MalformedTransaction(
            f"period_intervals must be 1 to {MAX_PERIOD_INTERVALS} and reward_top at most {MAX_REWARD_TOP}"
        )
    if payload.reward_top == 0 and payload.fee_bps > 0:  # (the treasury pays out only as rewards)
        raise MalformedTransaction(
            f"fee_bps {payload.fee_bps} with reward_top 0: the fees would stay in a treasury that rewards "
            "nobody; take no fee, or reward at least one seller"
        )


def apply_register(state: StateView, env: BlockEnv, sender: Address, payload: RegisterAggregators) -> None:
    cid = aggregators_id(env.sender_key, payload.name)
    if state.get(AGGREGATORS, cid) is not None:
        raise AggregatorsExist(
            f"{address_to_text(sender)} has registered a consortium of aggregators named {payload.name!r} "
            "already"
        )
    act = replace(payload, signatures=())
    _check_majority(
        env.chain_id, act, payload.members, payload.signatures, "registering the aggregators",
        registrant=env.sender_key,
    )  # fmt: skip
    consortium = Aggregators(
        payload.name, payload.members, payload.fee_bps, payload.period_intervals, payload.reward_top
    )
    state.put(AGGREGATORS, cid, consortium)


def validate_record(payload: RecordTrade, params: ChainParams) -> None:
    request, grant = payload.request, payload.grant
    if request.consortium != payload.consortium or grant.tid != trade_id(request):
        raise GrantMismatch("the grant answers another request, or the request is to another consortium")
    if grant.seller == request.buyer or grant.seller_meter == request.mid:
        raise GrantMismatch("the seller is the buyer")
    if request.aer_wh < 1 or grant.aeg_wh < 1:
        raise MalformedTransaction("a request and a grant are for at least 1 Wh")
    if request.tr_ms >= interval_start(request.interval):
        raise MalformedTransaction(f"the request (TR {request.tr_ms}) is made after its interval started")
    if grant.aeg_wh > request.aer_wh:
        raise GrantExceedsRequest(f"AEG {grant.aeg_wh} Wh exceeds AER {request.aer_wh} Wh")
    if grant.price > request.max_price:
        raise GrantExceedsRequest(f"the price {grant.price} exceeds the buyer's maximum {request.max_price}")
    if len(payload.signatures) > MAX_MEMBERS:
        raise MalformedTransaction(f"at most {MAX_MEMBERS} signatures")


def apply_record(state: StateView, env: BlockEnv, sender: Address, payload: RecordTrade) -> None:
    request, grant = payload.request, payload.grant
    cid, tid = payload.consortium, grant.tid
    consortium = _consortium(state, cid)
    act = replace(payload, signatures=())
    _check_majority(env.chain_id, act, consortium.members, payload.signatures, f"{consortium.name}'s record")
    # DSP: one member processed the trade.
    processing = env.chain_id + encode(Processing(grant, payload.et))
    if payload.processor not in consortium.members or not verify_signature(
        Domain.AGGREGATOR_PROCESSING, payload.processor, processing, payload.dsp
    ):
        raise ProcessingSignatureInvalid(f"the DSP is not a valid signature of a member of {consortium.name}")
    request_check, grant_check = record_checks(payload, env.chain_id)
    if not verify_signature(*request_check):
        raise RequestSignatureInvalid("the request is not signed by the buyer's key")
    if not verify_signature(*grant_check):
        raise SellerSignatureInvalid("the DSS is not the seller's signature of the grant")
    if state.get(TRADE_RECORDS, tid) is not None:
        raise TradeRecorded(f"TID {tid.hex()[:16]} is recorded already")
    if request.tr_ms > env.timestamp:
        raise RequestInFuture(f"TR {request.tr_ms} is after the block's time {env.timestamp}")
    buyer, seller = request.buyer, grant.seller
    require_identity(state, seller, "selling through aggregators")
    require_identity(state, buyer, "buying through aggregators")
    _require_meter(state, grant.seller_meter, seller, "seller")
    _require_meter(state, request.mid, buyer, "buyer")
    for meter in (grant.seller_meter, request.mid):
        refuse_vulnerable(state, env.params, meter, "an aggregator trade")
    refuse_over_cap(state, grant.seller_meter, grant.aeg_wh, inject=True, what="the grant")
    refuse_over_cap(state, request.mid, grant.aeg_wh, inject=False, what="the grant")
    period = request.interval // consortium.period_intervals
    tally = state.get(PERIODS, period_key(cid, period)) or PeriodTally()
    if tally.rewarded:
        raise PeriodRewarded(f"period {period} of {consortium.name} was rewarded: its records are closed")
    known = any(s.seller == seller for s in tally.sellers)
    if not known and len(tally.sellers) >= MAX_PERIOD_SELLERS:
        raise PeriodFull(f"period {period} of {consortium.name} has {MAX_PERIOD_SELLERS} sellers")
    key = reading_key(grant.seller_meter, request.interval)
    reading = state.get(READINGS, key)
    if reading is None:
        raise SellerReadingMissing(
            f"no reading of the seller's meter for interval {request.interval} is on chain"
        )
    available = reading.exported_wh - reading.sold_wh
    if grant.aeg_wh > available:
        raise GrantExceedsAvailable(
            f"interval {request.interval}: the seller's meter exported {reading.exported_wh} Wh, "
            f"{reading.sold_wh} Wh of it sold; AEG {grant.aeg_wh} Wh exceeds the {available} Wh left"
        )
    et, fee = transfer_due(grant.aeg_wh, grant.price, consortium.fee_bps)
    if payload.et != et:
        raise TransferMismatch(
            f"ET {payload.et} is not {grant.aeg_wh} Wh at {grant.price} per kWh plus the fee "
            f"({consortium.fee_bps} bps): {et}"
        )
    acct = state.account(buyer)
    if acct.balance < et:
        raise InsufficientBalance(f"ET {et} exceeds the buyer's balance {acct.balance}")
    # Every rule passed: the coin moves, the energy is sold, the record is kept.
    state.put(ACCOUNTS, buyer, replace(acct, balance=acct.balance - et))
    state.credit(seller, et - fee)
    record_sale(state, seller, grant.aeg_wh, et - fee)
    state.put(READINGS, key, replace(reading, sold_wh=reading.sold_wh + grant.aeg_wh))
    sellers = tuple(
        replace(s, wh=s.wh + grant.aeg_wh) if s.seller == seller else s for s in tally.sellers
    ) + (() if known else (SellerWh(seller, grant.aeg_wh),))
    state.put(PERIODS, period_key(cid, period), replace(tally, sellers=sellers))
    state.put(
        AGGREGATORS,
        cid,
        replace(
            consortium,
            treasury=consortium.treasury + fee,
            fees=consortium.fees + fee,
            records=consortium.records + 1,
            traded_wh=consortium.traded_wh + grant.aeg_wh,
        ),
    )
    record = TradeRecord(
        consortium=cid,
        mid=request.mid,
        buyer=buyer,
        seller=seller,
        seller_meter=grant.seller_meter,
        interval=request.interval,
        aer_wh=request.aer_wh,
        aeg_wh=grant.aeg_wh,
        price=grant.price,
        et=et,
        fee=fee,
        dss=payload.dss,
        processor=payload.processor,
        dsp=payload.dsp,
        tr_ms=request.tr_ms,
        tt_ms=env.timestamp - request.tr_ms,
        height=env.height,
    )
    state.put(TRADE_RECORDS, tid, record)


def validate_reward(payload: RewardContributors, params: ChainParams) -> None:
    if not 1 <= len(payload.sellers) <= MAX_REWARD_TOP or len(set(payload.sellers)) != len(payload.sellers):
        raise MalformedTransaction(f"a reward pays 1 to {MAX_REWARD_TOP} sellers, each once")
    if payload.amount_each < 1:
        raise MalformedTransaction("a reward of nothing")
    if len(payload.signatures) > MAX_MEMBERS:
        raise MalformedTransaction(f"at most {MAX_MEMBERS} signatures")


def apply_reward(state: StateView, env: BlockEnv, sender: Address, payload: RewardContributors) -> None:
    cid = payload.consortium
    consortium = _consortium(state, cid)
    act = replace(payload, signatures=())
    _check_majority(env.chain_id, act, consortium.members, payload.signatures, f"{consortium.name}'s reward")
    last: Interval = (payload.period + 1) * consortium.period_intervals - 1
    if interval_of(env.timestamp) <= last:
        raise PeriodNotOver(f"period {payload.period} runs to interval {last}")
    key = period_key(cid, payload.period)
    tally = state.get(PERIODS, key) or PeriodTally()
    if tally.rewarded:
        raise PeriodRewarded(f"period {payload.period} of {consortium.name} was rewarded already")
    top = top_contributors(tally, consortium.reward_top)
    if payload.sellers != top:
        raise NotTopContributors(
            f"period {payload.period}'s top {consortium.reward_top} sellers are "
            f"[{', '.join(address_to_text(a) for a in top)}], not those rewarded"
        )
    total = payload.amount_each * len(payload.sellers)
    if total > consortium.treasury:
        raise TreasuryShort(f"rewards of {total} exceed {consortium.name}'s treasury {consortium.treasury}")
    for seller in payload.sellers:
        state.credit(seller, payload.amount_each)
    state.put(PERIODS, key, replace(tally, rewarded=True))
    state.put(
        AGGREGATORS,
        cid,
        replace(consortium, treasury=consortium.treasury - total, rewarded=consortium.rewarded + total),
    )


REGISTER_RULES = TxRules(RegisterAggregators, validate_register, apply_register)


def record_checks(payload: RecordTrade, chain_id: bytes) -> list[SignatureCheck]:
    """The buyer's request and the seller's grant signatures (``TxRules.carried``): their
    keys are in the payload; the members' and the processor's are checked against state."""
    request, grant = payload.request, payload.grant
    return [
        (Domain.AGGREGATOR_REQUEST, request.buyer_key, chain_id + encode(request), payload.request_signature),
        (Domain.AGGREGATOR_GRANT, grant.seller_key, chain_id + encode(grant), payload.dss),
    ]


RECORD_RULES = TxRules(
    RecordTrade,
    validate_record,
    apply_record,
    carried=lambda p, chain_id, _sender: record_checks(p, chain_id),
)
REWARD_RULES = TxRules(RewardContributors, validate_reward, apply_reward)


def record_figures(view: StateView, tid: bytes) -> dict[str, Any] | None:
    """A trade record by its TID with the seed's field names (None when none is on chain)."""
    r = view.get(TRADE_RECORDS, tid)
    if r is None:
        return None
    return {
        "tid": tid.hex(),
        "mid": address_to_text(r.mid),
        "aer_wh": r.aer_wh,
        "aeg_wh": r.aeg_wh,
        "et": r.et,
        "dss": r.dss.hex(),
        "dsp": r.dsp.hex(),
        "tr_ms": r.tr_ms,
        "tt_ms": r.tt_ms,
        "buyer": address_to_text(r.buyer),
        "seller": address_to_text(r.seller),
        "seller_meter": address_to_text(r.seller_meter),
        "interval": r.interval,
        "price": r.price,
        "fee": r.fee,
        "processor": r.processor.hex(),
        "consortium": r.consortium.hex(),
        "height": r.height,
    }


def aggregator_figures(view: StateView, registrant: PublicKey, name: str) -> dict[str, Any] | None:
    """A consortium's members, fee, reward rule and books (None when ``registrant`` registered no
    consortium of that name)."""
    cid = aggregators_id(registrant, name)
    found = view.get(AGGREGATORS, cid)
    if found is None:
        return None
    return {
        "aggregators": found.name,
        "id": cid.hex(),
        "members": [k.hex() for k in found.members],
        "majority": found.majority,
        "fee_bps": found.fee_bps,
        "period_intervals": found.period_intervals,
        "reward_top": found.reward_top,
        "treasury": found.treasury,
        "fees": found.fees,
        "rewarded": found.rewarded,
        "records": found.records,
        "traded_wh": found.traded_wh,
    }
