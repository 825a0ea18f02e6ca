"""Fraud proofs against a pool owner's hop entries: the stake of a sender that double-signs.

ReportHopEquivocation: two different tokens one key signed for one pool at one depth.
ReportHopOvercredit: hop entries of distinct relays, under tokens one key signed for one
pool, crediting more than the deepest of those tokens reveals, or more relays than a pool
pays (``MAX_CONNECTION_HOPS``).

Either proof is checked from the signed statements alone and this chain's id (``relay.fraud``:
an honest sender signs neither, whether or not the pool is still on chain; a token signed for
another chain, a test chain's or another chain's pool of the same id, proves nothing here,
``TokenSignatureInvalid``) and costs the signer its stake (``bond.forfeit_stake``: bonded and
unbonding coin, identity revoked).

Anyone may submit one, but the submitter is not what the reward follows: a proof is public
once it waits in a mempool, and a stranger who copied it under its own key and had it mined
first would take the reward from the relay that found the fraud (its own report then
``HopFraudAlreadyReported``). The report names a **beneficiary** the proof itself shows the
signer credited on this pool: for an equivocation, a relay's hop entry (its ticket) under the
hop root of one of the two tokens; for an overcredit, one of the relays whose entries the
proof carries. A tenth of the stake goes to that relay whoever sends the report; a report
naming a relay the proof does not credit is refused (``HopBeneficiaryNotCredited``); a report
naming none still forfeits the stake and destroys it all. A copier who keeps the beneficiary
pays its fee to pay the relay; one who changes it can name only another relay the proof
credits, or none: it gains nothing either way. The offender can still report itself first
naming a puppet it credited, and keep a tenth: as before, nine tenths are destroyed whoever
reports. Each (offender, pool) is punished once (``HOP_FRAUDS``); a proof against an offender
already revoked is accepted like any other and takes what is left at stake: nothing, since a
revoked identity cannot bond again.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.crypto.keys import Domain, SignatureCheck
from gridnet.encoding import U63, AddressBytes, Wire
from gridnet.errors import HopFraudAlreadyReported
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import StateView, register_table
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.bond import forfeit_stake
from gridnet.relay.claims import HopClaim
from gridnet.relay.fraud import (
    check_hop_equivocation,
    check_overcredit,
    equivocation_beneficiary,
    overcredit_beneficiary,
)
from gridnet.relay.hops import MAX_CONNECTION_HOPS, HopTicket
from gridnet.relay.tokens import SignedToken, token_message
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
    beneficiary: HopTicket | None
    """A relay's hop entry, with its Merkle path under the hop root of ``first`` or
    ``second``: that relay receives the reward (None: the reward is destroyed)."""


class ReportHopOvercredit(Wire, frozen=True, tag=20):
    hops: Annotated[tuple[HopClaim, ...], msgspec.Meta(max_length=MAX_OVERCREDIT_ENTRIES)]
    """Hop entries of distinct relays under tokens of one pool, each with its token:
    crediting more than the deepest token reveals, or more relays than a pool pays."""
    beneficiary: AddressBytes | None
    """A relay one of ``hops``' entries credits: it receives the reward (None: the reward is
    destroyed)."""


def _no_check(payload: object, params: ChainParams) -> None:
    """The tokens are signed for a chain (``relay.tokens``): the proofs are checked where the
    chain's id is known (the apply functions)."""


def punish_hop_fraud(
    state: StateView, env: BlockEnv, owner_key: bytes, pool: Hash32, beneficiary: Address | None
) -> None:
    """Forfeit the stake of ``owner_key``'s address for its proven fraud on ``pool``, once; a
    tenth to ``beneficiary`` (None: all destroyed)."""
    offender = address_from_public_key(owner_key)
    key = hop_fraud_key(offender, pool)
    reported = state.get(HOP_FRAUDS, key)
    if reported is not None:
        raise HopFraudAlreadyReported(
            f"the fraud of {address_to_text(offender)} on pool {pool.hex()[:16]} was already "
            f"punished at height {reported.reported_at}"
        )
    forfeit_stake(state, env, offender, beneficiary=beneficiary)
    state.put(HOP_FRAUDS, key, HopFraud(reported_at=env.height))


def apply_report_hop_equivocation(
    state: StateView, env: BlockEnv, sender: Address, payload: ReportHopEquivocation
) -> None:
    """The sender is not rewarded: the relay the proof credits is (``beneficiary``)."""
    check_hop_equivocation(payload.first, payload.second, env.chain_id)
    beneficiary = equivocation_beneficiary(payload.first, payload.second, payload.beneficiary)
    token = payload.first.token
    punish_hop_fraud(state, env, token.owner_key, token.pool, beneficiary)


def apply_report_hop_overcredit(
    state: StateView, env: BlockEnv, sender: Address, payload: ReportHopOvercredit
) -> None:
    """The sender is not rewarded: the relay the proof credits is (``beneficiary``)."""
    check_overcredit(payload.hops, env.chain_id)
    beneficiary = overcredit_beneficiary(payload.hops, payload.beneficiary)
    token = payload.hops[0].token.token
    punish_hop_fraud(state, env, token.owner_key, token.pool, beneficiary)


def _token_checks(tokens: list[SignedToken], chain_id: Hash32) -> list[SignatureCheck]:
    return [
        (Domain.TOKEN, t.token.owner_key, token_message(chain_id, t.token), t.signature)
        for t in dict.fromkeys(tokens)
    ]


def equivocation_checks(payload: ReportHopEquivocation, chain_id: Hash32) -> list[SignatureCheck]:
    """The two tokens' signatures (``TxRules.carried``)."""
    return _token_checks([payload.first, payload.second], chain_id)


def overcredit_checks(payload: ReportHopOvercredit, chain_id: Hash32) -> list[SignatureCheck]:
    """The signatures of the proof's tokens (``TxRules.carried``)."""
    return _token_checks([h.token for h in payload.hops], chain_id)


EQUIVOCATION_RULES = TxRules(
    ReportHopEquivocation,
    _no_check,
    apply_report_hop_equivocation,
    carried=lambda p, chain_id, _sender: equivocation_checks(p, chain_id),
)
OVERCREDIT_RULES = TxRules(
    ReportHopOvercredit,
    _no_check,
    apply_report_hop_overcredit,
    carried=lambda p, chain_id, _sender: overcredit_checks(p, chain_id),
)
