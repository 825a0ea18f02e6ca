"""The security layer (seed 004's SEL) on chain: advisories, firmware releases, meter status,
and the refusal of vulnerable meters. Each rule broken, asserting its named rejection."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.hashing import hash32
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import (
    AdvisoryNotAuthorized,
    FirmwareReleaseExists,
    IdentityRevoked,
    MalformedTransaction,
    MeterAlreadyRegistered,
    MeterStatusMismatch,
    MeterStatusSignatureInvalid,
    NotAuthorized,
    OrderFromVulnerableMeter,
    OrderOwnerInvalid,
    RevokedMeter,
    StaleMeterStatus,
    UnknownAdvisory,
    UnknownFirmwareRelease,
    UnknownMeter,
    VulnerableMeter,
)
from gridnet.ledger.params import Allocation
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.advisory import ADVISORIES, PublishAdvisory, product_key, vulnerability
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.contract import OpenContract, ReportEquivocation, SettleContract
from gridnet.ledger.txs.firmware import PublishFirmware
from gridnet.ledger.txs.grid import PaySubsidy
from gridnet.ledger.txs.meter import METERS, ReportMeterStatus, RevokeMeter, registration
from gridnet.market.orders import Order, Side, sign_order
from gridnet.meter.certificate import issue_certificate
from gridnet.meter.status import FACTORY_IMAGE, MeterStatus, sign_status
from gridnet.node.messages import OrderMsg
from gridnet.node.node import Node
from gridnet.security.roles import Role
from gridnet.units import UNITS_PER_GNC, interval_of
from tests.helpers import register_identity, test_keys
from tests.ledger.test_contracts import (
    BUYER,
    BUYER_METER,
    MAKER,
    PEOPLE,
    SELLER,
    SELLER_METER,
    Market,
    open_market,
    signed,
    state,
    terms,
)

ADVISOR, GOV, ROGUE = (PrivateKey.from_label(f"sel-{n}") for n in range(3))
OTHER_MAKER = test_keys(1)[0]
FIX = hash32(b"Acme M firmware 2 image")
VENDOR, MODEL = "Acme", "M"  # what open_market's certificates say; they ship firmware "1"


def advisory(
    affected: tuple[str, ...] = ("1",), *, severity: int = 3, fixed_in: str = "2", **kw: object
) -> PublishAdvisory:
    base = PublishAdvisory("GN-2026-0001", VENDOR, MODEL, affected, severity, fixed_in, True)
    return msgspec.structs.replace(base, **kw)  # type: ignore[arg-type]


def status(
    meter: PrivateKey, seq: int, firmware: str = "2", image: bytes = FIX, **kw: object
) -> ReportMeterStatus:
    base = MeterStatus(meter.address, seq, VENDOR, MODEL, firmware, image)
    return ReportMeterStatus(sign_status(meter, msgspec.structs.replace(base, **kw)))  # type: ignore[arg-type]


def sel_market(
    path: Path, min_severity: int = 1, also_named: tuple[PrivateKey, ...] = (), **params: object
) -> Market:
    """``open_market`` with an advisory authority named in the genesis and registered, a
    rogue that registered the advisory role without being named, and a government."""
    extra = (ADVISOR, GOV, ROGUE, OTHER_MAKER)
    m = open_market(
        path,
        allocations=tuple(Allocation(k.address, 1_000 * UNITS_PER_GNC) for k in PEOPLE + extra),
        advisory_authorities=(ADVISOR.address, *(k.address for k in also_named)),
        advisory_min_severity=min_severity,
        **params,
    )
    for k in extra:
        m.nonce[k.address] = 0
    m.mine(*(m.tx(k, register_identity(m.chain, k).payload) for k in extra))
    m.mine(
        m.tx(ADVISOR, RegisterAuthority(int(Role.ADVISORY), "Meter CERT")),
        m.tx(ROGUE, RegisterAuthority(int(Role.ADVISORY), "Self-declared CERT")),
        m.tx(GOV, RegisterAuthority(int(Role.GOVERNMENT), "Ministry")),
        m.tx(OTHER_MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Copycat Meters")),
    )
    return m


@pytest.fixture
def market(tmp_path: Path) -> Market:
    return sel_market(tmp_path / "c")


def vulnerable(m: Market, meter: PrivateKey) -> bool:
    view = m.chain.view()
    record = view.get(METERS, meter.address)
    assert record is not None
    return vulnerability(view, m.chain.params, record) is not None


def stateless(m: Market, key: PrivateKey, payload: object) -> None:
    validate_transaction(m.pending(key, payload), m.chain.params, m.chain.chain_id)  # type: ignore[arg-type]


# --- advisories --------------------------------------------------------------------------


def test_only_an_authority_the_genesis_names_publishes_advisories(market: Market) -> None:
    assert isinstance(market.refused(ROGUE, advisory()), AdvisoryNotAuthorized)  # has the role only
    assert isinstance(market.refused(MAKER, advisory()), AdvisoryNotAuthorized)  # another role
    market.mine(market.tx(ADVISOR, advisory()))
    assert vulnerable(market, SELLER_METER.key) and vulnerable(market, BUYER_METER.key)


def test_an_advisory_named_in_the_genesis_needs_the_registered_role(tmp_path: Path) -> None:
    m = open_market(tmp_path / "c", advisory_authorities=(SELLER.address,))  # named, never registered
    assert isinstance(m.refused(SELLER, advisory()), AdvisoryNotAuthorized)


def test_an_advisory_authority_whose_fraud_was_proven_publishes_no_more(tmp_path: Path) -> None:
    m = sel_market(tmp_path / "c", also_named=(BUYER,))
    m.mine(m.tx(BUYER, RegisterAuthority(int(Role.ADVISORY), "Buyer's CERT")))
    t = terms(chain=m.chain.chain_id)
    m.mine(m.tx(BUYER, OpenContract(signed(t))))
    m.mine(m.tx(SELLER, ReportEquivocation(state(t, 1, 100), state(t, 1, 200))))  # the buyer is revoked
    assert isinstance(m.refused(BUYER, advisory()), IdentityRevoked)


def test_malformed_advisories(market: Market) -> None:
    for bad in (
        advisory(()),
        advisory(severity=0),
        advisory(severity=5),
        advisory(("1", "1")),
        advisory(("1", "2")),
    ):
        with pytest.raises(MalformedTransaction):
            stateless(market, ADVISOR, bad)


def test_an_advisory_is_replaced_by_its_id_and_withdrawn(market: Market) -> None:
    market.mine(market.tx(ADVISOR, advisory()))
    market.mine(market.tx(ADVISOR, advisory(("0.9",))))  # same id: replaces, no longer lists "1"
    found = market.chain.view().get(ADVISORIES, product_key(VENDOR, MODEL))
    assert found is not None and [a.affected for a in found.entries] == [("0.9",)]
    assert not vulnerable(market, SELLER_METER.key)
    market.mine(market.tx(ADVISOR, advisory(id="GN-2026-0002")))
    assert vulnerable(market, SELLER_METER.key)
    market.mine(market.tx(ADVISOR, advisory(id="GN-2026-0002", affected=(), active=False)))
    assert not vulnerable(market, SELLER_METER.key)
    assert isinstance(market.refused(ADVISOR, advisory(id="GN-2026-0002", active=False)), UnknownAdvisory)


def test_an_advisory_below_the_chains_minimum_severity_bans_nothing(tmp_path: Path) -> None:
    m = sel_market(tmp_path / "c", min_severity=3)
    m.mine(m.tx(ADVISOR, advisory(severity=2)))
    assert not vulnerable(m, SELLER_METER.key)
    m.mine(m.tx(ADVISOR, advisory(severity=3, id="GN-2026-0002")))
    assert vulnerable(m, SELLER_METER.key)


# --- firmware releases and meter status ----------------------------------------------------


def test_only_a_manufacturer_publishes_firmware_once_per_version(market: Market) -> None:
    release = PublishFirmware(VENDOR, MODEL, "2", FIX)
    assert isinstance(market.refused(ADVISOR, release), NotAuthorized)
    with pytest.raises(MalformedTransaction):
        stateless(market, MAKER, PublishFirmware(VENDOR, MODEL, "2", FACTORY_IMAGE))
    market.mine(market.tx(MAKER, release))
    again = PublishFirmware(VENDOR, MODEL, "2", hash32(b"another image"))
    assert isinstance(market.refused(MAKER, again), FirmwareReleaseExists)


def test_a_status_rules(market: Market) -> None:
    key = SELLER_METER.key
    market.mine(market.tx(MAKER, PublishFirmware(VENDOR, MODEL, "2", FIX)))
    market.mine(market.tx(OTHER_MAKER, PublishFirmware(VENDOR, MODEL, "3", hash32(b"copycat"))))
    unknown = PrivateKey.from_label("never-registered")
    assert isinstance(market.refused(SELLER, status(unknown, 1)), UnknownMeter)
    forged = ReportMeterStatus(sign_status(BUYER_METER.key, status(key, 1).status.status))
    assert isinstance(market.refused(SELLER, forged), MeterStatusSignatureInvalid)
    assert isinstance(market.refused(SELLER, status(key, 1, model="M2")), MeterStatusMismatch)
    assert isinstance(market.refused(SELLER, status(key, 0)), StaleMeterStatus)  # registration's number
    never = status(key, 1, firmware="9", image=hash32(b"nine"))
    assert isinstance(market.refused(SELLER, never), UnknownFirmwareRelease)
    wrong_image = status(key, 1, image=hash32(b"tampered image"))
    assert isinstance(market.refused(SELLER, wrong_image), UnknownFirmwareRelease)
    others = status(key, 1, firmware="3", image=hash32(b"copycat"))  # not its own manufacturer's
    assert isinstance(market.refused(SELLER, others), UnknownFirmwareRelease)
    back_to_factory = status(key, 1, firmware="1", image=FACTORY_IMAGE)  # only at registration
    assert isinstance(market.refused(SELLER, back_to_factory), UnknownFirmwareRelease)
    market.mine(market.tx(BUYER, status(key, 1)))  # anyone may submit the meter's status
    record = market.chain.view().get(METERS, key.address)
    assert record is not None and (record.firmware, record.image, record.status_seq) == ("2", FIX, 1)
    assert isinstance(market.refused(SELLER, status(key, 1)), StaleMeterStatus)  # replayed


def test_a_revoked_meter_reports_no_status(market: Market) -> None:
    market.mine(market.tx(MAKER, PublishFirmware(VENDOR, MODEL, "2", FIX)))
    market.mine(market.tx(MAKER, RevokeMeter(SELLER_METER.key.address)))
    assert isinstance(market.refused(SELLER, status(SELLER_METER.key, 1)), RevokedMeter)


def test_registration_status_rules(market: Market) -> None:
    meter = PrivateKey.from_label("new-meter")
    cert = issue_certificate(MAKER, meter.public_key, vendor=VENDOR, model=MODEL, firmware="1", serial="n")
    payload = registration(meter, cert, "north", SELLER.address, market.chain.chain_id)
    foreign = msgspec.structs.replace(payload, status=sign_status(BUYER_METER.key, payload.status.status))
    with pytest.raises(MeterStatusSignatureInvalid):
        stateless(market, SELLER, foreign)
    for change in ({"model": "M9"}, {"meter": BUYER_METER.meter_id}):
        moved = msgspec.structs.replace(payload.status.status, **change)  # type: ignore[arg-type]
        with pytest.raises(MeterStatusMismatch):
            stateless(market, SELLER, msgspec.structs.replace(payload, status=sign_status(meter, moved)))
    # A meter that installed releases before it registered here (elsewhere) registers with the
    # status it signs now, at its own status number: the chain keeps that number.
    now = sign_status(meter, MeterStatus(meter.address, 2, VENDOR, MODEL, "2", FIX))
    updated = registration(meter, cert, "north", SELLER.address, market.chain.chain_id, now)
    assert isinstance(market.refused(SELLER, updated), UnknownFirmwareRelease)  # not published here
    market.mine(market.tx(MAKER, PublishFirmware(VENDOR, MODEL, "2", FIX)))
    market.mine(market.tx(SELLER, updated))
    record = market.chain.view().get(METERS, meter.address)
    assert record is not None and (record.firmware, record.image, record.status_seq) == ("2", FIX, 2)
    for seq in (1, 2):  # its statuses up to the one it registered with are stale here
        assert isinstance(market.refused(BUYER, status(meter, seq)), StaleMeterStatus)


def test_no_registration_takes_a_meter_below_a_status_number_the_chain_recorded(market: Market) -> None:
    """Before its registration the chain records no status of a meter (one reported is
    ``UnknownMeter``); once registered, its entry stays for good, revoked or not (nothing
    deletes one), so a second registration, whatever status it carries, is
    ``MeterAlreadyRegistered``: no registration records a number below one the chain holds."""
    meter = PrivateKey.from_label("updated-meter")
    cert = issue_certificate(MAKER, meter.public_key, vendor=VENDOR, model=MODEL, firmware="1", serial="u")
    market.mine(market.tx(MAKER, PublishFirmware(VENDOR, MODEL, "2", FIX)))
    assert isinstance(market.refused(BUYER, status(meter, 2)), UnknownMeter)
    now = sign_status(meter, MeterStatus(meter.address, 2, VENDOR, MODEL, "2", FIX))
    updated = registration(meter, cert, "north", SELLER.address, market.chain.chain_id, now)
    market.mine(market.tx(SELLER, updated))
    factory = registration(meter, cert, "north", SELLER.address, market.chain.chain_id)  # its status 0
    assert isinstance(market.refused(SELLER, factory), MeterAlreadyRegistered)
    market.mine(market.tx(MAKER, RevokeMeter(meter.address)))
    assert isinstance(market.refused(SELLER, factory), MeterAlreadyRegistered)
    record = market.chain.view().get(METERS, meter.address)
    assert record is not None and record.revoked and (record.status_seq, record.image) == (2, FIX)


# --- what a vulnerable meter is refused -------------------------------------------------------


def test_no_contract_opens_with_a_vulnerable_meter_on_either_side(market: Market) -> None:
    market.mine(market.tx(ADVISOR, advisory()))
    assert isinstance(
        market.refused(BUYER, OpenContract(signed(terms(chain=market.chain.chain_id)))), VulnerableMeter
    )
    market.mine(market.tx(MAKER, PublishFirmware(VENDOR, MODEL, "2", FIX)))
    market.mine(market.tx(SELLER, status(SELLER_METER.key, 1)))  # the seller's meter is fixed
    assert isinstance(
        market.refused(BUYER, OpenContract(signed(terms(chain=market.chain.chain_id)))), VulnerableMeter
    )  # buyer's not
    market.mine(market.tx(BUYER, status(BUYER_METER.key, 1)))
    market.mine(market.tx(BUYER, OpenContract(signed(terms(chain=market.chain.chain_id)))))


def test_no_contract_opens_with_a_revoked_meter(market: Market) -> None:
    """A revoked meter records no reading (``RevokedMeter``): a contract with it could never be
    settled, and the buyer's deposit stayed locked until its close. It opens none now."""
    market.mine(market.tx(MAKER, RevokeMeter(SELLER_METER.key.address)))
    opening = OpenContract(signed(terms(chain=market.chain.chain_id)))
    assert isinstance(market.refused(BUYER, opening), RevokedMeter)


def test_settlement_waits_until_the_meter_is_fixed(market: Market) -> None:
    t = terms(chain=market.chain.chain_id)
    market.mine(market.tx(BUYER, OpenContract(signed(t))))
    market.mine(market.tx(ADVISOR, advisory(fixed_in="")))  # no fix known yet
    assert isinstance(market.refused(SELLER, SettleContract(state(t, 1, 500))), VulnerableMeter)
    market.mine(market.tx(MAKER, PublishFirmware(VENDOR, MODEL, "1.1", hash32(b"still bad"))))
    market.mine(market.tx(ADVISOR, advisory(("1", "1.1"), fixed_in="2")))
    market.mine(
        market.tx(SELLER, status(SELLER_METER.key, 1, firmware="1.1", image=hash32(b"still bad"))),
        market.tx(BUYER, status(BUYER_METER.key, 1, firmware="1.1", image=hash32(b"still bad"))),
    )
    assert isinstance(market.refused(SELLER, SettleContract(state(t, 1, 500))), VulnerableMeter)
    market.mine(market.tx(MAKER, PublishFirmware(VENDOR, MODEL, "2", FIX)))
    market.mine(market.tx(SELLER, status(SELLER_METER.key, 2)), market.tx(BUYER, status(BUYER_METER.key, 2)))
    before = market.chain.account(SELLER.address).balance
    market.mine(market.tx(BUYER, SettleContract(state(t, 1, 500))))
    assert market.chain.account(SELLER.address).balance > before


def test_no_subsidy_for_a_vulnerable_meter(market: Market) -> None:
    market.mine(market.tx(ADVISOR, advisory()))
    subsidy = PaySubsidy(SELLER_METER.meter_id, (terms().first_interval,), 1_000_000)
    assert isinstance(market.refused(GOV, subsidy), VulnerableMeter)
    market.mine(market.tx(ADVISOR, advisory(active=False)))
    market.mine(market.tx(GOV, subsidy))


def test_a_node_leaves_a_vulnerable_meters_orders_out_of_its_book(market: Market) -> None:
    node = Node("n", market.chain)
    now = market.chain.head.header.timestamp
    interval = interval_of(now) + 2
    offer = Order(
        Side.OFFER,
        SELLER.address,
        SELLER.public_key,
        SELLER_METER.meter_id,
        "north",
        interval,
        500,
        1,
        interval,
        0,
    )
    bid = Order(
        Side.BID,
        BUYER.address,
        BUYER.public_key,
        BUYER_METER.meter_id,
        "north",
        interval,
        500,
        9,
        interval,
        0,
    )
    market.mine(market.tx(ADVISOR, advisory()))
    for order, key in ((offer, SELLER), (bid, BUYER)):
        with pytest.raises(OrderFromVulnerableMeter):
            node.post_order(sign_order(key, order, market.chain.chain_id), now)
    node.add_peer("p")
    assert node.handle("p", OrderMsg(sign_order(SELLER, offer, market.chain.chain_id)), now) == []
    assert node.stats.peer_faults.get("p", 0) == 0 and len(node.book) == 0  # not the peer's fault
    market.mine(market.tx(MAKER, PublishFirmware(VENDOR, MODEL, "2", FIX)))
    market.mine(market.tx(SELLER, status(SELLER_METER.key, 1)))
    node.post_order(sign_order(SELLER, offer, market.chain.chain_id), now)
    assert len(node.book) == 1


def test_a_node_takes_no_order_of_a_revoked_meter_and_holds_none_from_a_peer(market: Market) -> None:
    """The node's book applies the chain's order rules: a revoked meter's order is refused
    (``RevokedMeter``), from a user or a peer; a peer's is counted, not held for a newer head
    (none makes it pass: revocation is for good), and no fault of the peer (it may not know of
    the revocation yet)."""
    node = Node("n", market.chain)
    now = market.chain.head.header.timestamp
    interval = interval_of(now) + 2
    offer = Order(
        Side.OFFER, SELLER.address, SELLER.public_key, SELLER_METER.meter_id, "north", interval, 500, 1,
        interval, 0,
    )  # fmt: skip
    market.mine(market.tx(MAKER, RevokeMeter(SELLER_METER.key.address)))
    with pytest.raises(OrderOwnerInvalid) as info:
        node.post_order(sign_order(SELLER, offer, market.chain.chain_id), now)
    assert info.value.rule == "RevokedMeter"
    node.add_peer("p")
    assert node.handle("p", OrderMsg(sign_order(SELLER, offer, market.chain.chain_id)), now) == []
    assert node.stats.orders_refused == {"RevokedMeter": 1} and len(node.held_orders) == 0
    assert node.stats.peer_faults.get("p", 0) == 0 and len(node.book) == 0
