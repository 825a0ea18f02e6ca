"""Contract terms, signed states, and the payout arithmetic.

Terms name the chain they are for, the buyer, the seller, their meters, the power-line owners
on the path with their fee per kWh, the price per kWh, the delivery intervals and the maximum
energy.
Every party signs the terms (buyer, seller, each line owner). The buyer's device,
after checking the meters' signed readings, signs states: a sequence number and the
cumulative Wh it acknowledges per interval. A later state supersedes an earlier one and
never acknowledges less in an interval (an acknowledgement is not taken back): two
different states with the same sequence number, or a later one acknowledging less in some
interval than an earlier one, prove the buyer equivocated (``is_equivocation``).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.hashing import hash32
from gridnet.crypto.keys import Domain, PrivateKey, SignatureCheck, verify_signature
from gridnet.encoding import U63, AddressBytes, HashBytes, PublicKeyBytes, SignatureBytes, Wire, encode
from gridnet.units import Address, Hash32, Units, energy_cost

MAX_LINE_OWNERS = 8
MAX_SPAN = 96
"""Most intervals one contract may cover (one day)."""


class LineFee(Wire, frozen=True):
    owner: AddressBytes
    """A power-line owner on the path."""
    fee: U63
    """Its fee [base units per kWh delivered]."""


class ContractTerms(Wire, frozen=True):
    chain: HashBytes
    """The id of the chain the parties agree on (its genesis hash): their signatures open the
    contract there only, and the contract's id, which its states name, differs from chain to
    chain (neither terms nor states can be replayed on another chain)."""
    buyer: AddressBytes
    seller: AddressBytes
    buyer_meter: AddressBytes
    seller_meter: AddressBytes
    """Its signed readings bound what the seller can be paid for."""
    line_fees: Annotated[tuple[LineFee, ...], msgspec.Meta(max_length=MAX_LINE_OWNERS)]
    price: U63
    """Paid to the seller [base units per kWh]."""
    first_interval: U63
    last_interval: U63
    max_wh: U63
    """Most energy the contract pays for [Wh]."""
    dispute_window: U63
    """Blocks after the last settlement in which a later state may still supersede it; at
    most the chain's ``max_dispute_window``."""
    nonce: U63
    """Makes otherwise equal terms distinct."""


class PartySignature(Wire, frozen=True):
    public_key: PublicKeyBytes
    signature: SignatureBytes


class SignedTerms(Wire, frozen=True):
    terms: ContractTerms
    signatures: Annotated[tuple[PartySignature, ...], msgspec.Meta(max_length=2 + MAX_LINE_OWNERS)]


class Delivery(Wire, frozen=True):
    interval: U63
    wh: U63
    """Cumulative energy acknowledged in the interval [Wh]."""


class ContractState(Wire, frozen=True):
    contract: HashBytes
    seq: U63
    deliveries: Annotated[tuple[Delivery, ...], msgspec.Meta(max_length=MAX_SPAN)]


class SignedState(Wire, frozen=True):
    state: ContractState
    signature: SignatureBytes
    """The buyer's signature (CONTRACT_STATE domain)."""


def contract_id(terms: ContractTerms) -> Hash32:
    return hash32(encode(terms))


def parties(terms: ContractTerms) -> list[Address]:
    """Everyone who must sign the terms: buyer, seller, then each line owner."""
    return [terms.buyer, terms.seller, *(f.owner for f in terms.line_fees)]


def sign_terms(terms: ContractTerms, key: PrivateKey) -> PartySignature:
    return PartySignature(key.public_key, key.sign(Domain.CONTRACT_TERMS, encode(terms)))


def terms_checks(signed: SignedTerms) -> list[SignatureCheck]:
    """The checks of each party signature the terms carry (``verify_many``)."""
    message = encode(signed.terms)
    return [(Domain.CONTRACT_TERMS, s.public_key, message, s.signature) for s in signed.signatures]


def missing_signers(signed: SignedTerms) -> list[Address]:
    """Parties without a valid signature on the terms (empty when complete)."""
    valid = {address_from_public_key(check[1]) for check in terms_checks(signed) if verify_signature(*check)}
    return [p for p in parties(signed.terms) if p not in valid]


def sign_state(state: ContractState, buyer: PrivateKey) -> SignedState:
    return SignedState(state, buyer.sign(Domain.CONTRACT_STATE, encode(state)))


def state_check(signed: SignedState, buyer_key: bytes) -> SignatureCheck:
    """Checking the buyer's signature on a contract state (``is_signed_by_buyer``'s)."""
    return (Domain.CONTRACT_STATE, buyer_key, encode(signed.state), signed.signature)


def is_signed_by_buyer(signed: SignedState, buyer_key: bytes) -> bool:
    return verify_signature(*state_check(signed, buyer_key))


def acknowledged(state: ContractState) -> dict[int, int]:
    """Interval -> the energy ``state`` acknowledges in it [Wh] (an interval not listed: none)."""
    return {d.interval: d.wh for d in state.deliveries}


def is_well_ordered(state: ContractState) -> bool:
    """Does ``state`` list each interval once, in increasing order (as a settled state must)?"""
    intervals = [d.interval for d in state.deliveries]
    return intervals == sorted(set(intervals))


def is_equivocation(a: ContractState, b: ContractState) -> bool:
    """Do two states of one contract, both signed by its buyer, prove it equivocated: they
    differ under the same sequence number, or the later one (the higher ``seq``) acknowledges
    less energy in some interval than the earlier one (taking back an acknowledgement it
    handed out)? States compared interval by interval must each list an interval once, in
    increasing order. An honest device's states only ever grow, interval by interval."""
    if a.contract != b.contract or a == b:
        return False
    if a.seq == b.seq:
        return True
    earlier, later = (a, b) if a.seq < b.seq else (b, a)
    if not (is_well_ordered(earlier) and is_well_ordered(later)):
        return False
    now = acknowledged(later)
    return any(wh > now.get(interval, 0) for interval, wh in acknowledged(earlier).items())


def deposit(terms: ContractTerms) -> Units:
    """What opening locks from the buyer: the maximum energy at price plus every fee."""
    return energy_cost(terms.max_wh, terms.price) + sum(
        energy_cost(terms.max_wh, f.fee) for f in terms.line_fees
    )


def payouts(terms: ContractTerms, paid_wh_before: int, paid_wh_after: int) -> list[tuple[Address, Units]]:
    """Who is paid what when the acknowledged total grows from ``paid_wh_before`` to
    ``paid_wh_after`` [Wh]. Each payee's amount is the difference of its cumulative
    rounded-down totals, so rounding never pays more than the deposit holds."""
    out = [(terms.seller, energy_cost(paid_wh_after, terms.price) - energy_cost(paid_wh_before, terms.price))]
    for f in terms.line_fees:
        out.append((f.owner, energy_cost(paid_wh_after, f.fee) - energy_cost(paid_wh_before, f.fee)))
    return out
