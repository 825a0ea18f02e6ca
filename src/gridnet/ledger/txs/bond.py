"""Bond and Unbond: lock coin as an identity's stake, and release it after a delay."""

from __future__ import annotations

from gridnet.crypto.address import address_to_text
from gridnet.encoding import U63, Wire
from gridnet.errors import (
    InsufficientBalance,
    InsufficientBond,
    MalformedTransaction,
    UnknownIdentity,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import (
    ACCOUNTS,
    IDENTITIES,
    UNBONDING,
    Account,
    StateView,
    UnbondEntry,
    UnbondQueue,
    height_key,
)
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.units import Address


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
    if state.get(IDENTITIES, sender) is None:
        raise UnknownIdentity(f"{address_to_text(sender)} must register its identity before bonding coin")
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


BOND_RULES = TxRules(Bond, validate_amount, apply_bond, spends=lambda p: p.amount)
UNBOND_RULES = TxRules(Unbond, validate_amount, apply_unbond)
