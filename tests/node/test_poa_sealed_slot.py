"""A validator's data directory keeps the last slot it sealed (``LAST_SEALED_SLOT``) for the
node and ``gridnet chain mine`` alike: neither seals a second block for a slot, which is a
provable fault that removes the validator from the set."""

from __future__ import annotations

from pathlib import Path

import msgspec

from gridnet.ledger.chain import now_ms
from gridnet.ledger.miner import propose_block
from gridnet.ledger.poa import proposer_of, slot_of, slot_start, validator_set
from gridnet.ledger.wallet import last_sealed_slot, mine_blocks, next_own_slot
from gridnet.node.messages import BlockMsg
from gridnet.node.node import Node, NodeConfig
from tests.helpers import new_chain
from tests.ledger.test_poa import BY_KEY, poa_params

SLOT_MS = 1_000
S = 6


def test_chain_mine_never_seals_a_slot_the_node_sealed_before_a_reorg(tmp_path: Path) -> None:
    """The node sealed slot S and sent its block; a heavier branch (slots S-2, S-1) came and
    the node followed it; the operator then stopped it and ran ``gridnet chain mine`` in the
    same slot, which sealed a second block for S (the head's next own slot): a double seal."""
    now = now_ms()
    params = msgspec.structs.replace(
        poa_params(), genesis_time=now - S * SLOT_MS - 100, block_interval_ms=SLOT_MS
    )
    chain, other = new_chain(tmp_path / "validator", params), new_chain(tmp_path / "other", params)
    members = validator_set(chain.view()).members
    validator = BY_KEY[proposer_of(members, S).key]
    at = slot_start(params, S) + 1
    node = Node("v", chain, NodeConfig(validator=validator))
    node.add_peer("peer")
    sealed = next(m.block for _, m in node.tick(at) if isinstance(m, BlockMsg))
    assert slot_of(params, sealed.header.timestamp) == S and last_sealed_slot(chain) == S
    for slot in (S - 2, S - 1):
        block, _ = propose_block(
            other, BY_KEY[proposer_of(members, slot).key], slot, now=slot_start(params, slot)
        )
        other.add_block(block, now=at)
        chain.add_block(block, now=at)
    assert chain.head.header.timestamp == slot_start(params, S - 1)  # (the node's block is off the head)
    assert next_own_slot(chain, validator) > S
    [mined] = mine_blocks(chain, validator, 1)  # (waits for its next slot: at most 4 s)
    slot = slot_of(params, mined.block.header.timestamp)
    assert slot > S and last_sealed_slot(chain) == slot
