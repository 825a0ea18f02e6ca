"""Transit claims: the receiver proves a connection's delivery, each relay claims its due.

At the end of a connection the receiver signs one :class:`TransitClaim`: the connection's
last (deepest) token with its receipt, the digest of the envelope it delivered, which only
the receiver could compute (``datagram_digest(receipt)`` is what the token pays for); a
connection deeper than one claim reveals (``MAX_CLAIM_UNITS``) is claimed in steps. It
names no relay: the receiver learns no relay from signing it. Each relay claims for itself
with a :class:`HopClaim`: a token of a datagram it carried and its hop ticket from that
datagram's layer, its entry under the token's hop root. Intermediaries are paid only after delivery:
a hop claim pays only up to the depth some receiver's claim proved.

The receiver signs ``chain_id || encode(claim)`` (CLAIM domain, :func:`claim_message`): a
claim signed for one chain advances no pool of the same id on another. A hop claim carries
no signature of its own: its token is the owner's, bound to one chain (``relay.tokens``),
and its entry is under that token's hop root.
"""

from __future__ import annotations

from typing import Final

from gridnet.crypto.hashing import datagram_digest
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import U63, HashBytes, PublicKeyBytes, SignatureBytes, Wire, encode
from gridnet.errors import ClaimSignatureInvalid, ReceiptInvalid
from gridnet.relay.hops import HopTicket, verify_ticket
from gridnet.relay.tokens import PPM, SignedToken
from gridnet.units import Hash32

MAX_CLAIM_UNITS: Final = 100_000
"""Most units one receiver's claim may reveal above the pool's redeemed depth: bounds the
hashing a claim costs every validator (``ledger.txs.relay``). A receiver claims a longer
connection in steps (``Inbox``)."""


class TransitClaim(Wire, frozen=True):
    token: SignedToken
    """A token of the connection (its deepest, or a step towards it: ``Inbox``): its depth
    covers every datagram before it."""
    receipt: HashBytes
    """The digest of the envelope that token paid for: proves the claimant opened it."""
    receiver_key: PublicKeyBytes
    datagrams: U63
    """Datagrams the connection delivered (reported, not paid by count)."""


class SignedClaim(Wire, frozen=True):
    claim: TransitClaim
    signature: SignatureBytes
    """The receiver's signature (CLAIM domain)."""


class HopClaim(Wire, frozen=True):
    """A relay's claim on a pool: what the connection owed it when it forwarded ``token``."""

    token: SignedToken
    """The token of a datagram the relay forwarded (the pool owner signed its hop root)."""
    ticket: HopTicket
    """The relay's hop ticket from that datagram's layer."""


def claim_message(chain_id: Hash32, claim: TransitClaim) -> bytes:
    """What the receiver signs (CLAIM domain): the chain's id, then the encoded claim."""
    return chain_id + encode(claim)


def sign_claim(receiver: PrivateKey, chain_id: Hash32, claim: TransitClaim) -> SignedClaim:
    """The receiver's claim on the chain ``chain_id`` (its genesis hash)."""
    return SignedClaim(claim, receiver.sign(Domain.CLAIM, claim_message(chain_id, claim)))


def check_claim_signature(signed: SignedClaim, chain_id: Hash32) -> None:
    """The claim is signed, for this chain, by the receiver key it names."""
    c = signed.claim
    if not verify_signature(Domain.CLAIM, c.receiver_key, claim_message(chain_id, c), signed.signature):
        raise ClaimSignatureInvalid("the claim is not signed by the receiver it names for this chain")


def check_receipt(signed: SignedClaim) -> None:
    """The claim's receipt opens the token's datagram digest (the claimant read the datagram
    the token pays for)."""
    c = signed.claim
    if datagram_digest(c.receipt) != c.token.token.datagram:
        raise ReceiptInvalid(
            "the receipt does not hash to the datagram the token pays for: no delivery proven"
        )


def check_hop_claim(hop: HopClaim) -> None:
    """The ticket's entry is under the hop root of the claim's token."""
    verify_ticket(hop.ticket, hop.token.token.hop_root, hop.ticket.entry.relay)


def hop_payable(credit: int, unit_value: int) -> int:
    """What a cumulative credit [millionths of a pool unit] is worth [base units], rounded
    down: paid as the difference from what was paid before, the rounding never adds up."""
    return credit * unit_value // PPM
