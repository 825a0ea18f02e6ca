"""RegisterIdentity: store the sender's identity proof-of-work (its stake) on chain."""

from __future__ import annotations

from gridnet.crypto.address import address_to_text
from gridnet.encoding import Wire
from gridnet.errors import IdentityAlreadyRegistered, IdentityProofInsufficient
from gridnet.identity import IdentityProof, is_valid_identity_proof
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import IDENTITIES, Identity, StateView
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.units import Address


class RegisterIdentity(Wire, frozen=True, tag=2):
    proof: IdentityProof
    """Solution of the identity puzzle for the sender's address."""


def validate_register_identity(payload: RegisterIdentity, params: ChainParams) -> None:
    """Nothing to check without the sender's address; see apply."""


def apply_register_identity(
    state: StateView, env: BlockEnv, sender: Address, payload: RegisterIdentity
) -> None:
    if state.get(IDENTITIES, sender) is not None:
        raise IdentityAlreadyRegistered(f"identity {address_to_text(sender)} is already registered")
    if not is_valid_identity_proof(sender, payload.proof, env.params.identity_target_int):
        raise IdentityProofInsufficient(
            f"identity proof (rounds={payload.proof.rounds}, nonce={payload.proof.nonce}) "
            f"for {address_to_text(sender)} does not reach the identity target"
        )
    state.put(IDENTITIES, sender, Identity(proof=payload.proof, registered_at=env.height))


RULES = TxRules(RegisterIdentity, validate_register_identity, apply_register_identity)
