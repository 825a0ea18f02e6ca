"""RegisterIdentity: store the sender's identity proof-of-work (its stake) on chain.

An identity is revoked for good when a fraud it committed is proven (``bond.forfeit_stake``):
its ``I`` entry is deleted and an ``X`` entry remembers the revocation, so the address can
never register again. The proof-of-work is bound to the address, so taking part again
takes a new address and a new identity proof-of-work.
"""

from __future__ import annotations

from gridnet.crypto.address import address_to_text
from gridnet.encoding import U63, Wire
from gridnet.errors import (
    IdentityAlreadyRegistered,
    IdentityProofInsufficient,
    IdentityRevoked,
    UnknownIdentity,
)
from gridnet.identity import IdentityProof, is_valid_identity_proof
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import IDENTITIES, Identity, StateView, register_table
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.units import Address


class RegisterIdentity(Wire, frozen=True, tag=2):
    proof: IdentityProof
    """Solution of the identity puzzle for the sender's address."""


class Revocation(Wire, frozen=True):
    """A revoked identity: a fraud it committed was proven on chain."""

    revoked_at: U63
    """Height of the block that proved the fraud."""


REVOKED = register_table("revoked", b"X", Revocation)


def refuse_revoked(state: StateView, address: Address, purpose: str) -> None:
    """Raise ``IdentityRevoked`` if ``address``'s identity was revoked; ``purpose`` names
    what it tried ("bonding coin")."""
    revocation = state.get(REVOKED, address)
    if revocation is not None:
        raise IdentityRevoked(
            f"the identity of {address_to_text(address)} was revoked at height {revocation.revoked_at} "
            f"for a proven fraud; {purpose} takes a new address with a new identity proof"
        )


def require_identity(state: StateView, address: Address, purpose: str) -> Identity:
    """The registered identity of ``address``, for an operation that needs one: a revoked
    identity is ``IdentityRevoked``, none at all ``UnknownIdentity``."""
    refuse_revoked(state, address, purpose)
    identity = state.get(IDENTITIES, address)
    if identity is None:
        raise UnknownIdentity(f"{address_to_text(address)} must register its identity before {purpose}")
    return identity


def revoke_identity(state: StateView, env: BlockEnv, address: Address) -> None:
    """Delete ``address``'s identity and bar the address from registering again (an address
    already revoked keeps its first revocation height)."""
    state.put(IDENTITIES, address, None)
    if state.get(REVOKED, address) is None:
        state.put(REVOKED, address, Revocation(revoked_at=env.height))


def validate_register_identity(payload: RegisterIdentity, params: ChainParams) -> None:
    """Nothing to check without the sender's address; see apply."""


def apply_register_identity(
    state: StateView, env: BlockEnv, sender: Address, payload: RegisterIdentity
) -> None:
    refuse_revoked(state, sender, "registering again")
    if state.get(IDENTITIES, sender) is not None:
        raise IdentityAlreadyRegistered(f"identity {address_to_text(sender)} is already registered")
    if not is_valid_identity_proof(sender, payload.proof, env.params.identity_target_int):
        raise IdentityProofInsufficient(
            f"identity proof (rounds={payload.proof.rounds}, nonce={payload.proof.nonce}) "
            f"for {address_to_text(sender)} does not reach the identity target"
        )
    state.put(IDENTITIES, sender, Identity(proof=payload.proof, registered_at=env.height))


RULES = TxRules(RegisterIdentity, validate_register_identity, apply_register_identity)
