"""The transaction envelope: payload, sender key, nonce, fee, signature.

The signed message is ``chain_id || body`` under the TRANSACTION domain, where
``body`` is the canonical encoding of ``[payload, sender, nonce, fee]``: a
signature is valid on one chain only. The id is the digest of body and signature.
"""

from __future__ import annotations

from gridnet.crypto.hashing import txid
from gridnet.crypto.keys import Domain, PrivateKey
from gridnet.encoding import U63, OptionalKeyBytes, OptionalSignatureBytes, Wire, encode
from gridnet.ledger.registry import Payload
from gridnet.units import SIGNATURE_BYTES, Hash32


class Transaction(Wire, frozen=True):
    payload: Payload
    sender: OptionalKeyBytes
    """Sender's Ed25519 public key (empty only in a coinbase)."""
    nonce: U63
    """Sender's transaction count before this one."""
    fee: U63
    """Fee paid to the miner [base units]."""
    signature: OptionalSignatureBytes
    """Ed25519 signature of chain_id || body (empty only in a coinbase)."""


def tx_body(tx: Transaction) -> bytes:
    return encode((tx.payload, tx.sender, tx.nonce, tx.fee))


def tx_size(body: bytes) -> int:
    """Size a fee is charged on [bytes]: the body plus the signature."""
    return len(body) + SIGNATURE_BYTES


def tx_id(tx: Transaction) -> Hash32:
    return txid(tx_body(tx), tx.signature)


def sign_transaction(
    key: PrivateKey, chain_id: Hash32, payload: Payload, nonce: int, fee: int
) -> Transaction:
    body = encode((payload, key.public_key, nonce, fee))
    signature = key.sign(Domain.TRANSACTION, chain_id + body)
    return Transaction(payload=payload, sender=key.public_key, nonce=nonce, fee=fee, signature=signature)


def min_fee(min_fee_per_byte: int, payload: Payload, nonce: int | None = None) -> int:
    """Smallest fee a signed transaction with ``payload`` and ``nonce`` may pay.

    The size includes the encoded nonce and the fee itself, so this iterates to the
    fixed point. Without ``nonce`` it sizes for the largest nonce (never too low).
    """
    sized_nonce = 2**63 - 1 if nonce is None else nonce
    fee = 0
    while True:
        size = len(encode((payload, bytes(32), sized_nonce, fee))) + SIGNATURE_BYTES
        need = size * min_fee_per_byte
        if need <= fee:
            return fee
        fee = need
