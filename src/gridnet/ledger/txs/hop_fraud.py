"""Fraud proofs against a pool owner's hop entries: the stake of a sender that double-signs.

ReportHopEquivocation: two different tokens one key signed for one pool at one depth.
ReportHopOvercredit: hop entries of distinct relays, under tokens one key signed for one
pool, crediting more than the deepest of those tokens reveals, or more relays than a pool
pays (``MAX_CONNECTION_HOPS``).

Either proof is checked from the signed statements alone (``relay.fraud``: an honest sender
signs neither, whether or not the pool is still on chain) and costs the signer its stake
(``bond.forfeit_stake``: bonded and unbonding coin, identity revoked). Anyone may submit
one; the submitter is the beneficiary (a tenth of the stake; the rest is destroyed): the
statements do not say which relays were wronged, and whoever holds them — a relay refused
with ``PoolOverdrawn`` or ``PoolHopsFull`` reading its rivals' hop claims on chain, the
receiver, any relay of the connection — is who the reward must move. Each (offender, pool) is punished once
(``HOP_FRAUDS``); a proof against an offender already revoked is accepted like any other
and takes what is left at stake: nothing, since a revoked identity cannot bond again.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.encoding import U63, Wire
from gridnet.errors import HopFraudAlreadyReported
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import StateView, register_table
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.bond import forfeit_stake
from gridnet.relay.claims import HopClaim
from gridnet.relay.fraud import check_hop_equivocation, check_overcredit
from gridnet.relay.hops import MAX_CONNECTION_HOPS
from gridnet.relay.tokens import SignedToken
from gridnet.units import Address, Hash32

MAX_OVERCREDIT_ENTRIES: Final = MAX_CONNECTION_HOPS + 1
"""Most entries an overcredit proof carries: every relay a pool may pay, and one refused
(which is also how many relays prove a sender credited more than a pool pays)."""


class HopFraud(Wire, frozen=True):
    """A pool owner's proven fraud on one pool."""

    reported_at: U63
    """Height of the block that proved it."""


HOP_FRAUDS = register_table("hop_frauds", b"H", HopFraud)


def hop_fraud_key(offender: Address, pool: Hash32) -> bytes:
    """``offender (20) || pool (32)``: the signer is part of the key, so a stranger's proof
    against itself on someone else's pool id cannot stand in for the owner's."""
    return offender + pool


class ReportHopEquivocation(Wire, frozen=True, tag=19):
    first: SignedToken
    second: SignedToken
    """Another token the same key signed for the same pool and depth."""


class ReportHopOvercredit(Wire, frozen=True, tag=20):
    hops: Annotated[tuple[HopClaim, ...], msgspec.Meta(max_length=MAX_OVERCREDIT_ENTRIES)]
    """Hop entries of distinct relays under tokens of one pool, each with its token:
    crediting more than the deepest token reveals, or more relays than a pool pays."""


def validate_report_hop_equivocation(payload: ReportHopEquivocation, params: ChainParams) -> None:
    check_hop_equivocation(payload.first, payload.second)


def validate_report_hop_overcredit(payload: ReportHopOvercredit, params: ChainParams) -> None:
    check_overcredit(payload.hops)


def punish_hop_fraud(
    state: StateView, env: BlockEnv, owner_key: bytes, pool: Hash32, reporter: Address
) -> None:
    """Forfeit the stake of ``owner_key``'s address for its proven fraud on ``pool``, once."""
    offender = address_from_public_key(owner_key)
    key = hop_fraud_key(offender, pool)
    reported = state.get(HOP_FRAUDS, key)
    if reported is not None:
        raise HopFraudAlreadyReported(
            f"the fraud of {address_to_text(offender)} on pool {pool.hex()[:16]} was already "
            f"punished at height {reported.reported_at}"
        )
    forfeit_stake(state, env, offender, beneficiary=reporter)
    state.put(HOP_FRAUDS, key, HopFraud(reported_at=env.height))


def apply_report_hop_equivocation(
    state: StateView, env: BlockEnv, sender: Address, payload: ReportHopEquivocation
) -> None:
    token = payload.first.token
    punish_hop_fraud(state, env, token.owner_key, token.pool, reporter=sender)


def apply_report_hop_overcredit(
    state: StateView, env: BlockEnv, sender: Address, payload: ReportHopOvercredit
) -> None:
    token = payload.hops[0].token.token
    punish_hop_fraud(state, env, token.owner_key, token.pool, reporter=sender)


EQUIVOCATION_RULES = TxRules(
    ReportHopEquivocation, validate_report_hop_equivocation, apply_report_hop_equivocation
)
OVERCREDIT_RULES = TxRules(ReportHopOvercredit, validate_report_hop_overcredit, apply_report_hop_overcredit)
