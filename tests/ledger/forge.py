"""Hand-built blocks for rule tests: exactly the transactions given, nothing filtered.

``tests.helpers.next_block`` goes through the block builder, which drops invalid
transactions; a rule test needs the invalid transaction *in* the block. These
builders compute every root honestly from what the block claims, so a test that
then breaks one field breaks exactly one rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from gridnet.crypto.hashing import address_digest
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import InvalidTransaction
from gridnet.ledger.blocks import BLOCK_VERSION, Block, Header
from gridnet.ledger.chain import Chain
from gridnet.ledger.merkle import merkle_root
from gridnet.ledger.params import block_reward
from gridnet.ledger.pow import meets_target, mine
from gridnet.ledger.state import StateView
from gridnet.ledger.transactions import Transaction, tx_body, tx_id, tx_size
from gridnet.ledger.transition import VerifiedTx, apply_transaction
from gridnet.ledger.txs.base import BlockEnv
from gridnet.ledger.txs.bond import process_unbonding
from gridnet.ledger.txs.coinbase import Coinbase
from tests.helpers import INTERVAL

MINER = PrivateKey.from_label("test-miner")


def coinbase_tx(height: int, reward: int, fees: int) -> Transaction:
    return Transaction(
        payload=Coinbase(height=height, reward=reward, fees=fees), sender=b"", nonce=0, fee=0, signature=b""
    )


def unchecked(tx: Transaction) -> VerifiedTx:
    """Wrap ``tx`` as if it had passed its stateless checks (to compute honest roots for a
    block whose point is that one transaction fails them)."""
    return VerifiedTx(tx, tx_id(tx), address_digest(tx.sender), tx_size(tx_body(tx)))


def state_root_after(chain: Chain, height: int, miner: bytes, txs: Sequence[Transaction], paid: int) -> bytes:
    """State root after applying ``txs`` on the head and crediting ``paid`` to ``miner``.

    If a transaction is invalid the block can never reach its state-root check, so
    the head's root is returned (any value would do).
    """
    if any(isinstance(tx.payload, Coinbase) for tx in txs):
        return chain.head.header.state_root
    view = StateView(chain.values)
    env = BlockEnv(chain.params, chain.chain_id, height, miner, 0)
    process_unbonding(view, env)
    try:
        for tx in txs:
            apply_transaction(view, env, unchecked(tx))
    except InvalidTransaction:
        return chain.head.header.state_root
    view.credit(miner, paid)
    undo = chain.commitment.update(view.changes())
    root = chain.commitment.root
    chain.commitment.revert(undo)
    return root


def forge_block(
    chain: Chain,
    txs: Sequence[Transaction] = (),
    *,
    coinbase: Transaction | None = None,
    miner: bytes | None = None,
    timestamp: int | None = None,
    with_coinbase: bool = True,
    **header_changes: object,
) -> Block:
    """A mined block on ``chain``'s head holding ``coinbase`` (default: the honest one)
    followed by exactly ``txs``; ``tx_root`` and ``state_root`` match what the block
    claims unless ``header_changes`` overrides them (then the block is mined again)."""
    parent = chain.head
    height = parent.height + 1
    miner = MINER.address if miner is None else miner
    fees = sum(t.fee for t in txs)
    if coinbase is None:
        coinbase = coinbase_tx(height, block_reward(chain.params, height), fees)
    body = (coinbase, *txs) if with_coinbase else tuple(txs)
    cb = coinbase.payload
    paid = cb.reward + cb.fees if isinstance(cb, Coinbase) else 0
    header = Header(
        version=BLOCK_VERSION,
        height=height,
        prev_hash=parent.hash,
        tx_root=merkle_root([tx_id(t) for t in body]),
        state_root=state_root_after(chain, height, miner, txs, paid),
        timestamp=parent.header.timestamp + INTERVAL if timestamp is None else timestamp,
        target=chain.expected_target(parent),
        nonce=0,
        miner=miner,
    )
    header = msgspec.structs.replace(header, **header_changes)  # type: ignore[arg-type]
    solved = mine(header, 10_000_000)
    assert solved is not None
    return Block(solved, body)


def without_pow(block: Block) -> Block:
    """``block`` with the first nonce whose header hash is NOT below its target."""
    nonce = 0
    while True:
        header = msgspec.structs.replace(block.header, nonce=nonce)
        if not meets_target(header):
            return msgspec.structs.replace(block, header=header)
        nonce += 1
