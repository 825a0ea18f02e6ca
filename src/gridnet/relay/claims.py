"""Transit claims: at the end of a connection the receiver signs one claim that pays every
hop for all the connection's datagrams: the connection's last (deepest) token and the hop
list that carried it. Intermediaries are paid only after delivery: no claim without the
receiver's signature."""

from __future__ import annotations

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.hashing import hash32
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import U63, PublicKeyBytes, SignatureBytes, Wire, encode
from gridnet.errors import ClaimSignatureInvalid
from gridnet.relay.hops import HopEntry
from gridnet.relay.tokens import SignedToken
from gridnet.units import Address, Hash32


class TransitClaim(Wire, frozen=True):
    token: SignedToken
    """The connection's last token: its depth covers every datagram before it."""
    hops: tuple[HopEntry, ...]
    receiver_key: PublicKeyBytes
    datagrams: U63
    """Datagrams the connection delivered (reported, not paid by count)."""


class SignedClaim(Wire, frozen=True):
    claim: TransitClaim
    signature: SignatureBytes
    """The receiver's signature (CLAIM domain)."""


def token_digest(token: SignedToken) -> Hash32:
    """What the first hop-list entry chains to."""
    return hash32(encode(token))


def sign_claim(receiver: PrivateKey, claim: TransitClaim) -> SignedClaim:
    return SignedClaim(claim, receiver.sign(Domain.CLAIM, encode(claim)))


def check_claim_signature(signed: SignedClaim) -> Address:
    """The claim is signed by the receiver it names, who is where the last hop delivered.
    Returns the receiver's address."""
    c = signed.claim
    receiver = address_from_public_key(c.receiver_key)
    if not verify_signature(Domain.CLAIM, c.receiver_key, encode(c), signed.signature):
        raise ClaimSignatureInvalid("the claim is not signed by the receiver it names")
    if not c.hops or c.hops[-1].body.next_hop != receiver:
        raise ClaimSignatureInvalid("the last hop did not deliver to the receiver that signed the claim")
    return receiver
