"""What a pool owner's signatures prove against it: double-signed hop entries.

An honest sender keeps one :class:`~gridnet.relay.hops.HopBook` per pool, whose depth only
grows: it signs **one token per depth of a pool**, and the credits its hop entries give
each relay never decrease from one token to a deeper one, nor ever sum to more than the
units revealed, and its entries name at most ``MAX_CONNECTION_HOPS`` relays in all. Two
kinds of signed statements break that, and each is a proof anyone can check from the
statements alone and the chain's id (no chain state): a token is signed for one chain
(``relay.tokens``), so only tokens signed for this chain prove anything here, and a proof
needs no pool on chain (the owner may have reclaimed it since; tokens of a pool never
created here but signed for this chain are still the owner's word on this chain):

* **Equivocation**: two different tokens of the same pool at the same depth, signed by one
  key (:func:`check_hop_equivocation`). The depth fixes the preimage and the units
  committed; the tokens differ in the datagram they pay for or in the hop root (the
  entries) they commit to. This is how a sender credits a puppet of its own with units it
  already credited honest relays with, leaving them ``PoolOverdrawn``.
* **Overcredit**: hop entries of distinct relays, each under a token of the same pool
  signed by one key, whose credits sum to more than the units the deepest of those tokens
  reveals, or that name more relays than a pool pays (:func:`check_overcredit`). Each
  relay's credit under a token is at most its credit under the deepest token (credits
  never decrease), and those sum to at most the deepest depth's units; so the sum proves
  the sender promised more than it revealed, whichever depths it signed (a puppet credited
  under a depth no honest datagram used, too). Every ``PoolOverdrawn`` refusal has such a
  proof: the entries the pool paid (in the hop claims on chain) with the refused relay's
  own.

  Or entries of more distinct relays than a pool pays (``MAX_CONNECTION_HOPS``), whatever
  their credits (:func:`excess_relays`): an honest book credits at most that many relays
  (``TooManyHops``) and keeps every relay it ever credited, so all its tokens' entries name
  at most that many. This is how a sender fills its pool's relay places with puppets
  credited a base unit each under a depth no honest datagram used, before the honest relays
  claim, leaving them ``PoolHopsFull`` with every credit within the units revealed. Every
  ``PoolHopsFull`` refusal has such a proof: the entries of the relays the pool paid (in the
  hop claims on chain) with the refused relay's own.

The chain's side (``ledger/txs/hop_fraud.py``) forfeits the signer's stake. Its reward goes
to the relay the proof shows the signer credited (:func:`equivocation_beneficiary`,
:func:`overcredit_beneficiary`), whoever submits the proof.
"""

from __future__ import annotations

from collections.abc import Sequence

from gridnet.crypto.address import address_to_text
from gridnet.errors import (
    HopBeneficiaryNotCredited,
    NotHopEquivocation,
    NotOvercredit,
    TokenSignatureInvalid,
    TokenSignersDiffer,
)
from gridnet.ledger.merkle import verify_merkle_proof
from gridnet.relay.claims import HopClaim, check_hop_claim
from gridnet.relay.hops import MAX_CONNECTION_HOPS, HopTicket, hop_id
from gridnet.relay.tokens import PPM, SignedToken, token_signed
from gridnet.units import Address, Hash32


def check_token_signed(signed: SignedToken, chain_id: Hash32) -> None:
    """The token is signed, for the chain ``chain_id``, by the key it names (whoever that
    is): a token signed for another chain proves nothing here."""
    if not token_signed(signed, chain_id):
        raise TokenSignatureInvalid(
            f"the token of depth {signed.token.depth} is not signed for this chain by the key it "
            "names: it proves nothing"
        )


def check_hop_equivocation(first: SignedToken, second: SignedToken, chain_id: Hash32) -> None:
    """``first`` and ``second`` are two different tokens one key signed for one pool and
    one depth on the chain ``chain_id``; raises the named rule they break."""
    a, b = first.token, second.token
    if a.owner_key != b.owner_key:
        raise TokenSignersDiffer("the two tokens are signed by different keys: neither equivocated")
    if a.pool != b.pool or a.depth != b.depth:
        raise NotHopEquivocation(
            f"tokens of depths {a.depth} and {b.depth} (or of two pools) do not conflict: "
            "an equivocation is two tokens of one pool at one depth"
        )
    if a == b:
        raise NotHopEquivocation("the two tokens are the same token (a signature may differ, not the token)")
    check_token_signed(first, chain_id)
    check_token_signed(second, chain_id)


def equivocation_beneficiary(
    first: SignedToken, second: SignedToken, ticket: HopTicket | None
) -> Address | None:
    """The relay an equivocation proof rewards: the one ``ticket``'s entry credits (more
    than nothing) under the hop root of ``first`` or ``second`` (None: no one, the reward is
    destroyed); raises :class:`HopBeneficiaryNotCredited` for an entry under neither."""
    if ticket is None:
        return None
    entry = ticket.entry
    leaf = hop_id(entry)
    under = any(verify_merkle_proof(t.token.hop_root, leaf, ticket.proof) for t in (first, second))
    if not under or entry.credit == 0:
        raise HopBeneficiaryNotCredited(
            f"the beneficiary {address_to_text(entry.relay)} has no entry crediting it under the hop "
            "root of either token: the proof does not show it was credited on this pool"
        )
    return entry.relay


def overcredit_beneficiary(hops: Sequence[HopClaim], beneficiary: Address | None) -> Address | None:
    """The relay an overcredit proof rewards: ``beneficiary``, which one of the proof's
    entries must credit (more than nothing); None: no one, the reward is destroyed."""
    if beneficiary is None:
        return None
    if not any(h.ticket.entry.relay == beneficiary and h.ticket.entry.credit > 0 for h in hops):
        raise HopBeneficiaryNotCredited(
            f"the beneficiary {address_to_text(beneficiary)} has no entry crediting it in the proof"
        )
    return beneficiary


def overcredit(hops: Sequence[HopClaim]) -> int:
    """How far the entries of ``hops`` credit beyond the units of their deepest token
    [millionths of a pool unit]; positive only for a sender's fraud."""
    credited = sum(h.ticket.entry.credit for h in hops)
    return credited - max(h.token.token.depth for h in hops) * PPM


def excess_relays(hops: Sequence[HopClaim]) -> int:
    """How many more distinct relays the entries of ``hops`` credit than one pool pays;
    positive only for a sender's fraud."""
    return len({h.ticket.entry.relay for h in hops}) - MAX_CONNECTION_HOPS


def check_overcredit(hops: Sequence[HopClaim], chain_id: Hash32) -> None:
    """``hops`` (hop entries under tokens signed for the chain ``chain_id``) prove that one
    key credited more than it revealed on one pool, or more relays than one pool pays;
    raises the named rule they break."""
    if not hops:
        raise NotOvercredit("an overcredit proof needs at least one hop entry")
    owner_key, pool = hops[0].token.token.owner_key, hops[0].token.token.pool
    if any(h.token.token.owner_key != owner_key for h in hops):
        raise TokenSignersDiffer("the tokens are signed by different keys: no one key promised it all")
    if any(h.token.token.pool != pool for h in hops):
        raise NotOvercredit("the entries are of more than one pool: each pool's units are its own")
    relays = [h.ticket.entry.relay for h in hops]
    if len(set(relays)) != len(relays):
        raise NotOvercredit("a relay appears twice: the proof counts each relay's credit once")
    for token in {h.token for h in hops}:  # (relays of one datagram share its token)
        check_token_signed(token, chain_id)
    for hop in hops:
        check_hop_claim(hop)
    if excess_relays(hops) > 0:
        return
    excess = overcredit(hops)
    if excess <= 0:
        deepest = max(h.token.token.depth for h in hops)
        raise NotOvercredit(
            f"the entries of {len(hops)} relays credit {excess + deepest * PPM} millionths of a "
            f"unit, no more than the {deepest} units their deepest token reveals, nor more "
            f"relays than the {MAX_CONNECTION_HOPS} a pool pays"
        )
