"""The block reward: the one unsigned transaction, first in every block but genesis.

Its rules live in :func:`gridnet.ledger.transition.apply_coinbase`, because they
depend on the whole block (the fees of every other transaction).
"""

from __future__ import annotations

from gridnet.encoding import U63, Wire


class Coinbase(Wire, frozen=True, tag=0):
    """Pays the miner (the header's ``miner``) the block reward plus the block's fees."""

    height: U63
    """Height of the block (makes every coinbase unique)."""
    reward: U63
    """New coin created by this block [base units]; must equal the schedule."""
    fees: U63
    """Sum of the fees of the block's other transactions [base units]."""
