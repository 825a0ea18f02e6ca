"""Bond and Unbond: lock coin as an identity's stake, and release it after a delay; and the
penalty of every proven fraud, ``forfeit_stake``."""

from __future__ import annotations

from msgspec.structs import replace

from gridnet.encoding import U63, Wire
from gridnet.errors import InsufficientBalance, InsufficientBond, MalformedTransaction
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import (
    ACCOUNTS,
    UNBONDING,
    Account,
    StateView,
    UnbondEntry,
    UnbondQueue,
    height_key,
)
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.identity import require_identity, revoke_identity
from gridnet.units import Address, Units


class Bond(Wire, frozen=True, tag=3):
    amount: U63
    """Coin moved from the balance into the bond [base units]."""


class Unbond(Wire, frozen=True, tag=4):
    amount: U63
    """Coin leaving the bond; it returns to the balance after the unbonding delay [base units]."""


def validate_amount(payload: Bond | Unbond, params: ChainParams) -> None:
    if payload.amount == 0:
        raise MalformedTransaction(f"{type(payload).__name__.lower()} of zero coin")


def apply_bond(state: StateView, env: BlockEnv, sender: Address, payload: Bond) -> None:
    require_identity(state, sender, "bonding coin")
    acct = state.account(sender)
    if acct.balance < payload.amount:
        raise InsufficientBalance(f"balance {acct.balance} is less than the bond of {payload.amount}")
    state.put(
        ACCOUNTS,
        sender,
        Account(acct.balance - payload.amount, acct.nonce, acct.bonded + payload.amount, acct.unbonding),
    )


def apply_unbond(state: StateView, env: BlockEnv, sender: Address, payload: Unbond) -> None:
    acct = state.account(sender)
    if acct.bonded < payload.amount:
        raise InsufficientBond(f"bonded {acct.bonded} is less than the unbond of {payload.amount}")
    state.put(
        ACCOUNTS,
        sender,
        Account(acct.balance, acct.nonce, acct.bonded - payload.amount, acct.unbonding + payload.amount),
    )
    release = height_key(env.height + env.params.unbonding_delay)
    queue = state.get(UNBONDING, release)
    entries = queue.entries if queue else ()
    state.put(UNBONDING, release, UnbondQueue((*entries, UnbondEntry(sender, payload.amount))))


def process_unbonding(state: StateView, env: BlockEnv) -> None:
    """Start of every block: coin whose unbonding delay ends here returns to balances."""
    key = height_key(env.height)
    queue = state.get(UNBONDING, key)
    if queue is None:
        return
    for entry in queue.entries:
        acct = state.account(entry.address)
        state.put(
            ACCOUNTS,
            entry.address,
            Account(acct.balance + entry.amount, acct.nonce, acct.bonded, acct.unbonding - entry.amount),
        )
    state.put(UNBONDING, key, None)


FRAUD_REWARD_DIVISOR = 10
"""The party a proven fraud wronged receives 1/10 of the forfeited stake; the rest is destroyed."""


def forfeit_stake(state: StateView, env: BlockEnv, offender: Address, beneficiary: Address | None) -> Units:
    """The penalty of a proven fraud; returns the coin forfeited [base units].

    The offender loses its whole bond *and* the coin still waiting out its unbonding delay
    (its entries leave the unbonding queues, so that coin never returns), and its identity is
    revoked (``identity.revoke_identity``). ``beneficiary``, the party the fraud wronged (who
    proves it), receives a tenth of the forfeited coin; the rest is destroyed (all of it when
    the proof shows no wronged party: ``beneficiary`` None). Were it all paid out, an offender
    about to be caught could equivocate towards an address of its own and report itself first,
    keeping its stake; destroyed, the stake is lost whoever reports.
    Every fraud proof calls this, after checking all its rules.
    """
    acct = state.account(offender)
    cancelled = cancel_unbonding(state, env, offender, acct.unbonding)
    state.put(ACCOUNTS, offender, replace(acct, bonded=0, unbonding=acct.unbonding - cancelled))
    revoke_identity(state, env, offender)
    forfeited = acct.bonded + cancelled
    reward = 0 if beneficiary is None else forfeited // FRAUD_REWARD_DIVISOR
    if beneficiary is not None and reward:
        state.credit(beneficiary, reward)
    state.destroy(forfeited - reward)
    return forfeited


def cancel_unbonding(state: StateView, env: BlockEnv, address: Address, amount: Units) -> Units:
    """Remove ``address``'s entries from the unbonding queues; returns their coin [base units].

    Its coin in unbonding (``amount``) waits in the queues due after this block's height, up
    to ``height + unbonding_delay`` (the queue due at this height was released when the block
    started): at most ``unbonding_delay`` queues are read, fewer once ``amount`` is found.
    """
    cancelled = 0
    height = env.height + 1
    while cancelled < amount and height <= env.height + env.params.unbonding_delay:
        key = height_key(height)
        queue = state.get(UNBONDING, key)
        if queue is not None:
            kept = tuple(e for e in queue.entries if e.address != address)
            if len(kept) < len(queue.entries):
                cancelled += sum(e.amount for e in queue.entries if e.address == address)
                state.put(UNBONDING, key, UnbondQueue(kept) if kept else None)
        height += 1
    return cancelled


BOND_RULES = TxRules(Bond, validate_amount, apply_bond, spends=lambda p: p.amount)
UNBOND_RULES = TxRules(Unbond, validate_amount, apply_unbond)
