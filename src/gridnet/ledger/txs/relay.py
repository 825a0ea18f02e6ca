"""Token pools on chain and the transit claims that pay relays.

CreateTokenPool: lock ``amount`` and register a hash chain's final hash and length; each
hash is worth ``amount // length`` (rounded down: the remainder is never paid out and
returns to the owner with everything unclaimed when the pool is reclaimed after expiry).

ClaimTransit: a receiver's signed claim, relays' hop claims, or both. The receiver's claim
proves delivery up to its token's depth (its receipt opens the token's datagram digest) and
moves the pool's delivered depth there; the pool remembers the deepest preimage proven, so
no depth is claimed twice. Each hop claim pays one relay what the sender's hop entries
credit it, less what the pool already paid it, never for a depth not yet delivered nor to a
relay without a registered identity. The fee is an ordinary transaction fee: one claim per
connection and one hop claim per relay and pool, whatever the number of datagrams.

ReclaimPool: after expiry the owner takes back what was not paid. The pool's id stays used
(``pools_reclaimed``): a pool of the same owner and final hash is never created again
(``PoolIdUsed``), since the tokens and claims signed for the old one would be valid against it.

Every signature a transit claim carries is checked for this chain (the block's
``chain_id``): the owner's tokens (``relay.tokens``) and the receiver's claim
(``relay.claims``) are signed over the chain's id, so neither a claim nor a hop claim made on
another chain advances or pays a pool of the same id here (``TokenSignatureInvalid``,
``ClaimSignatureInvalid``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final

import msgspec
from msgspec.structs import replace

from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import pool_id
from gridnet.crypto.keys import Domain, SignatureCheck
from gridnet.encoding import U63, AddressBytes, HashBytes, Wire
from gridnet.errors import (
    HopAlreadyPaid,
    HopNotDelivered,
    InsufficientBalance,
    MalformedTransaction,
    NotAuthorized,
    PoolAlreadyRedeemed,
    PoolExists,
    PoolExpired,
    PoolHopsFull,
    PoolIdUsed,
    PoolNotExpired,
    PoolOverdrawn,
    UnknownPool,
    UnregisteredHop,
)
from gridnet.identity import IdentityProof
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import ACCOUNTS, IDENTITIES, StateView, register_table
from gridnet.ledger.txs.authority import flagged_by
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.relay.claims import (
    MAX_CLAIM_UNITS,
    HopClaim,
    SignedClaim,
    check_claim_signature,
    check_hop_claim,
    check_receipt,
    claim_message,
    hop_payable,
)
from gridnet.relay.hops import MAX_CONNECTION_HOPS
from gridnet.relay.tokens import (
    MAX_POOL_LENGTH,
    SignedToken,
    check_preimage,
    check_token_signature,
    token_message,
)
from gridnet.security.roles import FlagTarget
from gridnet.units import Address, Hash32

if TYPE_CHECKING:
    from gridnet.ledger.chain import Chain

MAX_HOP_CLAIMS: Final = 64
"""Most hop claims one ClaimTransit carries."""


class HopPaid(Wire, frozen=True):
    relay: AddressBytes
    paid: U63
    """What the pool paid this relay so far [base units]."""


class TokenPool(Wire, frozen=True):
    owner: AddressBytes
    final_hash: HashBytes
    length: U63
    amount: U63
    """Locked coin [base units]."""
    unit_value: U63
    """amount // length [base units per hash]."""
    expiry_height: U63
    redeemed_depth: U63 = 0
    """Deepest depth a receiver's claim proved delivered: relays are paid up to it."""
    anchor: HashBytes = b"\x00" * 32
    """The preimage at ``redeemed_depth`` (the final hash while nothing is claimed)."""
    paid: U63 = 0
    """Paid to relays so far [base units]."""
    claims: U63 = 0
    """Receivers' claims so far."""
    hops: tuple[HopPaid, ...] = ()
    """What the pool paid each relay, by address (at most ``MAX_CONNECTION_HOPS``)."""

    def hop_paid(self, relay: Address) -> int:
        return next((h.paid for h in self.hops if h.relay == relay), 0)


class ReclaimedPool(Wire, frozen=True):
    """A reclaimed pool's id, used for good: no live pool (``POOLS`` has none of this id)."""

    reclaimed_at: U63
    """Height of the block that reclaimed it."""


POOLS = register_table("pools", b"P", TokenPool)
RECLAIMED_POOLS = register_table("pools_reclaimed", b"1", ReclaimedPool)


class CreateTokenPool(Wire, frozen=True, tag=16):
    final_hash: HashBytes
    length: U63
    amount: U63
    expiry_height: U63


class ClaimTransit(Wire, frozen=True, tag=17):
    claim: SignedClaim | None
    """A receiver's claim (None when the transaction only carries hop claims)."""
    hops: Annotated[tuple[HopClaim, ...], msgspec.Meta(max_length=MAX_HOP_CLAIMS)] = ()
    """Relays' hop claims, on any pools, at most one per relay and pool."""


class ReclaimPool(Wire, frozen=True, tag=18):
    pool: HashBytes


def validate_create_pool(payload: CreateTokenPool, params: ChainParams) -> None:
    if not 1 <= payload.length <= MAX_POOL_LENGTH:
        raise MalformedTransaction(f"a pool has 1 to {MAX_POOL_LENGTH} hashes")
    if payload.amount < payload.length:
        raise MalformedTransaction("each hash must be worth at least one base unit")


def apply_create_pool(state: StateView, env: BlockEnv, sender: Address, payload: CreateTokenPool) -> None:
    pid = pool_id(sender, payload.final_hash)
    if state.get(POOLS, pid) is not None:
        raise PoolExists(f"pool {pid.hex()[:16]} already exists")
    reclaimed = state.get(RECLAIMED_POOLS, pid)
    if reclaimed is not None:
        raise PoolIdUsed(
            f"pool {pid.hex()[:16]} was reclaimed at height {reclaimed.reclaimed_at} and its id is "
            "used for good (the old pool's tokens and claims would be valid against a new one): "
            "register a new hash chain (another seed)"
        )
    if payload.expiry_height <= env.height:
        raise MalformedTransaction("a pool must expire after the block that creates it")
    acct = state.account(sender)
    if acct.balance < payload.amount:
        raise InsufficientBalance(f"the pool's {payload.amount} exceeds the balance {acct.balance}")
    state.put(ACCOUNTS, sender, replace(acct, balance=acct.balance - payload.amount))
    pool = TokenPool(
        owner=sender,
        final_hash=payload.final_hash,
        length=payload.length,
        amount=payload.amount,
        unit_value=payload.amount // payload.length,
        expiry_height=payload.expiry_height,
        anchor=payload.final_hash,
    )
    state.put(POOLS, pid, pool)


def validate_claim(payload: ClaimTransit, params: ChainParams) -> None:
    if payload.claim is None and not payload.hops:
        raise MalformedTransaction("a transit claim carries a receiver's claim, hop claims, or both")
    if payload.claim is not None:
        check_receipt(payload.claim)  # (its signature is checked for the block's chain: apply)
    claimed: set[tuple[Hash32, Address]] = set()
    for hop in payload.hops:
        key = (hop.token.token.pool, hop.ticket.entry.relay)
        if key in claimed:
            raise MalformedTransaction("two hop claims of one relay on one pool")
        claimed.add(key)
        check_hop_claim(hop)


def _open_pool(state: StateView, env: BlockEnv, pid: Hash32) -> TokenPool:
    pool = state.get(POOLS, pid)
    if pool is None:
        raise UnknownPool(f"no pool {pid.hex()[:16]}")
    if env.height >= pool.expiry_height:
        raise PoolExpired(f"pool {pid.hex()[:16]} expired at height {pool.expiry_height}")
    return pool


def _apply_receiver_claim(pool: TokenPool, signed: SignedClaim, chain_id: Hash32) -> TokenPool:
    """The pool after a receiver's claim proved delivery up to its token's depth."""
    claim = signed.claim
    token = claim.token.token
    check_claim_signature(signed, chain_id)
    check_token_signature(claim.token, pool.owner, chain_id)
    if token.depth <= pool.redeemed_depth:
        raise PoolAlreadyRedeemed(
            f"depth {token.depth} was already claimed (receivers claimed up to {pool.redeemed_depth})"
        )
    if token.depth > pool.length or token.depth - pool.redeemed_depth > MAX_CLAIM_UNITS:
        raise MalformedTransaction(f"a claim reveals at most {MAX_CLAIM_UNITS} units within the pool")
    check_preimage(claim.token, pool.anchor, pool.redeemed_depth)
    return replace(pool, redeemed_depth=token.depth, anchor=token.preimage, claims=pool.claims + 1)


def _apply_hop_claim(
    state: StateView, pool: TokenPool, hop: HopClaim, chain_id: Hash32
) -> tuple[TokenPool, int]:
    """The pool after paying ``hop``, and what it pays the relay [base units]."""
    token = hop.token.token
    relay = hop.ticket.entry.relay
    check_token_signature(hop.token, pool.owner, chain_id)
    if token.depth > pool.redeemed_depth:
        raise HopNotDelivered(
            f"the hop claim's depth {token.depth} is beyond the delivered depth {pool.redeemed_depth}"
        )
    if state.get(IDENTITIES, relay) is None:
        raise UnregisteredHop(
            f"relay {address_to_text(relay)} has no registered identity: it is paid nothing"
        )
    paid = pool.hop_paid(relay)
    due = hop_payable(hop.ticket.entry.credit, pool.unit_value) - paid
    if due <= 0:
        raise HopAlreadyPaid(f"the pool already paid relay {address_to_text(relay)} {paid}, all it credits")
    if pool.paid + due > pool.redeemed_depth * pool.unit_value:
        raise PoolOverdrawn(
            f"paying {due} would pay the pool's relays more than the {pool.redeemed_depth} units delivered"
        )
    others = [h for h in pool.hops if h.relay != relay]
    if len(others) >= MAX_CONNECTION_HOPS:
        raise PoolHopsFull(f"a pool pays at most {MAX_CONNECTION_HOPS} different relays")
    hops = tuple(sorted([*others, HopPaid(relay, paid + due)], key=lambda h: h.relay))
    return replace(pool, paid=pool.paid + due, hops=hops), due


def apply_claim(state: StateView, env: BlockEnv, sender: Address, payload: ClaimTransit) -> None:
    """The receiver's claim first, then each hop claim in order; every rule is checked
    before anything changes."""
    pools: dict[Hash32, TokenPool] = {}
    if payload.claim is not None:
        pid = payload.claim.claim.token.token.pool
        pools[pid] = _apply_receiver_claim(_open_pool(state, env, pid), payload.claim, env.chain_id)
    payments: list[tuple[Address, int]] = []
    for hop in payload.hops:
        pid = hop.token.token.pool
        pool = pools[pid] if pid in pools else _open_pool(state, env, pid)
        pool, due = _apply_hop_claim(state, pool, hop, env.chain_id)
        pools[pid] = pool
        payments.append((hop.ticket.entry.relay, due))
    for pid, pool in pools.items():
        state.put(POOLS, pid, pool)
    for relay, due in payments:
        state.credit(relay, due)


def validate_reclaim(payload: ReclaimPool, params: ChainParams) -> None:
    """Nothing to check without state."""


def apply_reclaim(state: StateView, env: BlockEnv, sender: Address, payload: ReclaimPool) -> None:
    pool = state.get(POOLS, payload.pool)
    if pool is None:
        raise UnknownPool(f"no pool {payload.pool.hex()[:16]}")
    if pool.owner != sender:
        raise NotAuthorized(f"only the pool's owner {address_to_text(pool.owner)} reclaims it")
    if env.height < pool.expiry_height:
        raise PoolNotExpired(f"the pool expires at height {pool.expiry_height}")
    state.credit(sender, pool.amount - pool.paid)
    state.put(POOLS, payload.pool, None)
    state.put(RECLAIMED_POOLS, payload.pool, ReclaimedPool(env.height))


CREATE_POOL_RULES = TxRules(
    CreateTokenPool, validate_create_pool, apply_create_pool, spends=lambda p: p.amount
)


def claim_checks(payload: ClaimTransit, chain_id: Hash32) -> list[SignatureCheck]:
    """The receiver's claim's and the tokens' signatures, for this chain (``TxRules.carried``)."""
    checks: list[SignatureCheck] = []
    tokens: list[SignedToken] = [h.token for h in payload.hops]
    if payload.claim is not None:
        c = payload.claim.claim
        checks.append((Domain.CLAIM, c.receiver_key, claim_message(chain_id, c), payload.claim.signature))
        tokens.insert(0, c.token)
    checks.extend(
        (Domain.TOKEN, t.token.owner_key, token_message(chain_id, t.token), t.signature)
        for t in dict.fromkeys(tokens)
    )
    return checks


CLAIM_RULES = TxRules(
    ClaimTransit, validate_claim, apply_claim, carried=lambda p, chain_id, _sender: claim_checks(p, chain_id)
)
RECLAIM_RULES = TxRules(ReclaimPool, validate_reclaim, apply_reclaim)


class ChainRelayView:
    """What a relay reads from the chain (``relay.datagram.RelayView``) over a state view."""

    def __init__(self, state: StateView, height: int, chain_id: Hash32) -> None:
        self.state = state
        self.height = height
        """The height of the head whose state ``state`` is (a relay refuses a pool whose claims
        could not be mined for long after it, ``relay.datagram.POOL_EXPIRY_MARGIN``)."""
        self.chain_id = chain_id
        """The chain's id (its genesis hash): tokens and claims are signed for it."""

    @classmethod
    def of(cls, chain: Chain) -> ChainRelayView:
        """What a relay reads from ``chain``'s head."""
        return cls(chain.view(), chain.height, chain.chain_id)

    def pool(self, pool: Hash32) -> TokenPool | None:
        return self.state.get(POOLS, pool)

    def identity_proof(self, address: Address) -> IdentityProof | None:
        record = self.state.get(IDENTITIES, address)
        return None if record is None else record.proof

    def hop_paid(self, pool: Hash32, relay: Address) -> int:
        record = self.state.get(POOLS, pool)
        return 0 if record is None else record.hop_paid(relay)

    def flagged_by(self, address: Address) -> frozenset[Address]:
        return flagged_by(self.state, FlagTarget.IDENTITY, address)
