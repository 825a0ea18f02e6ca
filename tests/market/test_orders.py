"""Signed orders: each broken rule raises its named error; encoding round-trips exactly."""

from __future__ import annotations

import msgspec
import pytest

from gridnet.crypto.hashing import hash32
from gridnet.crypto.keys import Domain, PrivateKey
from gridnet.crypto.ops import OPS, snapshot
from gridnet.encoding import decode, encode
from gridnet.errors import (
    InvalidOrder,
    MalformedOrder,
    OrderExpired,
    OrderSignatureInvalid,
    OwnerMismatch,
    WrongType,
)
from gridnet.market.orders import (
    Order,
    Side,
    SignedOrder,
    VerifiedOrder,
    compute_order_id,
    order_id,
    sign_order,
    topic,
    validate_order,
    validate_orders,
)

ALICE = PrivateKey.from_label("orders-alice")
BOB = PrivateKey.from_label("orders-bob")
METER = PrivateKey.from_label("orders-alice-meter").address
CHAIN = hash32(b"orders-chain")
"""The chain whose market the orders are for."""
OTHER_CHAIN = hash32(b"orders-other-chain")
NOW = 1_900_000
"""The interval in which the orders are checked."""


def make_order(key: PrivateKey = ALICE, **changes: object) -> Order:
    order = Order(
        side=Side.OFFER,
        owner=key.address,
        owner_key=key.public_key,
        meter=METER,
        area="north",
        interval=NOW + 4,
        wh=1_500,
        price=21_000,
        expiry=NOW + 2,
        nonce=7,
    )
    return msgspec.structs.replace(order, **changes)


def test_valid_order_passes_with_its_id() -> None:
    signed = sign_order(ALICE, make_order(), CHAIN)
    verified = validate_order(signed, now_interval=NOW, chain_id=CHAIN)
    assert verified == VerifiedOrder(order_id(signed), signed.order)


def test_a_book_is_checked_as_one_batch_with_each_orders_rules() -> None:
    """``validate_orders``: the book's signatures are checked once, ahead, and each order's
    own check is then answered by the batch; a forged order is still refused by name."""
    book = [sign_order(ALICE, make_order(nonce=n), CHAIN) for n in range(3)] + [
        sign_order(BOB, make_order(BOB), CHAIN)
    ]
    before = snapshot()
    verified = validate_orders(book, now_interval=NOW, chain_id=CHAIN)
    done = OPS.since(before)
    assert verified == [validate_order(s, now_interval=NOW, chain_id=CHAIN) for s in book]
    assert (done.verifies, done.verifies_cached) == (4, 4)
    forged = sign_order(BOB, make_order(ALICE), CHAIN)  # names Alice, signed by Bob
    with pytest.raises(OrderSignatureInvalid):
        validate_orders([book[0], forged], now_interval=NOW, chain_id=CHAIN)


def test_last_interval_before_expiry_is_still_valid() -> None:
    signed = sign_order(ALICE, make_order(expiry=NOW, interval=NOW), CHAIN)
    validate_order(signed, now_interval=NOW, chain_id=CHAIN)


def test_order_signed_by_a_foreign_key_is_rejected() -> None:
    # Names Alice as owner (and her key), but Bob signs it.
    signed = sign_order(BOB, make_order(ALICE), CHAIN)
    with pytest.raises(OrderSignatureInvalid):
        validate_order(signed, now_interval=NOW, chain_id=CHAIN)


def test_order_altered_after_signing_is_rejected() -> None:
    signed = sign_order(ALICE, make_order(), CHAIN)
    cheaper = SignedOrder(msgspec.structs.replace(signed.order, price=1), signed.signature)
    with pytest.raises(OrderSignatureInvalid):
        validate_order(cheaper, now_interval=NOW, chain_id=CHAIN)


def test_order_moved_to_another_interval_is_rejected() -> None:
    signed = sign_order(ALICE, make_order(), CHAIN)
    moved = SignedOrder(msgspec.structs.replace(signed.order, interval=NOW + 5), signed.signature)
    with pytest.raises(OrderSignatureInvalid):
        validate_order(moved, now_interval=NOW, chain_id=CHAIN)


def test_order_signed_for_another_chain_is_rejected() -> None:
    """An order signs the chain id: one signed for another chain's market (replayed into this
    chain's order book or hub, where it could end as a contract) does not verify here."""
    foreign = sign_order(ALICE, make_order(), OTHER_CHAIN)
    validate_order(foreign, now_interval=NOW, chain_id=OTHER_CHAIN)  # (valid where it was signed)
    with pytest.raises(OrderSignatureInvalid, match="on this chain"):
        validate_order(foreign, now_interval=NOW, chain_id=CHAIN)
    with pytest.raises(OrderSignatureInvalid):
        validate_orders([sign_order(BOB, make_order(BOB), CHAIN), foreign], now_interval=NOW, chain_id=CHAIN)
    unbound = SignedOrder(foreign.order, ALICE.sign(Domain.ORDER, encode(foreign.order)))  # (no chain)
    with pytest.raises(OrderSignatureInvalid):
        validate_order(unbound, now_interval=NOW, chain_id=CHAIN)


def test_signature_for_another_domain_is_rejected() -> None:
    order = make_order()
    signed = SignedOrder(order, ALICE.sign(Domain.READING, CHAIN + encode(order)))
    with pytest.raises(OrderSignatureInvalid):
        validate_order(signed, now_interval=NOW, chain_id=CHAIN)


def test_owner_that_is_not_the_signing_key_is_rejected() -> None:
    # Alice signs an order that claims Bob's address as owner.
    signed = sign_order(ALICE, make_order(owner=BOB.address), CHAIN)
    with pytest.raises(OwnerMismatch):
        validate_order(signed, now_interval=NOW, chain_id=CHAIN)


def test_expired_order_is_rejected() -> None:
    signed = sign_order(ALICE, make_order(expiry=NOW - 1), CHAIN)
    with pytest.raises(OrderExpired):
        validate_order(signed, now_interval=NOW, chain_id=CHAIN)


def test_order_for_a_past_interval_is_rejected() -> None:
    signed = sign_order(ALICE, make_order(interval=NOW - 1, expiry=NOW + 10), CHAIN)
    with pytest.raises(OrderExpired):
        validate_order(signed, now_interval=NOW, chain_id=CHAIN)


def test_order_without_energy_is_rejected() -> None:
    signed = sign_order(ALICE, make_order(wh=0), CHAIN)
    with pytest.raises(MalformedOrder):
        validate_order(signed, now_interval=NOW, chain_id=CHAIN)


def test_order_with_unknown_side_is_rejected() -> None:
    signed = sign_order(ALICE, make_order(side=2), CHAIN)
    with pytest.raises(MalformedOrder):
        validate_order(signed, now_interval=NOW, chain_id=CHAIN)


@pytest.mark.parametrize("area", ["", "x/y", "a\nFAKE LOG LINE", "\x00", "nörth\u202e", "x" * 33, "_a"])
def test_an_area_that_is_not_a_plain_name_is_malformed(area: str) -> None:
    signed = sign_order(ALICE, make_order(area=area), CHAIN)
    with pytest.raises(MalformedOrder, match="an area has"):
        validate_order(signed, now_interval=NOW, chain_id=CHAIN)


def test_every_order_rule_is_an_invalid_order() -> None:
    for cls in (MalformedOrder, OwnerMismatch, OrderSignatureInvalid, OrderExpired):
        assert issubclass(cls, InvalidOrder)
        assert cls("x").rule == cls.__name__


def test_signed_order_round_trips_through_the_canonical_encoding() -> None:
    signed = sign_order(ALICE, make_order(side=Side.BID), CHAIN)
    raw = encode(signed)
    back = decode(raw, SignedOrder)
    assert back == signed
    assert back.order.side is Side.BID
    assert encode(back) == raw
    validate_order(back, now_interval=NOW, chain_id=CHAIN)


def test_decoding_refuses_an_unknown_side() -> None:
    raw = encode(sign_order(ALICE, make_order(side=5), CHAIN))
    with pytest.raises(WrongType):
        decode(raw, SignedOrder)


def test_decoding_refuses_an_area_too_long() -> None:
    raw = encode(sign_order(ALICE, make_order(area="x" * 33), CHAIN))
    with pytest.raises(WrongType):
        decode(raw, SignedOrder)


def test_id_covers_the_order_not_the_signature() -> None:
    order = make_order()
    a = sign_order(ALICE, order, CHAIN)
    b = SignedOrder(order, bytes(64))
    assert order_id(a) == order_id(b) == compute_order_id(order)
    assert compute_order_id(make_order(nonce=8)) != compute_order_id(order)


def test_topic_names_area_and_interval() -> None:
    assert topic("north", 1_900_004) == "market/north/1900004"
