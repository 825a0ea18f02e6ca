"""Vehicle-to-vehicle energy trading (seed 003, section 3.2; the review's PETCON): electric
vehicles at a charging hotspot sell each other energy, deals formed by the hotspot's local
aggregator, each deal's energy measured by the charging station.

A trusted authority (an identity with the ``vehicle_registry`` role) registers *vehicles*
(``RegisterVehicle``): the vehicle's key (its built-in meter's: the vehicle's id is that key's
address, the record's meter id), its owner's wallet (which pays and is paid), its battery and its
most charging power; the owner and the vehicle both sign the registration, so that nobody
registers a vehicle, or a wallet, without its holder. It registers *hotspots* too
(``RegisterHotspot``): a charging station's key, the local aggregators that run its auctions,
the operator paid its fee, and the contract terms every deal there carries: the station's fee
per kWh charged, a charging discount on that fee, a parking discount per kWh discharged paid to
the discharging vehicle from the fee, and the penalty for breaking a deal (a share of its
value). A hotspot trades only among its own authority's vehicles, and not once that authority's
identity is revoked.

Each period the aggregator auctions the charging vehicles' requests against the discharging
vehicles' offers (``gridnet.market.ev_auction``) and forms *deals*: a charging (buyer) vehicle,
a discharging (seller) vehicle, the energy, the price per kWh and the intervals the energy flows
in, with the hotspot's terms. Both vehicles sign the deal (their commitment) and one of the
hotspot's aggregators processes it (``OpenEvDeal``) before its first interval begins: the
buyer's owner deposits the deal's full cost (price, plus the fee less the charging discount)
and the seller's owner a penalty deposit (``penalty_pct`` of the deal's value, at least 1 base
unit). After the last interval the station signs the *delivery* (the charging vehicle's meter
id, the energy charged, and who broke the deal if it fell short) and one of the hotspot's
aggregators processes it (``SettleEvDeal``), within a day of the deal's end: the buyer pays
what was delivered, the discharging vehicle's wallet gets the price plus the parking discount,
the operator the rest of the fee. A seller that broke the deal forfeits its penalty deposit in
proportion to the shortfall, to the buyer; a buyer that broke it pays the seller the penalty on
the energy it left untaken. A deal nobody settles within a day of its end expires
(``ExpireEvDeal``) and both deposits return.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import msgspec
from msgspec.structs import replace

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.crypto.hashing import hash32, registered_id
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
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
    BeyondVehicle,
    DealClosed,
    DealExists,
    DealLapsed,
    DealNotOver,
    DealSignatureInvalid,
    DealStarted,
    DealTermsMismatch,
    DealTooFarAhead,
    DeliveryMismatch,
    EvProcessingInvalid,
    HotspotExists,
    InsufficientBalance,
    MalformedTransaction,
    NotAuthorized,
    OwnerConsentInvalid,
    StationSignatureInvalid,
    UnknownDeal,
    UnknownHotspot,
    UnknownVehicle,
    VehicleExists,
    VehicleSignatureInvalid,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import ACCOUNTS, StateView, register_table
from gridnet.ledger.txs.authority import AUTHORITIES
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.helios import MAX_MEMBERS
from gridnet.ledger.txs.identity import refuse_revoked, require_identity
from gridnet.ledger.txs.maintenance import penalty_of
from gridnet.security.roles import Role
from gridnet.units import Address, Hash32, PublicKey, Wh, energy_cost, interval_of

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MAX_BATTERY_WH = 1_000_000
MAX_POWER_W = 1_000_000
MAX_DEAL_INTERVALS = 96
"""A deal's energy flows over at most a day."""
EXPIRY_INTERVALS = 96
"""A deal not settled this many intervals after its last expires."""
DEAL_HORIZON_INTERVALS = 7 * 96
"""A deal opens at most a week before its first interval (as a tender's bidding runs at most a
week): its deposits and the vehicles' commitments are locked until it is settled or expires."""


class Breaker(enum.IntEnum):
    NONE = 0
    BUYER = 1
    """The charging vehicle left (or stopped charging) before taking all it agreed to."""
    SELLER = 2
    """The discharging vehicle left before giving all it agreed to."""


class DealStatus(enum.IntEnum):
    OPEN = 0
    SETTLED = 1
    EXPIRED = 2


class Vehicle(Wire, frozen=True):
    key: PublicKeyBytes
    """Its built-in meter's key: it signs the vehicle's deals (its id is the key's address)."""
    owner: AddressBytes
    """The wallet that pays for its charging and is paid for its discharging."""
    authority: AddressBytes
    """The trusted authority that registered it."""
    battery_wh: U63
    max_power_w: U63
    open_buy_wh: U63 = 0
    """Energy its open deals commit it to take [Wh]."""
    open_sell_wh: U63 = 0
    """Energy its open deals commit it to give [Wh]."""
    bought_wh: U63 = 0
    """Energy charged into it over its settled deals [Wh]."""
    sold_wh: U63 = 0
    """Energy it discharged to others over its settled deals [Wh] (the seed's "PoW for EVs")."""
    deals: U32 = 0
    """Settled deals it was a party to."""
    broken: U32 = 0
    """Of those, deals it broke."""


class Hotspot(Wire, frozen=True):
    """A charging station (or parking lot) and the terms of every deal made there."""

    name: Name
    authority: AddressBytes
    station_key: PublicKeyBytes
    """The charging station's key: it signs each deal's delivery."""
    aggregators: tuple[PublicKeyBytes, ...]
    """The local aggregators that run its auctions (one processes each deal)."""
    operator: AddressBytes
    """Paid the station's fee (less the discounts)."""
    fee: U63
    """The station's fee on energy charged [base units/kWh]."""
    charging_discount: U63
    """Taken off the fee the charging vehicle pays on a vehicle-to-vehicle deal [base units/kWh]."""
    parking_discount: U63
    """Paid from the fee to the discharging vehicle on what it discharged [base units/kWh]."""
    penalty_pct: U32
    """A deal's penalty: this percentage of the value of the energy a breaker left undelivered."""
    deals: U63 = 0
    """Deals settled."""
    traded_wh: U63 = 0
    fees: U63 = 0
    """What the operator earned [base units]."""
    penalties: U63 = 0
    """Penalties paid between vehicles [base units]."""


class DealTerms(Wire, frozen=True):
    """What both vehicles commit to (their signatures) and an aggregator processes."""

    hotspot: HashBytes
    buyer: AddressBytes
    """The charging vehicle (its meter id)."""
    seller: AddressBytes
    """The discharging vehicle."""
    energy_wh: U63
    price: U63
    """The auction's price [base units/kWh]."""
    fee: U63
    charging_discount: U63
    parking_discount: U63
    penalty_pct: U32
    first_interval: U63
    last_interval: U63
    """The energy flows in intervals first to last."""

    @property
    def buyer_rate(self) -> int:
        """What the charging vehicle's owner pays per kWh [base units]."""
        return self.price + self.fee - self.charging_discount

    @property
    def seller_rate(self) -> int:
        """What the discharging vehicle's owner gets per kWh [base units]."""
        return self.price + self.parking_discount


class Delivery(Wire, frozen=True):
    """What the charging station measured of a deal, signed by the station."""

    deal: HashBytes
    vehicle: AddressBytes
    """The charging vehicle's meter id."""
    delivered_wh: U63
    """Energy charged into it under the deal [Wh]."""
    broken_by: U32
    """Who broke the deal when it fell short (``Breaker``)."""


class DealRecord(Wire, frozen=True):
    """A deal as the chain keeps it: its terms and deposits, then its settlement."""

    terms: DealTerms
    processor: PublicKeyBytes
    buyer_deposit: U63
    seller_deposit: U63
    opened_height: U63
    status: U32 = int(DealStatus.OPEN)
    delivered_wh: U63 = 0
    broken_by: U32 = int(Breaker.NONE)
    paid: U63 = 0
    """What the buyer paid for the energy delivered [base units]."""
    penalty: U63 = 0
    """What the breaker paid the other party [base units]."""
    station_signature: SignatureBytes = b"\x00" * 64
    settle_processor: PublicKeyBytes = b"\x00" * 32
    settle_signature: SignatureBytes = b"\x00" * 64
    """The processing aggregator's signature of the delivery."""
    closed_height: U63 = 0


VEHICLES = register_table("vehicles", b"v", Vehicle)
"""Vehicle id (its meter key's address) -> the vehicle."""
HOTSPOTS = register_table("ev_hotspots", b"s", Hotspot)
EV_DEALS = register_table("ev_deals", b"d", DealRecord)
"""Deal id (the digest of its terms) -> the deal."""


def hotspot_id(registrant: PublicKey, name: str) -> Hash32:
    """The id of the hotspot ``name`` registered by the key ``registrant`` (the vehicle registry
    that sent its ``RegisterHotspot``): each registrant names its own, so nobody takes a name
    from another."""
    return registered_id(b"ev-hotspot/", registrant, name)


def deal_id(terms: DealTerms) -> Hash32:
    return hash32(encode(terms))


class VehicleConsent(Wire, frozen=True):
    """What a vehicle's owner signs: this vehicle pays and is paid through its wallet."""

    vehicle_key: PublicKeyBytes
    owner: AddressBytes
    authority: AddressBytes
    battery_wh: U63
    max_power_w: U63


class Processing(Wire, frozen=True):
    """What the processing aggregator signs: a deal, then (``delivery``) its settlement."""

    deal: HashBytes
    delivery: Delivery | None = None


def sign_consent(owner: PrivateKey, chain_id: Hash32, consent: VehicleConsent) -> bytes:
    return owner.sign(Domain.VEHICLE_CONSENT, chain_id + encode(consent))


def sign_deal(vehicle: PrivateKey, chain_id: Hash32, terms: DealTerms) -> bytes:
    """A vehicle's commitment to a deal."""
    return vehicle.sign(Domain.EV_DEAL, chain_id + encode(terms))


def sign_processing(aggregator: PrivateKey, chain_id: Hash32, processing: Processing) -> bytes:
    return aggregator.sign(Domain.EV_PROCESSING, chain_id + encode(processing))


def sign_delivery(station: PrivateKey, chain_id: Hash32, delivery: Delivery) -> bytes:
    return station.sign(Domain.EV_DELIVERY, chain_id + encode(delivery))


def deposits(terms: DealTerms) -> tuple[int, int]:
    """(buyer's, seller's) deposits of a deal [base units]: the full cost, and the penalty on
    the deal's value."""
    return energy_cost(terms.energy_wh, terms.buyer_rate), penalty_of(
        energy_cost(terms.energy_wh, terms.price), terms.penalty_pct
    )


def power_limit(max_power_w: int, intervals: int) -> Wh:
    """Energy a vehicle moves at ``max_power_w`` over ``intervals`` 15-minute intervals [Wh]."""
    return max_power_w * intervals // 4


class Settlement(Wire, frozen=True):
    """Who gets what when a deal settles [base units]."""

    paid: U63
    """The buyer's payment for the energy delivered."""
    seller_gets: U63
    """The seller's price and parking discount on it."""
    penalty: U63
    buyer_refund: U63
    seller_refund: U63


def settlement(terms: DealTerms, delivered: Wh, broken_by: int) -> Settlement:
    """Split the two deposits of a deal of which ``delivered`` Wh were charged."""
    buyer_deposit, seller_deposit = deposits(terms)
    paid = energy_cost(delivered, terms.buyer_rate)
    seller_gets = energy_cost(delivered, terms.seller_rate)
    short = terms.energy_wh - delivered
    penalty = 0
    if broken_by == Breaker.SELLER:
        penalty = -(-seller_deposit * short // terms.energy_wh)
    elif broken_by == Breaker.BUYER:
        penalty = min(buyer_deposit - paid, penalty_of(energy_cost(short, terms.price), terms.penalty_pct))
    buyer_refund = buyer_deposit - paid - (penalty if broken_by == Breaker.BUYER else 0)
    seller_refund = seller_deposit - (penalty if broken_by == Breaker.SELLER else 0)
    return Settlement(paid, seller_gets, penalty, buyer_refund, seller_refund)


# --- transactions -----------------------------------------------------------------------------


class RegisterVehicle(Wire, frozen=True, tag=52):
    vehicle_key: PublicKeyBytes
    owner_key: PublicKeyBytes
    """The owner's key (the vehicle's wallet is its address)."""
    battery_wh: U63
    max_power_w: U63
    owner_signature: SignatureBytes
    """The owner's consent (``VehicleConsent`` with the sender as the authority)."""
    vehicle_signature: SignatureBytes
    """The vehicle's, over the same consent: its key is its own."""


class RegisterHotspot(Wire, frozen=True, tag=53):
    name: Name
    station_key: PublicKeyBytes
    aggregators: tuple[PublicKeyBytes, ...]
    """Ordered by key, each once."""
    operator: AddressBytes
    fee: U63
    charging_discount: U63
    parking_discount: U63
    penalty_pct: U32


class OpenEvDeal(Wire, frozen=True, tag=54):
    terms: DealTerms
    buyer_signature: SignatureBytes
    seller_signature: SignatureBytes
    processor: PublicKeyBytes
    processing_signature: SignatureBytes
    """The processor's, over ``Processing(deal id)``."""


class SettleEvDeal(Wire, frozen=True, tag=55):
    delivery: Delivery
    station_signature: SignatureBytes
    processor: PublicKeyBytes
    processing_signature: SignatureBytes
    """The processor's, over ``Processing(deal id, delivery)``."""


class ExpireEvDeal(Wire, frozen=True, tag=56):
    deal: HashBytes


# --- reading the state ------------------------------------------------------------------------


def _registry(state: StateView, sender: Address, what: str) -> None:
    authority = state.get(AUTHORITIES, sender)
    if authority is None or not Role(authority.roles) & Role.VEHICLE_REGISTRY:
        raise NotAuthorized(f"{address_to_text(sender)} is no vehicle registry: it cannot {what}")
    refuse_revoked(state, sender, what)


def _hotspot(state: StateView, hid: bytes) -> Hotspot:
    found = state.get(HOTSPOTS, hid)
    if found is None:
        raise UnknownHotspot(f"no charging hotspot {hid.hex()[:16]}")
    return found


def _vehicle(state: StateView, vid: bytes, hotspot: Hotspot, whose: str) -> Vehicle:
    found = state.get(VEHICLES, vid)
    if found is None or found.authority != hotspot.authority:
        raise UnknownVehicle(
            f"the {whose} vehicle {address_to_text(vid)} is not registered by {hotspot.name}'s authority"
        )
    return found


def _deal(state: StateView, did: bytes) -> DealRecord:
    found = state.get(EV_DEALS, did)
    if found is None:
        raise UnknownDeal(f"no vehicle-to-vehicle deal {did.hex()[:16]}")
    if found.status != DealStatus.OPEN:
        raise DealClosed(f"deal {did.hex()[:16]} is {DealStatus(found.status).name.lower()} already")
    return found


def _processed(
    chain_id: Hash32, hotspot: Hotspot, processor: bytes, processing: Processing, sig: bytes
) -> None:
    if processor not in hotspot.aggregators or not verify_signature(
        Domain.EV_PROCESSING, processor, chain_id + encode(processing), sig
    ):
        raise EvProcessingInvalid(f"not a valid signature of one of {hotspot.name}'s aggregators")


def _debit(state: StateView, who: Address, amount: int, what: str) -> None:
    acct = state.account(who)
    if acct.balance < amount:
        raise InsufficientBalance(
            f"{what} of {amount} exceeds {address_to_text(who)}'s balance {acct.balance}"
        )
    state.put(ACCOUNTS, who, replace(acct, balance=acct.balance - amount))


def _pay(state: StateView, who: Address, amount: int) -> None:
    if amount:
        state.credit(who, amount)


# --- rules ------------------------------------------------------------------------------------


def validate_register_vehicle(payload: RegisterVehicle, params: ChainParams) -> None:
    if not 1 <= payload.battery_wh <= MAX_BATTERY_WH or not 1 <= payload.max_power_w <= MAX_POWER_W:
        raise MalformedTransaction(
            f"a vehicle's battery is 1 to {MAX_BATTERY_WH} Wh and its power 1 to {MAX_POWER_W} W"
        )


def apply_register_vehicle(
    state: StateView, env: BlockEnv, sender: Address, payload: RegisterVehicle
) -> None:
    _registry(state, sender, "register vehicles")
    vid = address_from_public_key(payload.vehicle_key)
    if state.get(VEHICLES, vid) is not None:
        raise VehicleExists(f"vehicle {address_to_text(vid)} is registered already")
    owner = address_from_public_key(payload.owner_key)
    require_identity(state, owner, "owning a registered vehicle")
    consent = VehicleConsent(payload.vehicle_key, owner, sender, payload.battery_wh, payload.max_power_w)
    signed = env.chain_id + encode(consent)
    if not verify_signature(Domain.VEHICLE_CONSENT, payload.vehicle_key, signed, payload.vehicle_signature):
        raise VehicleSignatureInvalid(
            f"vehicle {address_to_text(vid)}'s own key did not sign its registration"
        )
    if not verify_signature(Domain.VEHICLE_CONSENT, payload.owner_key, signed, payload.owner_signature):
        raise OwnerConsentInvalid(f"the owner {address_to_text(owner)} did not sign its consent")
    state.put(
        VEHICLES, vid, Vehicle(payload.vehicle_key, owner, sender, payload.battery_wh, payload.max_power_w)
    )


def validate_register_hotspot(payload: RegisterHotspot, params: ChainParams) -> None:
    keys = payload.aggregators
    if not 1 <= len(keys) <= MAX_MEMBERS or list(keys) != sorted(set(keys)):
        raise MalformedTransaction(f"a hotspot lists 1 to {MAX_MEMBERS} aggregator keys, ordered, each once")
    if payload.station_key in keys:
        raise MalformedTransaction(
            "the station's key is not one of the aggregators': a settlement needs both"
        )
    if payload.charging_discount + payload.parking_discount > payload.fee or payload.penalty_pct > 100:
        raise MalformedTransaction("the discounts exceed the station's fee, or the penalty 100 %")


def apply_register_hotspot(
    state: StateView, env: BlockEnv, sender: Address, payload: RegisterHotspot
) -> None:
    _registry(state, sender, "register charging hotspots")
    hid = hotspot_id(env.sender_key, payload.name)
    if state.get(HOTSPOTS, hid) is not None:
        raise HotspotExists(
            f"{address_to_text(sender)} has registered a charging hotspot named {payload.name!r} already"
        )
    state.put(
        HOTSPOTS,
        hid,
        Hotspot(
            payload.name, sender, payload.station_key, payload.aggregators, payload.operator, payload.fee,
            payload.charging_discount, payload.parking_discount, payload.penalty_pct,
        ),
    )  # fmt: skip


def validate_open_deal(payload: OpenEvDeal, params: ChainParams) -> None:
    t = payload.terms
    if t.buyer == t.seller:
        raise MalformedTransaction("a vehicle does not trade with itself")
    if t.energy_wh < 1 or t.price < 1:
        raise MalformedTransaction("a deal is for at least 1 Wh at a price of at least 1")
    if not t.first_interval <= t.last_interval < t.first_interval + MAX_DEAL_INTERVALS:
        raise MalformedTransaction(f"a deal's energy flows over 1 to {MAX_DEAL_INTERVALS} intervals")


def apply_open_deal(state: StateView, env: BlockEnv, sender: Address, payload: OpenEvDeal) -> None:
    t = payload.terms
    hotspot = _hotspot(state, t.hotspot)
    terms_there = (hotspot.fee, hotspot.charging_discount, hotspot.parking_discount, hotspot.penalty_pct)
    if (t.fee, t.charging_discount, t.parking_discount, t.penalty_pct) != terms_there:
        raise DealTermsMismatch(f"the deal's fee, discounts or penalty are not {hotspot.name}'s")
    # A revoked registry vouches for nothing: not its aggregators, vehicles or their limits.
    refuse_revoked(state, hotspot.authority, f"opening deals at {hotspot.name}")
    did = deal_id(t)
    _processed(env.chain_id, hotspot, payload.processor, Processing(did), payload.processing_signature)
    buyer = _vehicle(state, t.buyer, hotspot, "charging")
    seller = _vehicle(state, t.seller, hotspot, "discharging")
    signed = env.chain_id + encode(t)
    for vehicle, signature, whose in (
        (buyer, payload.buyer_signature, "charging"),
        (seller, payload.seller_signature, "discharging"),
    ):
        if not verify_signature(Domain.EV_DEAL, vehicle.key, signed, signature):
            raise DealSignatureInvalid(f"the {whose} vehicle did not sign the deal")
    if state.get(EV_DEALS, did) is not None:
        raise DealExists(f"deal {did.hex()[:16]} is on chain already")
    if interval_of(env.timestamp) >= t.first_interval:
        raise DealStarted(f"the deal's first interval {t.first_interval} has begun: it opens before")
    if t.first_interval > interval_of(env.timestamp) + DEAL_HORIZON_INTERVALS:
        raise DealTooFarAhead(
            f"the deal's first interval {t.first_interval} is more than {DEAL_HORIZON_INTERVALS} intervals "
            f"after the block's {interval_of(env.timestamp)}"
        )
    span = t.last_interval - t.first_interval + 1
    for vehicle, committed, whose in (
        (buyer, buyer.open_buy_wh, "charging"),
        (seller, seller.open_sell_wh, "discharging"),
    ):
        limit = min(vehicle.battery_wh - committed, power_limit(vehicle.max_power_w, span))
        if t.energy_wh > limit:
            raise BeyondVehicle(
                f"the {whose} vehicle has {vehicle.battery_wh} Wh of battery ({committed} Wh committed) and "
                f"moves {power_limit(vehicle.max_power_w, span)} Wh in {span} intervals: "
                f"{t.energy_wh} Wh is beyond it"
            )
    buyer_deposit, seller_deposit = deposits(t)
    for who in dict.fromkeys((buyer.owner, seller.owner)):
        refuse_revoked(state, who, "trading energy between vehicles")
    _debit(state, buyer.owner, buyer_deposit, "the charging vehicle's deposit")
    _debit(state, seller.owner, seller_deposit, "the discharging vehicle's penalty deposit")
    state.put(VEHICLES, t.buyer, replace(buyer, open_buy_wh=buyer.open_buy_wh + t.energy_wh))
    state.put(VEHICLES, t.seller, replace(seller, open_sell_wh=seller.open_sell_wh + t.energy_wh))
    state.put(EV_DEALS, did, DealRecord(t, payload.processor, buyer_deposit, seller_deposit, env.height))


def validate_settle(payload: SettleEvDeal, params: ChainParams) -> None:
    d = payload.delivery
    if d.broken_by not in (Breaker.NONE, Breaker.BUYER, Breaker.SELLER):
        raise MalformedTransaction(f"broken_by {d.broken_by} is not 0 (none), 1 (buyer) or 2 (seller)")


def _release(state: StateView, terms: DealTerms, delivered: Wh, breaker: int) -> None:
    """The deal no longer commits its vehicles; what was delivered and who broke it counts."""
    for vid, buying in ((terms.buyer, True), (terms.seller, False)):
        v = state.get(VEHICLES, vid)
        assert v is not None  # (vehicles are never removed)
        if buying:
            v = replace(v, open_buy_wh=v.open_buy_wh - terms.energy_wh, bought_wh=v.bought_wh + delivered)
        else:
            v = replace(v, open_sell_wh=v.open_sell_wh - terms.energy_wh, sold_wh=v.sold_wh + delivered)
        broke = breaker == (Breaker.BUYER if buying else Breaker.SELLER)
        state.put(VEHICLES, vid, replace(v, deals=v.deals + 1, broken=v.broken + int(broke)))


def apply_settle(state: StateView, env: BlockEnv, sender: Address, payload: SettleEvDeal) -> None:
    d = payload.delivery
    record = _deal(state, d.deal)
    t = record.terms
    hotspot = _hotspot(state, t.hotspot)
    if not verify_signature(
        Domain.EV_DELIVERY, hotspot.station_key, env.chain_id + encode(d), payload.station_signature
    ):
        raise StationSignatureInvalid(f"the delivery is not signed by {hotspot.name}'s charging station")
    _processed(env.chain_id, hotspot, payload.processor, Processing(d.deal, d), payload.processing_signature)
    if d.vehicle != t.buyer:
        raise DeliveryMismatch(
            f"the delivery names meter {address_to_text(d.vehicle)}, not the charging vehicle"
        )
    if d.delivered_wh > t.energy_wh:
        raise DeliveryMismatch(f"{d.delivered_wh} Wh delivered under a deal for {t.energy_wh} Wh")
    if (d.delivered_wh < t.energy_wh) != (d.broken_by != Breaker.NONE):
        raise DeliveryMismatch(
            "a shortfall names who broke the deal, and a deal delivered in full names nobody"
        )
    now = interval_of(env.timestamp)
    if now <= t.last_interval:
        raise DealNotOver(f"the deal's energy flows until the end of interval {t.last_interval}")
    if now > t.last_interval + EXPIRY_INTERVALS:
        raise DealLapsed(
            f"deal {d.deal.hex()[:16]} lapsed after interval {t.last_interval + EXPIRY_INTERVALS}"
        )
    s = settlement(t, d.delivered_wh, d.broken_by)
    buyer, seller = state.get(VEHICLES, t.buyer), state.get(VEHICLES, t.seller)
    assert buyer is not None and seller is not None
    _pay(
        state,
        seller.owner,
        s.seller_gets + s.seller_refund + (s.penalty if d.broken_by == Breaker.BUYER else 0),
    )
    _pay(state, buyer.owner, s.buyer_refund + (s.penalty if d.broken_by == Breaker.SELLER else 0))
    _pay(state, hotspot.operator, s.paid - s.seller_gets)
    _release(state, t, d.delivered_wh, d.broken_by)
    state.put(
        HOTSPOTS,
        t.hotspot,
        replace(
            hotspot,
            deals=hotspot.deals + 1,
            traded_wh=hotspot.traded_wh + d.delivered_wh,
            fees=hotspot.fees + s.paid - s.seller_gets,
            penalties=hotspot.penalties + s.penalty,
        ),
    )
    state.put(
        EV_DEALS,
        d.deal,
        replace(
            record,
            status=int(DealStatus.SETTLED),
            delivered_wh=d.delivered_wh,
            broken_by=d.broken_by,
            paid=s.paid,
            penalty=s.penalty,
            station_signature=payload.station_signature,
            settle_processor=payload.processor,
            settle_signature=payload.processing_signature,
            closed_height=env.height,
        ),
    )


def apply_expire(state: StateView, env: BlockEnv, sender: Address, payload: ExpireEvDeal) -> None:
    record = _deal(state, payload.deal)
    t = record.terms
    if interval_of(env.timestamp) <= t.last_interval + EXPIRY_INTERVALS:
        raise DealNotOver(f"an unsettled deal expires after interval {t.last_interval + EXPIRY_INTERVALS}")
    buyer, seller = state.get(VEHICLES, t.buyer), state.get(VEHICLES, t.seller)
    assert buyer is not None and seller is not None
    _pay(state, buyer.owner, record.buyer_deposit)
    _pay(state, seller.owner, record.seller_deposit)
    state.put(VEHICLES, t.buyer, replace(buyer, open_buy_wh=buyer.open_buy_wh - t.energy_wh))
    state.put(VEHICLES, t.seller, replace(seller, open_sell_wh=seller.open_sell_wh - t.energy_wh))
    state.put(
        EV_DEALS, payload.deal, replace(record, status=int(DealStatus.EXPIRED), closed_height=env.height)
    )


def _no_check(payload: object, params: ChainParams) -> None:
    """Nothing to check without the state."""


REGISTER_VEHICLE_RULES = TxRules(RegisterVehicle, validate_register_vehicle, apply_register_vehicle)
REGISTER_HOTSPOT_RULES = TxRules(RegisterHotspot, validate_register_hotspot, apply_register_hotspot)
OPEN_DEAL_RULES = TxRules(OpenEvDeal, validate_open_deal, apply_open_deal)
SETTLE_DEAL_RULES = TxRules(SettleEvDeal, validate_settle, apply_settle)
EXPIRE_DEAL_RULES = TxRules(ExpireEvDeal, _no_check, apply_expire)


def deal_figures(view: StateView, did: bytes) -> dict[str, Any] | None:
    """A deal by its id, with the seed's record fields (None when none is on chain)."""
    r = view.get(EV_DEALS, did)
    if r is None:
        return None
    t = r.terms
    return {
        "deal": did.hex(),
        "status": DealStatus(r.status).name.lower(),
        "hotspot": t.hotspot.hex(),
        "vehicle_meter": address_to_text(t.buyer),
        "seller_vehicle": address_to_text(t.seller),
        "energy_wh": t.energy_wh,
        "energy_charged_wh": r.delivered_wh,
        "price": t.price,
        "fee": t.fee,
        "charging_discount": t.charging_discount,
        "parking_discount": t.parking_discount,
        "penalty_pct": t.penalty_pct,
        "intervals": [t.first_interval, t.last_interval],
        "buyer_deposit": r.buyer_deposit,
        "seller_deposit": r.seller_deposit,
        "paid": r.paid,
        "penalty": r.penalty,
        "broken_by": Breaker(r.broken_by).name.lower(),
        "opened_by": r.processor.hex(),
        "station_signature": r.station_signature.hex(),
        "processor": r.settle_processor.hex(),
        "processing_signature": r.settle_signature.hex(),
        "opened_height": r.opened_height,
        "closed_height": r.closed_height,
    }


def hotspot_figures(view: StateView, registrant: PublicKey, name: str) -> dict[str, Any] | None:
    """A hotspot's terms and books (None when ``registrant`` registered no hotspot of that name)."""
    hid = hotspot_id(registrant, name)
    h = view.get(HOTSPOTS, hid)
    if h is None:
        return None
    return {
        "hotspot": h.name,
        "id": hid.hex(),
        "authority": address_to_text(h.authority),
        "station_key": h.station_key.hex(),
        "aggregators": [k.hex() for k in h.aggregators],
        "operator": address_to_text(h.operator),
        "fee": h.fee,
        "charging_discount": h.charging_discount,
        "parking_discount": h.parking_discount,
        "penalty_pct": h.penalty_pct,
        "deals": h.deals,
        "traded_wh": h.traded_wh,
        "fees": h.fees,
        "penalties": h.penalties,
    }
