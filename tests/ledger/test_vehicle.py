"""Vehicle-to-vehicle trading (``ledger/txs/vehicle.py``): a trusted authority registers vehicles
(with their owners' consent) and hotspots; a deal signed by both vehicles and processed by one
of the hotspot's aggregators locks the buyer's payment and the seller's penalty deposit; the
station's signed delivery settles it, a breaker paying the other party. Each rule broken, its
rejection named."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from msgspec.structs import replace

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import IdentityRevoked, MalformedTransaction
from gridnet.ledger.registry import Payload
from gridnet.ledger.state import StateView
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.base import BlockEnv
from gridnet.ledger.txs.identity import revoke_identity
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.txs.vehicle import (
    DEAL_HORIZON_INTERVALS,
    EV_DEALS,
    EXPIRY_INTERVALS,
    HOTSPOTS,
    VEHICLES,
    Breaker,
    DealStatus,
    DealTerms,
    Delivery,
    ExpireEvDeal,
    OpenEvDeal,
    Processing,
    RegisterHotspot,
    RegisterVehicle,
    SettleEvDeal,
    VehicleConsent,
    apply_open_deal,
    apply_register_vehicle,
    deal_id,
    deposits,
    hotspot_id,
    settlement,
    sign_consent,
    sign_deal,
    sign_delivery,
    sign_processing,
)
from gridnet.security.roles import Role
from gridnet.units import energy_cost, interval_of
from tests.helpers import register_identity, sign
from tests.ledger.test_helios import BUYER, COLLECTOR, MAKER, OWNER, START, STRANGER, Helios, at, two_meters

REGISTRY = COLLECTOR  # the trusted authority
CHARGING = PrivateKey.from_label("ev-charging")  # BUYER's car
DISCHARGING = PrivateKey.from_label("ev-discharging")  # OWNER's car
STATION = PrivateKey.from_label("ev-station")
LAGS = sorted((PrivateKey.from_label(f"ev-lag-{i}") for i in range(2)), key=lambda k: k.public_key)


def hotspot_named(name: str) -> bytes:
    """The id of REGISTRY's hotspot ``name`` (REGISTRY registers the hotspots)."""
    return hotspot_id(REGISTRY.public_key, name)


HID = hotspot_named("Depot")
FEE, CHARGING_DISCOUNT, PARKING_DISCOUNT, PENALTY_PCT = 40_000, 10_000, 20_000, 20
BATTERY_WH, POWER_W = 50_000, 11_000


def vehicle(
    h: Helios, car: PrivateKey, owner: PrivateKey, authority: PrivateKey = REGISTRY
) -> RegisterVehicle:
    consent = VehicleConsent(car.public_key, owner.address, authority.address, BATTERY_WH, POWER_W)
    chain_id = h.chain.chain_id
    return RegisterVehicle(
        car.public_key, owner.public_key, BATTERY_WH, POWER_W, sign_consent(owner, chain_id, consent),
        sign_consent(car, chain_id, consent),
    )  # fmt: skip


DEPOT = RegisterHotspot(
    "Depot", STATION.public_key, tuple(k.public_key for k in LAGS), MAKER.address, FEE,
    CHARGING_DISCOUNT, PARKING_DISCOUNT, PENALTY_PCT,
)  # fmt: skip
"""The registry's hotspot, as it registers it."""


@pytest.fixture
def h(tmp_path: Path) -> Helios:
    w = two_meters(tmp_path)
    w.mine(register_identity(w.chain, REGISTRY))
    w.nonces[REGISTRY.address] = 1
    w.mine(w.tx(REGISTRY, RegisterAuthority(int(Role.VEHICLE_REGISTRY), "Vehicle Registry")))
    hotspot = DEPOT
    w.mine(
        w.tx(REGISTRY, vehicle(w, CHARGING, BUYER)),
        w.tx(REGISTRY, vehicle(w, DISCHARGING, OWNER)),
        w.tx(REGISTRY, hotspot),
    )
    return w


def terms(
    energy_wh: int = 10_000, price: int = 300_000, first: int = START + 2, last: int = START + 5
) -> DealTerms:
    return DealTerms(
        HID, CHARGING.address, DISCHARGING.address, energy_wh, price, FEE, CHARGING_DISCOUNT,
        PARKING_DISCOUNT, PENALTY_PCT, first, last,
    )  # fmt: skip


def opening(
    h: Helios, t: DealTerms, buyer: PrivateKey = CHARGING, seller: PrivateKey = DISCHARGING
) -> OpenEvDeal:
    chain_id = h.chain.chain_id
    return OpenEvDeal(
        t,
        sign_deal(buyer, chain_id, t),
        sign_deal(seller, chain_id, t),
        LAGS[0].public_key,
        sign_processing(LAGS[0], chain_id, Processing(deal_id(t))),
    )


def settling(
    h: Helios, d: Delivery, station: PrivateKey = STATION, lag: PrivateKey = LAGS[1]
) -> SettleEvDeal:
    chain_id = h.chain.chain_id
    return SettleEvDeal(
        d,
        sign_delivery(station, chain_id, d),
        lag.public_key,
        sign_processing(lag, chain_id, Processing(d.deal, d)),
    )


def balance(h: Helios, who: bytes) -> int:
    return h.chain.view().account(who).balance


def malformed(h: Helios, payload: Payload) -> None:
    with pytest.raises(MalformedTransaction):
        validate_transaction(sign(h.chain, REGISTRY, payload, 0), h.chain.params, h.chain.chain_id)


def test_a_trusted_authority_registers_vehicles_with_their_owners_consent(h: Helios) -> None:
    car = PrivateKey.from_label("ev-other")
    assert h.refused(STRANGER, vehicle(h, car, OWNER, STRANGER)) == "NotAuthorized"  # no registry role
    assert h.refused(REGISTRY, vehicle(h, CHARGING, BUYER)) == "VehicleExists"
    chain_id = h.chain.chain_id
    to_buyer = VehicleConsent(car.public_key, BUYER.address, REGISTRY.address, BATTERY_WH, POWER_W)
    forged = RegisterVehicle(  # BUYER's wallet, OWNER's consent
        car.public_key, BUYER.public_key, BATTERY_WH, POWER_W, sign_consent(OWNER, chain_id, to_buyer),
        sign_consent(car, chain_id, to_buyer),
    )  # fmt: skip
    assert h.refused(REGISTRY, forged) == "OwnerConsentInvalid"
    other_authority = vehicle(h, car, OWNER, MAKER)  # the owner consented to another authority
    other_authority = replace(other_authority, vehicle_signature=vehicle(h, car, OWNER).vehicle_signature)
    assert h.refused(REGISTRY, other_authority) == "OwnerConsentInvalid"
    assert h.refused(REGISTRY, vehicle(h, car, STRANGER)) == "UnknownIdentity"  # an owner needs an identity
    # Nobody registers a vehicle key without the vehicle: a squatter with its own consent is refused.
    squat = vehicle(h, car, BUYER)
    squat = replace(squat, vehicle_signature=sign_consent(BUYER, h.chain.chain_id, VehicleConsent(
        car.public_key, BUYER.address, REGISTRY.address, BATTERY_WH, POWER_W
    )))  # fmt: skip
    assert h.refused(REGISTRY, squat) == "VehicleSignatureInvalid"
    malformed(h, replace(vehicle(h, car, OWNER), battery_wh=0))
    malformed(h, replace(vehicle(h, car, OWNER), max_power_w=2_000_000))
    registered = h.chain.view().get(VEHICLES, CHARGING.address)
    assert (
        registered is not None
        and registered.owner == BUYER.address
        and registered.authority == REGISTRY.address
    )


def test_a_trusted_authority_registers_hotspots_with_their_terms(h: Helios) -> None:
    good = RegisterHotspot("Mall", STATION.public_key, (LAGS[0].public_key,), MAKER.address, 10, 5, 5, 10)
    assert h.refused(STRANGER, good) == "NotAuthorized"
    assert h.refused(REGISTRY, replace(good, name="Depot")) == "HotspotExists"
    malformed(h, replace(good, parking_discount=6))  # the discounts exceed the fee
    malformed(h, replace(good, penalty_pct=101))
    malformed(h, replace(good, aggregators=(LAGS[1].public_key, LAGS[0].public_key)))  # not ordered
    malformed(h, replace(good, aggregators=()))
    malformed(h, replace(good, aggregators=(LAGS[0].public_key, LAGS[0].public_key)))  # twice
    many = tuple(sorted(PrivateKey.from_label(f"lag-{n}").public_key for n in range(33)))
    malformed(h, replace(good, aggregators=many))
    malformed(h, replace(good, station_key=LAGS[0].public_key))  # the station is no aggregator
    spot = h.chain.view().get(HOTSPOTS, HID)
    assert spot is not None and spot.authority == REGISTRY.address and spot.fee == FEE


def test_a_registration_copied_by_another_registry_takes_neither_name_nor_hotspot(h: Helios) -> None:
    """A hotspot's id was the hash of its name alone: another vehicle registry that saw a
    RegisterHotspot pending sent a copy first, and the registrant's was refused as
    HotspotExists. Each registry's names are its own now: both are registered, a deal at the
    registrant's hotspot opens there, and the copy's takes none of its vehicles."""
    h.mine(register_identity(h.chain, STRANGER))
    h.nonces[STRANGER.address] = 1
    h.mine(h.tx(STRANGER, RegisterAuthority(int(Role.VEHICLE_REGISTRY), "Another Registry")))
    copy = DEPOT  # (the registry's own registration, sent by another)
    h.mine(h.tx(STRANGER, copy))
    theirs = hotspot_id(STRANGER.public_key, "Depot")
    view = h.chain.view()
    spot, other = view.get(HOTSPOTS, HID), view.get(HOTSPOTS, theirs)
    assert theirs != HID and spot is not None and other is not None
    assert (spot.authority, other.authority) == (REGISTRY.address, STRANGER.address)
    assert h.refused(STRANGER, opening(h, replace(terms(), hotspot=theirs))) == "UnknownVehicle"
    h.mine(h.tx(STRANGER, opening(h, terms())))
    record = h.chain.view().get(EV_DEALS, deal_id(terms()))
    assert record is not None and record.terms.hotspot == HID
    assert h.refused(STRANGER, copy) == "HotspotExists"  # (a registry's name is taken once)


def test_a_deal_locks_the_payment_and_the_penalty_deposit(h: Helios) -> None:
    t = terms()
    buyer0, seller0 = balance(h, BUYER.address), balance(h, OWNER.address)
    tx = h.tx(STRANGER, opening(h, t))  # anyone (the aggregator) submits it
    h.mine(tx)
    buyer_deposit, seller_deposit = deposits(t)
    assert buyer_deposit == energy_cost(10_000, 300_000 + FEE - CHARGING_DISCOUNT)
    assert seller_deposit == energy_cost(10_000, 300_000) * PENALTY_PCT // 100
    assert balance(h, BUYER.address) == buyer0 - buyer_deposit
    assert balance(h, OWNER.address) == seller0 - seller_deposit
    view = h.chain.view()
    record = view.get(EV_DEALS, deal_id(t))
    assert record is not None and record.status == DealStatus.OPEN and record.processor == LAGS[0].public_key
    assert view.get(VEHICLES, CHARGING.address).open_buy_wh == 10_000  # type: ignore[union-attr]
    assert view.get(VEHICLES, DISCHARGING.address).open_sell_wh == 10_000  # type: ignore[union-attr]
    assert h.refused(STRANGER, opening(h, t)) == "DealExists"


def test_every_rule_of_opening_a_deal(h: Helios) -> None:
    t = terms()
    stranger_car = PrivateKey.from_label("ev-unregistered")
    assert h.refused(STRANGER, opening(h, replace(t, hotspot=hotspot_named("Nowhere")))) == "UnknownHotspot"
    assert h.refused(STRANGER, opening(h, replace(t, fee=FEE - 1))) == "DealTermsMismatch"
    assert h.refused(STRANGER, opening(h, replace(t, penalty_pct=0))) == "DealTermsMismatch"
    for term in ("charging_discount", "parking_discount"):
        assert h.refused(STRANGER, opening(h, replace(t, **{term: 0}))) == "DealTermsMismatch"
    # Signatures for another chain (or under another domain) do not open a deal here.
    elsewhere = replace(opening(h, t), buyer_signature=sign_deal(CHARGING, b"\x01" * 32, t))
    assert h.refused(STRANGER, elsewhere) == "DealSignatureInvalid"
    delivery_domain = replace(opening(h, t), seller_signature=sign_delivery(DISCHARGING, h.chain.chain_id, t))
    assert h.refused(STRANGER, delivery_domain) == "DealSignatureInvalid"
    unknown = replace(t, seller=stranger_car.address)
    assert h.refused(STRANGER, opening(h, unknown, seller=stranger_car)) == "UnknownVehicle"
    assert h.refused(STRANGER, opening(h, t, seller=stranger_car)) == "DealSignatureInvalid"
    assert h.refused(STRANGER, opening(h, t, buyer=DISCHARGING)) == "DealSignatureInvalid"
    rogue = opening(h, t)
    rogue = replace(rogue, processor=STATION.public_key, processing_signature=sign_processing(
        STATION, h.chain.chain_id, Processing(deal_id(t))
    ))  # fmt: skip
    assert h.refused(STRANGER, rogue) == "EvProcessingInvalid"  # not one of the hotspot's aggregators
    assert h.refused(STRANGER, opening(h, t), interval=t.first_interval) == "DealStarted"  # opens before it
    too_much = terms(energy_wh=POWER_W * 4 // 4 + 1)  # 4 intervals at 11 kW: 11 kWh at most
    assert h.refused(STRANGER, opening(h, too_much)) == "BeyondVehicle"
    poor = terms(energy_wh=10_000, price=10**13)
    assert h.refused(STRANGER, opening(h, poor)) == "InsufficientBalance"
    malformed(h, opening(h, replace(t, seller=CHARGING.address)))
    malformed(h, opening(h, replace(t, energy_wh=0)))
    malformed(h, opening(h, replace(t, price=0)))
    malformed(h, opening(h, replace(t, last_interval=t.first_interval - 1)))
    malformed(h, opening(h, replace(t, last_interval=t.first_interval + 96)))


def test_a_deal_opens_at_most_a_week_before_its_first_interval(h: Helios) -> None:
    # Expiry comes only 96 intervals after the last: a deal far ahead would lock both deposits
    # and both vehicles' commitments for good.
    now = interval_of(h.timestamp(None))  # the next block's interval
    at_horizon = terms(first=now + DEAL_HORIZON_INTERVALS, last=now + DEAL_HORIZON_INTERVALS + 3)
    beyond = terms(first=now + DEAL_HORIZON_INTERVALS + 1, last=now + DEAL_HORIZON_INTERVALS + 4)
    assert h.refused(STRANGER, opening(h, beyond), interval=now) == "DealTooFarAhead"
    forever = terms(first=2**62, last=2**62 + 3)
    assert h.refused(STRANGER, opening(h, forever), interval=now) == "DealTooFarAhead"
    h.mine(h.tx(STRANGER, opening(h, at_horizon)), interval=now)
    assert h.chain.view().get(EV_DEALS, deal_id(at_horizon)) is not None


def test_a_battery_is_not_committed_beyond_its_size(h: Helios) -> None:
    day = [terms(energy_wh=11_000, first=START + 2 + 4 * n, last=START + 5 + 4 * n) for n in range(5)]
    h.mine(*(h.tx(STRANGER, opening(h, t)) for t in day[:4]))  # 44 kWh of 50 committed
    assert h.refused(STRANGER, opening(h, replace(day[4], energy_wh=6_001))) == "BeyondVehicle"
    # The seller's side alike: a new buyer, the same discharging vehicle, committed as deep.
    other = PrivateKey.from_label("ev-third")
    h.mine(h.tx(REGISTRY, vehicle(h, other, BUYER)))
    sell = replace(day[4], buyer=other.address, energy_wh=6_001)
    assert h.refused(STRANGER, opening(h, sell, buyer=other)) == "BeyondVehicle"


def test_a_deal_kept_pays_the_seller_the_price_and_parking_discount_and_the_station_the_rest(
    h: Helios,
) -> None:
    t = terms()
    h.mine(h.tx(STRANGER, opening(h, t)))
    buyer0, seller0, operator0 = (balance(h, a) for a in (BUYER.address, OWNER.address, MAKER.address))
    full = Delivery(deal_id(t), CHARGING.address, 10_000, Breaker.NONE)
    assert h.refused(STRANGER, settling(h, full), interval=t.last_interval) == "DealNotOver"
    h.mine(h.tx(STRANGER, settling(h, full)), interval=t.last_interval + 1)
    buyer_deposit, seller_deposit = deposits(t)
    seller_gets = energy_cost(10_000, 300_000 + PARKING_DISCOUNT)
    assert balance(h, OWNER.address) == seller0 + seller_gets + seller_deposit
    assert balance(h, BUYER.address) == buyer0  # it paid its whole deposit
    assert balance(h, MAKER.address) == operator0 + buyer_deposit - seller_gets
    view = h.chain.view()
    record = view.get(EV_DEALS, deal_id(t))
    assert record is not None and record.status == DealStatus.SETTLED and record.delivered_wh == 10_000
    assert record.settle_processor == LAGS[1].public_key  # the record carries the station's and the LAG's
    bought = view.get(VEHICLES, CHARGING.address)
    sold = view.get(VEHICLES, DISCHARGING.address)
    assert bought is not None and (bought.open_buy_wh, bought.bought_wh, bought.deals) == (0, 10_000, 1)
    assert sold is not None and (sold.open_sell_wh, sold.sold_wh, sold.broken) == (0, 10_000, 0)
    spot = view.get(HOTSPOTS, HID)
    assert spot is not None and (spot.deals, spot.traded_wh, spot.penalties) == (1, 10_000, 0)
    assert h.refused(STRANGER, settling(h, full)) == "DealClosed"


def test_a_seller_that_breaks_the_deal_pays_the_buyer_from_its_deposit(h: Helios) -> None:
    t = terms()
    h.mine(h.tx(STRANGER, opening(h, t)))
    buyer0, seller0 = balance(h, BUYER.address), balance(h, OWNER.address)
    short = Delivery(deal_id(t), CHARGING.address, 4_000, Breaker.SELLER)
    h.mine(h.tx(STRANGER, settling(h, short)), interval=t.last_interval + 1)
    s = settlement(t, 4_000, Breaker.SELLER)
    buyer_deposit, seller_deposit = deposits(t)
    assert s.penalty == -(-seller_deposit * 6_000 // 10_000)  # the shortfall's share, rounded up
    assert balance(h, BUYER.address) == buyer0 + buyer_deposit - s.paid + s.penalty
    assert balance(h, OWNER.address) == seller0 + s.seller_gets + seller_deposit - s.penalty
    assert h.chain.view().get(VEHICLES, DISCHARGING.address).broken == 1  # type: ignore[union-attr]


def test_a_buyer_that_breaks_the_deal_pays_the_seller_a_penalty(h: Helios) -> None:
    t = terms()
    h.mine(h.tx(STRANGER, opening(h, t)))
    buyer0, seller0 = balance(h, BUYER.address), balance(h, OWNER.address)
    short = Delivery(deal_id(t), CHARGING.address, 2_500, Breaker.BUYER)
    h.mine(h.tx(STRANGER, settling(h, short)), interval=t.last_interval + 1)
    s = settlement(t, 2_500, Breaker.BUYER)
    buyer_deposit, seller_deposit = deposits(t)
    assert s.penalty == energy_cost(7_500, 300_000) * PENALTY_PCT // 100
    assert balance(h, BUYER.address) == buyer0 + buyer_deposit - s.paid - s.penalty
    assert balance(h, OWNER.address) == seller0 + s.seller_gets + seller_deposit + s.penalty
    record = h.chain.view().get(EV_DEALS, deal_id(t))
    assert record is not None and record.broken_by == Breaker.BUYER and record.penalty == s.penalty


def test_every_rule_of_settling_a_deal(h: Helios) -> None:
    t = terms()
    h.mine(h.tx(STRANGER, opening(h, t)))
    did = deal_id(t)
    after = t.last_interval + 1
    full = Delivery(did, CHARGING.address, 10_000, Breaker.NONE)
    assert h.refused(STRANGER, settling(h, replace(full, deal=b"\x07" * 32)), after) == "UnknownDeal"
    assert h.refused(STRANGER, settling(h, full, station=LAGS[0]), after) == "StationSignatureInvalid"
    assert h.refused(STRANGER, settling(h, full, lag=STATION), after) == "EvProcessingInvalid"
    wrong_meter = replace(full, vehicle=DISCHARGING.address)
    assert h.refused(STRANGER, settling(h, wrong_meter), after) == "DeliveryMismatch"
    assert h.refused(STRANGER, settling(h, replace(full, delivered_wh=10_001)), after) == "DeliveryMismatch"
    unattributed = replace(full, delivered_wh=9_000)  # a shortfall nobody is blamed for
    assert h.refused(STRANGER, settling(h, unattributed), after) == "DeliveryMismatch"
    blamed = replace(full, broken_by=Breaker.SELLER)  # a breaker of a deal kept in full
    assert h.refused(STRANGER, settling(h, blamed), after) == "DeliveryMismatch"
    malformed(h, settling(h, replace(full, broken_by=3)))


def test_an_unsettled_deal_expires_and_both_deposits_return(h: Helios) -> None:
    t = terms()
    buyer0, seller0 = balance(h, BUYER.address), balance(h, OWNER.address)
    h.mine(h.tx(STRANGER, opening(h, t)))
    did = deal_id(t)
    assert h.refused(STRANGER, ExpireEvDeal(did), t.last_interval + EXPIRY_INTERVALS) == "DealNotOver"
    assert (
        h.refused(STRANGER, ExpireEvDeal(b"\x07" * 32), t.last_interval + EXPIRY_INTERVALS + 1)
        == "UnknownDeal"
    )
    full = Delivery(did, CHARGING.address, 10_000, Breaker.NONE)
    lapsed = t.last_interval + EXPIRY_INTERVALS + 1
    assert h.refused(STRANGER, settling(h, full), lapsed) == "DealLapsed"  # too late: it only expires
    h.mine(h.tx(STRANGER, ExpireEvDeal(did)), interval=lapsed)
    assert (balance(h, BUYER.address), balance(h, OWNER.address)) == (buyer0, seller0)
    record = h.chain.view().get(EV_DEALS, did)
    assert record is not None and record.status == DealStatus.EXPIRED
    assert h.chain.view().get(VEHICLES, CHARGING.address).open_buy_wh == 0  # type: ignore[union-attr]
    assert h.refused(STRANGER, ExpireEvDeal(did)) == "DealClosed"
    assert h.refused(STRANGER, settling(h, full)) == "DealClosed"


def test_a_hotspot_trades_only_among_its_own_authoritys_vehicles(h: Helios) -> None:
    other, car = STRANGER, PrivateKey.from_label("ev-other-car")  # another registry and its vehicle
    h.mine(register_identity(h.chain, other, 0))
    h.nonces[other.address] = 1
    h.mine(h.tx(other, RegisterAuthority(int(Role.VEHICLE_REGISTRY), "Other Registry")))
    h.mine(h.tx(other, vehicle(h, car, OWNER, other)))
    t = replace(terms(), seller=car.address)
    assert h.refused(STRANGER, opening(h, t, seller=car)) == "UnknownVehicle"


def test_a_seller_without_its_penalty_deposit_opens_no_deal(h: Helios) -> None:
    t = terms()
    left = balance(h, OWNER.address)
    drain = h.tx(OWNER, Transfer(STRANGER.address, 0))
    h.nonces[OWNER.address] -= 1
    drain = h.tx(OWNER, Transfer(STRANGER.address, left - drain.fee - deposits(t)[1] + 1))
    h.mine(drain)
    assert h.refused(STRANGER, opening(h, t)) == "InsufficientBalance"  # the buyer could pay


def test_a_revoked_owner_or_registry_trades_no_more(h: Helios) -> None:
    t = terms()
    car = PrivateKey.from_label("ev-late")
    for who, act in (
        (OWNER, OpenEvDeal),
        (REGISTRY, OpenEvDeal),
        (REGISTRY, RegisterVehicle),
        (BUYER, RegisterVehicle),
    ):
        view = StateView(h.chain.values)
        env = BlockEnv(h.chain.params, h.chain.chain_id, h.chain.height + 1, STRANGER.address, at(START + 1))
        revoke_identity(view, env, who.address)
        with pytest.raises(IdentityRevoked):
            if act is OpenEvDeal:
                apply_open_deal(view, env, STRANGER.address, opening(h, t))
            else:
                apply_register_vehicle(view, env, REGISTRY.address, vehicle(h, car, BUYER))


def test_a_revoked_registrys_hotspot_is_refused_before_any_later_rule(h: Helios) -> None:
    # A revoked registry's hotspot opens nothing, whatever else is wrong with the deal: the
    # registry is checked right after the terms, before the processor, vehicles and limits.
    t = terms()
    rogue = replace(opening(h, t), processing_signature=b"\x00" * 64)  # EvProcessingInvalid
    unsigned = replace(opening(h, t), buyer_signature=b"\x00" * 64)  # DealSignatureInvalid
    too_much = opening(h, terms(energy_wh=POWER_W + 1))  # BeyondVehicle
    for payload in (rogue, unsigned, too_much):
        view = StateView(h.chain.values)
        env = BlockEnv(h.chain.params, h.chain.chain_id, h.chain.height + 1, STRANGER.address, at(START + 1))
        revoke_identity(view, env, REGISTRY.address)
        with pytest.raises(IdentityRevoked):
            apply_open_deal(view, env, STRANGER.address, payload)


@pytest.mark.parametrize("seed", range(4))
def test_a_settlement_pays_out_both_deposits_exactly(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(5_000):
        fee = rng.choice([0, 1, rng.randint(0, 10**7)])
        cd = rng.randint(0, fee)
        pd = rng.randint(0, fee - cd)
        energy = rng.choice([1, 2, 999, rng.randint(1, 100_000)])
        t = replace(
            terms(energy, rng.choice([1, 3, rng.randint(1, 10**8)])),
            fee=fee, charging_discount=cd, parking_discount=pd,
            penalty_pct=rng.choice([0, 1, 100, rng.randint(0, 100)]),
        )  # fmt: skip
        delivered = rng.randint(0, energy)
        breaker = Breaker.NONE if delivered == energy else rng.choice([Breaker.BUYER, Breaker.SELLER])
        s = settlement(t, delivered, breaker)
        buyer_deposit, seller_deposit = deposits(t)
        operator = s.paid - s.seller_gets
        to_seller = s.seller_gets + s.seller_refund + (s.penalty if breaker == Breaker.BUYER else 0)
        to_buyer = s.buyer_refund + (s.penalty if breaker == Breaker.SELLER else 0)
        assert to_seller + to_buyer + operator == buyer_deposit + seller_deposit
        assert min(operator, s.buyer_refund, s.seller_refund, s.penalty) >= 0


# --- queries: API and CLI --------------------------------------------------------------------


def test_a_hotspot_and_its_deals_are_queryable(h: Helios, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from fastapi.testclient import TestClient

    from gridnet.node.api import create_app
    from gridnet.node.client import EvDealAnswer, HotspotAnswer, expect
    from gridnet.node.node import Node

    t = terms()
    h.mine(h.tx(STRANGER, opening(h, t)))
    short = Delivery(deal_id(t), CHARGING.address, 4_000, Breaker.SELLER)
    h.mine(h.tx(STRANGER, settling(h, short)), interval=t.last_interval + 1)
    did = deal_id(t).hex()
    node = Node("n", h.chain)
    with TestClient(create_app(node, clock=lambda: h.clock, broadcast=lambda _out: None)) as client:
        by = {"registrant": REGISTRY.public_key.hex()}
        body = client.get("/ev-hotspots/Depot", params=by).json()
        assert (body["deals"], body["traded_wh"], body["penalty_pct"]) == (1, 4_000, PENALTY_PCT)
        deal = client.get(f"/ev-deals/{did}").json()
        assert (deal["status"], deal["energy_charged_wh"], deal["broken_by"]) == ("settled", 4_000, "seller")
        record = h.chain.view().get(EV_DEALS, deal_id(t))
        assert record is not None and deal["station_signature"] == record.station_signature.hex()
        # What `chain ev --node` takes as a node's answers (else "is it a GRIDNET node?"):
        expect(body, HotspotAnswer, "hotspot")
        expect(deal, EvDealAnswer, "deal")
        assert client.get("/ev-hotspots/nowhere", params=by).status_code == 404
        assert client.get(f"/ev-deals/{'00' * 32}").json()["code"] == "NotFound"
        assert client.get("/ev-deals/zz").json()["code"] == "BadRequest"
    h.chain.close()
    cmd = [
        sys.executable,
        "-m",
        "gridnet",
        "chain",
        "ev",
        "--data-dir",
        str(tmp_path / "c"),
        "--hotspot",
        "Depot",
        "--registrant",
        REGISTRY.public_key.hex(),
    ]
    out = subprocess.run([*cmd, "--deal", did, "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["record"]["penalty"] > 0
    text = subprocess.run([*cmd, "--deal", did], capture_output=True, text=True, timeout=120)
    assert "4000 of 10000 Wh charged" in text.stdout and "broken by seller" in text.stdout, (
        text.stdout + text.stderr
    )
    bad = subprocess.run([*cmd, "--deal", "abc"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "give the 32-byte deal id in hex" in bad.stderr
