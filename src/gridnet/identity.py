"""Identity proof-of-work: the stake every GRIDNET identity carries (PROTOCOL.md 2).

To register, an identity finds a 32-bit nonce such that
``H(address^rounds || nonce)`` read as an integer is below the identity target,
where ``address^rounds`` is the address concatenated with itself ``rounds`` times.
The search starts with ``rounds = 1``; when the nonce overflows (all 2**32 values
tried) the address is concatenated once more (``rounds + 1``) and the nonce starts
again at 0. The proof ``(rounds, nonce)`` is stored on chain with the address and
attached to every datagram the identity originates.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from gridnet.crypto.hashing import digest_int, identity_digest
from gridnet.encoding import U32, Wire
from gridnet.errors import WorkNotFound
from gridnet.units import Address

NONCE_LIMIT: Final = 2**32
"""Number of nonce values per round; reaching it is the overflow of PROTOCOL.md 2."""
MAX_ROUNDS: Final = 64
"""Upper bound on rounds accepted in a proof (bounds the hashed input's size)."""


class IdentityProof(Wire, frozen=True):
    """A solved identity puzzle."""

    rounds: Annotated[int, msgspec.Meta(ge=1, le=MAX_ROUNDS)]
    """How many times the address is concatenated with itself (1 = no overflow yet)."""
    nonce: U32
    """The nonce that, appended, brings the digest below the target."""


def identity_work_digest(address: Address, rounds: int, nonce: int) -> bytes:
    """The digest an identity proof is judged by."""
    return identity_digest(address * rounds + nonce.to_bytes(4, "big"))


def is_valid_identity_proof(address: Address, proof: IdentityProof, target: int) -> bool:
    """True when ``proof`` brings ``address``'s digest below ``target``."""
    return digest_int(identity_work_digest(address, proof.rounds, proof.nonce)) < target


def find_identity_proof(
    address: Address,
    target: int,
    *,
    start: IdentityProof | None = None,
    max_attempts: int = 2**40,
) -> IdentityProof:
    """Search nonces (and, on overflow, rounds) until the digest is below ``target``.

    ``start`` lets a search resume (or, in tests, begin just before an overflow).
    Raises ``WorkNotFound`` after ``max_attempts`` digests without success.
    """
    rounds = start.rounds if start else 1
    nonce = start.nonce if start else 0
    attempts = 0
    while attempts < max_attempts:
        prefix = address * rounds
        while nonce < NONCE_LIMIT and attempts < max_attempts:
            if digest_int(identity_digest(prefix + nonce.to_bytes(4, "big"))) < target:
                return IdentityProof(rounds=rounds, nonce=nonce)
            nonce += 1
            attempts += 1
        if nonce >= NONCE_LIMIT:
            rounds += 1  # nonce overflow: concatenate the address once more
            nonce = 0
            if rounds > MAX_ROUNDS:
                raise WorkNotFound(
                    f"no identity proof found in {attempts} attempts: every nonce of the {MAX_ROUNDS} "
                    "rounds an identity proof may have was tried"
                )
    raise WorkNotFound(f"no identity proof found in {max_attempts} attempts")
