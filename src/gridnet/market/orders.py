"""Signed bids and offers: the off-chain market's orders and their stateless rules.

Orders are signed by their owners, published on a topic per area and delivery interval
(:func:`topic`) and never stored on chain. An order's id is the digest of the order alone,
not of its signature: an owner can make many valid signatures of one order, and they are
all the same order (the ``nonce`` field is what makes two otherwise equal orders distinct).

An order is for one chain's market: its owner signs the chain id, then the encoded order
(``Domain.ORDER``), as every chain-bound signature in GRIDNET, and every check takes the chain's
id (a node's order book, a hub clearing the book). An order that named no chain was valid in
any chain's market where its owner trades, and a hub there could clear it into a contract its
owner's agent then signs (``OrderSignatureInvalid`` now: the signature is not for this chain).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.hashing import order_digest
from gridnet.crypto.keys import (
    Domain,
    PrivateKey,
    SignatureCache,
    SignatureCheck,
    verify_many,
    verify_signature,
)
from gridnet.encoding import (
    U63,
    AddressBytes,
    Area,
    PublicKeyBytes,
    SignatureBytes,
    Wire,
    area_problem,
    encode,
)
from gridnet.errors import InvalidOrder, MalformedOrder, OrderExpired, OrderSignatureInvalid, OwnerMismatch
from gridnet.units import PUBLIC_KEY_BYTES, Hash32, Interval


class Side(enum.IntEnum):
    """Which way an order trades; encoded as its integer value."""

    BID = 0
    """Buy energy."""
    OFFER = 1
    """Sell energy."""


class Order(Wire, frozen=True):
    side: Side
    """BID (0, buy) or OFFER (1, sell)."""
    owner: AddressBytes
    """The trader's address (the address of ``owner_key``)."""
    owner_key: PublicKeyBytes
    """The trader's Ed25519 public key; it signs the order."""
    meter: AddressBytes
    """For an offer, the selling meter's id; for a bid, the buyer's meter."""
    area: Area
    """The market area the energy is delivered in."""
    interval: U63
    """Delivery interval [15-minute index since the Unix epoch]."""
    wh: U63
    """Energy to buy or sell [Wh]; more than zero."""
    price: U63
    """A bid's maximum or an offer's minimum price [base units / kWh]."""
    expiry: U63
    """Last interval in which the order may be matched [interval index]."""
    nonce: U63
    """Chosen by the owner so that otherwise identical orders stay distinct."""


class SignedOrder(Wire, frozen=True):
    order: Order
    signature: SignatureBytes
    """The owner's signature (ORDER domain) of the chain id, then the encoded order."""


class VerifiedOrder(NamedTuple):
    """An order that passed :func:`validate_order`, with its id (what auctions take)."""

    id: Hash32
    order: Order


def order_message(chain_id: Hash32, order: Order) -> bytes:
    """What an order's owner signs: the chain id, then the encoded order."""
    return chain_id + encode(order)


def sign_order(key: PrivateKey, order: Order, chain_id: Hash32) -> SignedOrder:
    """Sign ``order`` with ``key`` (which should be the key named by ``order.owner_key``) for
    the market of chain ``chain_id``."""
    return SignedOrder(order, key.sign(Domain.ORDER, order_message(chain_id, order)))


def compute_order_id(order: Order) -> Hash32:
    """The id of an order: the digest of its canonical encoding."""
    return order_digest(encode(order))


def order_id(signed: SignedOrder) -> Hash32:
    """The id of a signed order (its signature is not part of it)."""
    return compute_order_id(signed.order)


def topic(area: str, interval: Interval) -> str:
    """The publication topic of the orders for ``area`` and delivery ``interval``."""
    return f"market/{area}/{interval}"


def order_check(signed: SignedOrder, chain_id: Hash32) -> SignatureCheck:
    """Checking an order's signature for chain ``chain_id`` (``validate_order``'s)."""
    return (Domain.ORDER, signed.order.owner_key, order_message(chain_id, signed.order), signed.signature)


def validate_orders(
    book: Sequence[SignedOrder], *, now_interval: Interval, chain_id: Hash32
) -> list[VerifiedOrder]:
    """``validate_order`` of each order of ``book``, their signatures checked first as one
    batch on all cores (a signature cache of this call's then answers each order's own
    check); raises the first refused order's named rule."""
    with SignatureCache().active():
        verify_many([order_check(signed, chain_id) for signed in book])
        return [validate_order(signed, now_interval=now_interval, chain_id=chain_id) for signed in book]


def admit_orders(
    book: Sequence[SignedOrder], *, now_interval: Interval, chain_id: Hash32
) -> tuple[list[VerifiedOrder], list[InvalidOrder]]:
    """``validate_orders`` that keeps going: the orders of ``book`` that pass, in order, and
    the rule each other one broke (a hub clears what passes; one order signed for another
    chain, or forged, does not stop the auction)."""
    kept: list[VerifiedOrder] = []
    refused: list[InvalidOrder] = []
    with SignatureCache().active():
        verify_many([order_check(signed, chain_id) for signed in book])
        for signed in book:
            try:
                kept.append(validate_order(signed, now_interval=now_interval, chain_id=chain_id))
            except InvalidOrder as exc:
                refused.append(exc)
    return kept, refused


def validate_order(signed: SignedOrder, *, now_interval: Interval, chain_id: Hash32) -> VerifiedOrder:
    """Every rule an order must follow to be matched in ``now_interval`` in the market of chain
    ``chain_id``; returns it with its id, or raises the named :class:`~gridnet.errors.InvalidOrder`."""
    order = signed.order
    oid = compute_order_id(order)
    # Stateless shape rules (a decoded order already meets its field ranges).
    if order.side not in (Side.BID, Side.OFFER):
        raise MalformedOrder(f"order {oid.hex()[:16]}: side {order.side!r} is neither 0 (bid) nor 1 (offer)")
    if order.wh <= 0:
        raise MalformedOrder(f"order {oid.hex()[:16]}: {order.wh} Wh; an order must trade some energy")
    if (problem := area_problem(order.area)) is not None:
        raise MalformedOrder(f"order {oid.hex()[:16]}: {order.area!r}: {problem}")
    if len(order.owner_key) != PUBLIC_KEY_BYTES:
        raise MalformedOrder(f"order {oid.hex()[:16]}: owner key is not {PUBLIC_KEY_BYTES} bytes")
    # The owner is the key that signs, and the signature covers this exact order.
    if address_from_public_key(order.owner_key) != order.owner:
        raise OwnerMismatch(f"order {oid.hex()[:16]}: the owner address is not the address of its key")
    if not verify_signature(*order_check(signed, chain_id)):
        raise OrderSignatureInvalid(
            f"order {oid.hex()[:16]}: signature does not verify for the owner key on this chain "
            "(an order is signed for one chain's market)"
        )
    # Time rules: matching happens no later than the expiry and the delivery interval.
    if now_interval > order.expiry:
        raise OrderExpired(
            f"order {oid.hex()[:16]}: expired at interval {order.expiry}, now is {now_interval}"
        )
    if now_interval > order.interval:
        raise OrderExpired(
            f"order {oid.hex()[:16]}: delivery interval {order.interval} is already past (now {now_interval})"
        )
    return VerifiedOrder(oid, order)
