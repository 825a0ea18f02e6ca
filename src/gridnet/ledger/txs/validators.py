"""Validator-set transactions of a permissioned chain (``ledger/poa.py``).

ChangeValidators: replace the validator set with a new one, approved by members holding more
than two thirds of the current set's votes (each signs the new set and its sequence number).
Any account may submit it (and pays its fee). It does not take effect at once: it is pending
on its branch until its block is final under the set in force, then handed over (the new set
in force, justification needing more than two thirds of both sets) until the next final
block (``poa.apply_set_change``; why, in ``ledger/poa.py``). One change at a time: another
is refused while one is pending or handed over (``ValidatorChangePending``). The set's
``seq`` grows when the new set comes in force (and on each fault removal), so the change's
approvals, and any others signed for the same ``seq``, are stale from then on.

ReportValidatorFault: the proof that a member sealed two blocks for one slot, or signed two
conflicting votes (``poa.double_seal``, ``poa.conflicting_votes``), since it last joined the set
(``poa.member_since``, a slot: an old proof cannot remove a key the set approved back). The member
leaves the set from the next block, and the outgoing set of a hand-over and the set of a
pending change too (an approval signed before the fault does not let it back in); a key only
a pending change names is not a member yet (``NotInValidatorSet``), and no set is left empty
(``LastValidator``). Every change of who votes drops the votes counted so far (a block counts
them again under the new weights). Both kinds are refused on a proof-of-work chain
(``NotPermissioned``).
"""

from __future__ import annotations

from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import U63, PublicKeyBytes, SignatureBytes, Wire, encode
from gridnet.errors import (
    BadValidatorSet,
    FaultBeforeMembership,
    InsufficientApprovals,
    LastValidator,
    MalformedTransaction,
    NotInValidatorSet,
    NotPermissioned,
    StaleValidatorSet,
    ValidatorChangePending,
    ValidatorFaultNotProven,
)
from gridnet.ledger.header import Header, SignedVote
from gridnet.ledger.params import MAX_TOTAL_VOTES, MAX_VALIDATORS, ChainParams, Validator
from gridnet.ledger.poa import (
    ONLY,
    PENDING_CHANGE,
    PendingChange,
    conflicting_votes,
    double_seal,
    fault_slot,
    hand_over,
    is_voter,
    member_since,
    pending_change,
    remove_validator,
    validator_set,
    voting_sets,
)
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.units import Address, Hash32


class Approval(Wire, frozen=True):
    key: PublicKeyBytes
    signature: SignatureBytes
    """Ed25519 over chain_id || encoded (seq, members), under the VALIDATOR_SET domain."""


class ChangeValidators(Wire, frozen=True, tag=25):
    seq: U63
    """The set's next sequence number (its current one plus one)."""
    members: tuple[Validator, ...]
    """The new set, ordered by key."""
    approvals: tuple[Approval, ...]


class ReportValidatorFault(Wire, frozen=True, tag=26):
    headers: tuple[Header, ...] = ()
    """Two sealed headers of one slot by one key, or none."""
    votes: tuple[SignedVote, ...] = ()
    """Two conflicting votes by one key, or none."""


def approval_message(chain_id: Hash32, seq: int, members: tuple[Validator, ...]) -> bytes:
    return chain_id + encode((seq, members))


def approve(key: PrivateKey, chain_id: Hash32, seq: int, members: tuple[Validator, ...]) -> Approval:
    """``key``'s validator approves the set ``members`` as change number ``seq``."""
    return Approval(key.public_key, key.sign(Domain.VALIDATOR_SET, approval_message(chain_id, seq, members)))


def validate_change_validators(payload: ChangeValidators, params: ChainParams) -> None:
    members = payload.members
    if not 1 <= len(members) <= MAX_VALIDATORS:
        raise BadValidatorSet(f"a validator set has 1 to {MAX_VALIDATORS} members")
    keys = [m.key for m in members]
    if keys != sorted(set(keys)):
        raise BadValidatorSet("a validator set lists its members ordered by key, each once")
    if any(m.votes < 1 for m in members) or sum(m.votes for m in members) >= MAX_TOTAL_VOTES:
        raise BadValidatorSet(
            f"each member has at least 1 vote and all together fewer than {MAX_TOTAL_VOTES}"
        )
    if len(payload.approvals) > MAX_VALIDATORS:
        raise MalformedTransaction(f"at most {MAX_VALIDATORS} approvals")


def _permissioned(env: BlockEnv, what: str) -> None:
    if not env.params.permissioned:
        raise NotPermissioned(f"{what} is only for a permissioned chain; this one runs on proof-of-work")


def apply_change_validators(
    state: StateView, env: BlockEnv, sender: Address, payload: ChangeValidators
) -> None:
    _permissioned(env, "changing validators")
    current = validator_set(state)
    if pending_change(state) is not None or hand_over(state) is not None:
        raise ValidatorChangePending(
            "a change of the validator set is already pending or being handed over on this "
            "branch; the next is taken once it is done"
        )
    if payload.seq != current.seq + 1:
        raise StaleValidatorSet(f"change number {payload.seq}; the set's next is {current.seq + 1}")
    message = approval_message(env.chain_id, payload.seq, payload.members)
    approvers: list[bytes] = []
    for approval in payload.approvals:
        if (
            current.member(approval.key) is not None
            and approval.key not in approvers
            and verify_signature(Domain.VALIDATOR_SET, approval.key, message, approval.signature)
        ):
            approvers.append(approval.key)
    weight, total = current.weight(tuple(approvers)), current.total
    if weight * 3 <= total * 2:
        raise InsufficientApprovals(
            f"approvals carry {weight} of {total} votes; more than two thirds are needed"
        )
    # (pending until this block is final under the set in force: ``poa.apply_set_change``)
    state.put(PENDING_CHANGE, ONLY, PendingChange(payload.members, env.height))


def validate_report_validator_fault(payload: ReportValidatorFault, params: ChainParams) -> None:
    if sorted((len(payload.headers), len(payload.votes))) != [0, 2]:
        raise MalformedTransaction("a fault report carries two headers or two votes")


def apply_report_validator_fault(
    state: StateView, env: BlockEnv, sender: Address, payload: ReportValidatorFault
) -> None:
    _permissioned(env, "reporting a validator fault")
    if payload.headers:
        key = double_seal(env.chain_id, env.params, *payload.headers)
        what = "two different blocks sealed for one slot"
    else:
        key = conflicting_votes(env.chain_id, *payload.votes)
        what = "two conflicting votes"
    if key is None:
        raise ValidatorFaultNotProven(f"the report does not show {what} signed by one key")
    if not is_voter(state, key):
        raise NotInValidatorSet(f"validator {key.hex()[:16]} is not in the set (already removed?)")
    since, offence = member_since(state, key), fault_slot(env.params, payload.headers, payload.votes)
    if offence < since:
        raise FaultBeforeMembership(
            f"validator {key.hex()[:16]} is a member from slot {since}; the fault weighs from "
            f"slot {offence}, before it joined again"
        )
    if any(members == (key,) for members in _member_keys(state)):
        raise LastValidator(
            f"validator {key.hex()[:16]} is the last one of a set; the chain could not go on without it"
        )
    remove_validator(state, key)


def _member_keys(state: StateView) -> list[tuple[bytes, ...]]:
    """The keys of each set that votes (the set in force, and the outgoing set of a
    hand-over): a fault report may not empty one. (A pending change whose set it empties is
    dropped instead: its only key, at fault, cannot shield itself by it.)"""
    return [tuple(m.key for m in s.members) for s in voting_sets(state)]


CHANGE_VALIDATORS_RULES = TxRules(ChangeValidators, validate_change_validators, apply_change_validators)
REPORT_VALIDATOR_FAULT_RULES = TxRules(
    ReportValidatorFault, validate_report_validator_fault, apply_report_validator_fault
)
