"""Transfer: move coin from the sender to another address."""

from __future__ import annotations

from msgspec.structs import replace

from gridnet.encoding import U63, AddressBytes, Wire
from gridnet.errors import InsufficientBalance, MalformedTransaction
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import ACCOUNTS, StateView
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.units import Address


class Transfer(Wire, frozen=True, tag=1):
    to: AddressBytes
    amount: U63
    """Coin moved [base units]."""


def validate_transfer(payload: Transfer, params: ChainParams) -> None:
    if payload.amount == 0:
        raise MalformedTransaction("transfer of zero coin")


def apply_transfer(state: StateView, env: BlockEnv, sender: Address, payload: Transfer) -> None:
    acct = state.account(sender)
    if acct.balance < payload.amount:
        raise InsufficientBalance(
            f"balance {acct.balance} is less than the transfer of {payload.amount} (after the fee)"
        )
    state.put(
        ACCOUNTS,
        sender,
        replace(acct, balance=acct.balance - payload.amount),
    )
    state.credit(payload.to, payload.amount)


RULES = TxRules(Transfer, validate_transfer, apply_transfer, spends=lambda p: p.amount)
