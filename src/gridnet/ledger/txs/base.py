"""What every transaction type module provides, and the block environment it sees."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gridnet.crypto.keys import SignatureCheck
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import StateView
from gridnet.units import Address, Hash32, Height, Units

P = TypeVar("P")


class BlockEnv:
    """The block a transaction is applied in."""

    __slots__ = (
        "_timestamp",
        "chain_id",
        "fees",
        "height",
        "miner",
        "params",
        "sender_key",
        "time_floor",
        "timestamp_read",
        "txid",
    )

    def __init__(
        self, params: ChainParams, chain_id: Hash32, height: Height, miner: Address, timestamp: int
    ) -> None:
        self.params = params
        self.chain_id = chain_id
        self.height = height
        self.miner = miner
        self._timestamp = timestamp
        self.fees: Units = 0
        """Fees collected so far in this block [base units]."""
        self.sender_key = b""
        """Public key of the transaction being applied (set per transaction)."""
        self.txid = b""
        """Id of the transaction being applied (set per transaction)."""
        self.time_floor = 0
        """The latest moment a rule relied on the block's time having reached
        (``time_reached``): the block may move later, not before it."""
        self.timestamp_read = False
        """Whether any rule read the block's time: if none did, the same transactions apply
        the same way in the same block stamped at another time (a miner re-stamps its
        template instead of building it again)."""

    @property
    def timestamp(self) -> int:
        """The block's time [ms]."""
        self.timestamp_read = True
        return self._timestamp

    def time_reached(self, moment: int) -> bool:
        """Whether the block's time is ``moment`` or later: a rule asking this reads the
        time only when the answer is no (a later time may say yes); a yes stays a yes at any
        later time, so the block may still move later (``time_floor``)."""
        if self._timestamp >= moment:
            self.time_floor = max(self.time_floor, moment)
            return True
        self.timestamp_read = True
        return False

    def peek_timestamp(self) -> int:
        """The block's time, for its header: not a rule reading it."""
        return self._timestamp

    def restamp(self, timestamp: int) -> None:
        """Move the block's time (only while no rule has read it, ``timestamp_read``, and
        not before a time a rule relied on having been reached, ``time_floor``)."""
        if self.timestamp_read or timestamp < self.time_floor:
            raise ValueError("a rule read the block's time: it cannot move there")
        self._timestamp = timestamp


@dataclass(frozen=True, slots=True)
class TxRules(Generic[P]):
    """The two checks of one transaction type.

    ``validate(payload, params)``: stateless (sizes, ranges); raises InvalidTransaction.
    ``apply(state, env, sender, payload)``: stateful check-and-apply, run after the
    common rules (nonce, fee) have been applied to the sender; must check every rule
    before it changes anything.
    ``spends(payload)``: coin the payload takes from the sender's balance beyond the
    fee [base units] (the mempool uses it to refuse what a sender cannot pay).
    ``admit(state, env, payload)``: a rule only a mempool applies (``state`` is the head's),
    for a transaction whose effect ends with time or with a change of state: a block past
    that time, or after that change, still includes it, without effect, so that a
    transaction waiting in a mempool never strands its sender's later ones behind a nonce
    no block can use.
    ``carried(payload, chain_id, sender)``: the signatures the payload carries that are checked
    with a key it carries too (no state needed to know the check; ``sender``, the transaction's
    sender's address, for a signature that binds the payload to it): a node checks them beside
    the transaction's own signature, in the same batch on all cores, and the type's rules then
    find them in its signature cache (they still decide, and name the rejection).
    ``keyed(payload, state)``: the signatures the payload carries that are checked with a key
    the state gives (a contract's buyer): a node checks them in the same batch with its head
    state's key; the rules check again with the state they apply on (a key that differs
    there is not answered by the cache, and is checked then).
    """

    payload_type: type[P]
    validate: Callable[[P, ChainParams], None]
    apply: Callable[[StateView, BlockEnv, Address, P], None]
    spends: Callable[[P], int] = lambda _payload: 0
    admit: Callable[[StateView, BlockEnv, P], None] | None = None
    carried: Callable[[P, Hash32, Address], list[SignatureCheck]] = lambda _payload, _chain_id, _sender: []
    keyed: Callable[[P, StateView], list[SignatureCheck]] = lambda _payload, _state: []


AnyRules = TxRules[Any]
