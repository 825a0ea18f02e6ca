"""Token pools on chain and the transit claims that pay relays.

CreateTokenPool: lock ``amount`` and register a hash chain's final hash and length; each
hash is worth ``amount // length`` (rounded down: the remainder is never paid out and
returns to the owner with everything unclaimed when the pool is reclaimed after expiry).

ClaimTransit: a receiver-signed claim pays the hops of one connection for the units the
claim's token reveals beyond what the pool already paid; the pool remembers the deepest
preimage paid, so no depth is ever paid twice. The claim's fee is an ordinary transaction
fee: one fixed-size claim per connection, whatever the number of datagrams it covers.

ReclaimPool: after expiry the owner takes back what was not paid.
"""

from __future__ import annotations

from msgspec.structs import replace

from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import pool_id
from gridnet.encoding import U63, AddressBytes, HashBytes, Wire
from gridnet.errors import (
    InsufficientBalance,
    MalformedTransaction,
    NotAuthorized,
    PoolAlreadyRedeemed,
    PoolExists,
    PoolExpired,
    PoolNotExpired,
    UnknownPool,
)
from gridnet.identity import IdentityProof
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import ACCOUNTS, IDENTITIES, StateView, register_table
from gridnet.ledger.txs.authority import flagged_by
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.relay.claims import SignedClaim, check_claim_signature, token_digest
from gridnet.relay.hops import hop_shares, verify_hops
from gridnet.relay.tokens import MAX_POOL_LENGTH, check_preimage, check_token_signature
from gridnet.security.roles import FlagTarget
from gridnet.units import Address, Hash32

MAX_CLAIM_UNITS = 100_000
"""Most units one claim may reveal: bounds the hashing a claim costs every validator."""


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
    """Deepest unit already paid."""
    anchor: HashBytes = b"\x00" * 32
    """The preimage at ``redeemed_depth`` (the final hash while nothing is paid)."""
    paid: U63 = 0
    claims: U63 = 0


POOLS = register_table("pools", b"P", TokenPool)


class CreateTokenPool(Wire, frozen=True, tag=16):
    final_hash: HashBytes
    length: U63
    amount: U63
    expiry_height: U63


class ClaimTransit(Wire, frozen=True, tag=17):
    claim: SignedClaim


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
    check_claim_signature(payload.claim)
    claim = payload.claim.claim
    verify_hops(claim.hops, token_digest(claim.token))


def apply_claim(state: StateView, env: BlockEnv, sender: Address, payload: ClaimTransit) -> None:
    claim = payload.claim.claim
    token = claim.token.token
    pool = state.get(POOLS, token.pool)
    if pool is None:
        raise UnknownPool(f"no pool {token.pool.hex()[:16]}")
    if env.height >= pool.expiry_height:
        raise PoolExpired(f"pool {token.pool.hex()[:16]} expired at height {pool.expiry_height}")
    check_token_signature(claim.token, pool.owner)
    if token.depth <= pool.redeemed_depth:
        raise PoolAlreadyRedeemed(
            f"depth {token.depth} was already paid (the pool paid up to depth {pool.redeemed_depth})"
        )
    if token.depth > pool.length or token.depth - pool.redeemed_depth > MAX_CLAIM_UNITS:
        raise MalformedTransaction(f"a claim reveals at most {MAX_CLAIM_UNITS} units within the pool")
    check_preimage(claim.token, pool.anchor, pool.redeemed_depth)
    hops = verify_hops(claim.hops, token_digest(claim.token))
    reward = (token.depth - pool.redeemed_depth) * pool.unit_value
    for hop, share in hop_shares(reward, hops, token.payrate_ppm):
        if share:
            state.credit(hop, share)
    state.put(
        POOLS,
        token.pool,
        replace(
            pool,
            redeemed_depth=token.depth,
            anchor=token.preimage,
            paid=pool.paid + reward,
            claims=pool.claims + 1,
        ),
    )


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


CREATE_POOL_RULES = TxRules(
    CreateTokenPool, validate_create_pool, apply_create_pool, spends=lambda p: p.amount
)
CLAIM_RULES = TxRules(ClaimTransit, validate_claim, apply_claim)
RECLAIM_RULES = TxRules(ReclaimPool, validate_reclaim, apply_reclaim)


class ChainRelayView:
    """What a relay reads from the chain (``relay.datagram.RelayView``) over a state view."""

    def __init__(self, state: StateView) -> None:
        self.state = state

    def pool(self, pool: Hash32) -> TokenPool | None:
        return self.state.get(POOLS, pool)

    def identity_proof(self, address: Address) -> IdentityProof | None:
        record = self.state.get(IDENTITIES, address)
        return None if record is None else record.proof

    def flagged_by(self, address: Address) -> frozenset[Address]:
        return flagged_by(self.state, FlagTarget.IDENTITY, address)
