"""Who sealed what, as a node of a permissioned chain notes it (``node/finality.py``'s
``SealLog``): only members of the head's validator set, so that keys outside it can neither
pose as faulty validators nor push a member's seals out of the log; only for the slots whose
blocks a node takes, at most a few per key, so that a member cannot push its own first seal
of a slot out before it seals the second."""

from __future__ import annotations

from pathlib import Path

from msgspec.structs import replace

from gridnet.crypto.keys import PrivateKey
from gridnet.ledger.blocks import Block
from gridnet.ledger.poa import seal_header, slot_of
from gridnet.ledger.txs.validators import ReportValidatorFault
from gridnet.node.finality import SealLog
from gridnet.node.messages import BlockMsg
from gridnet.node.node import Node, NodeConfig
from tests.helpers import new_chain
from tests.ledger.test_poa import KEYS, at, grow, poa_params, propose, proposer, reseal


def sealed_by(key: PrivateKey, template: Block, chain_id: bytes, branch: int) -> BlockMsg:
    """``template`` sealed by ``key`` on an unknown parent (an orphan: kept, not validated)."""
    header = replace(template.header, prev_hash=bytes([branch]) * 32)
    return BlockMsg(replace(template, header=seal_header(key, chain_id, header)))


def test_seals_by_keys_outside_the_set_are_neither_noted_nor_reported(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "poa", poa_params())
    grow(chain, range(1, 3))
    node = Node("n0", chain, NodeConfig(validator=KEYS[0]))
    node.add_peer("p")
    node.seals = SealLog(chain.chain_id, chain.params, per_key=8)
    template = propose(chain, 3)
    member = proposer(chain, 3)
    assert member is not KEYS[0]
    node.handle("p", sealed_by(member, template, chain.chain_id, 1), at(3))
    for i in range(20):  # two blocks for one slot by each of 20 fresh keys
        outsider = PrivateKey.from_label(f"poa-outsider-{i}")
        for branch in (2, 3):
            node.handle("p", sealed_by(outsider, template, chain.chain_id, branch), at(3))
    assert node._reported == set()
    assert len(node.mempool) == 0, "no report of an outsider"
    node.handle("p", sealed_by(member, template, chain.chain_id, 4), at(3))
    assert node._reported == {member.public_key}
    reports = [v.tx.payload for v in node.mempool.candidates()]
    assert len(reports) == 1 and isinstance(reports[0], ReportValidatorFault)
    assert {h.proposer for h in reports[0].headers} == {member.public_key}


def member_node(tmp_path: Path) -> tuple[Node, Block, PrivateKey]:
    """A validator node on 2 blocks, and the block of slot 3 by its proposer (not the node's)."""
    chain = new_chain(tmp_path / "poa", poa_params())
    grow(chain, range(1, 3))
    node = Node("n0", chain, NodeConfig(validator=KEYS[0]))
    node.add_peer("evil")
    member = proposer(chain, 3)
    assert member is not KEYS[0]
    return node, propose(chain, 3), member


def test_a_members_seals_of_far_off_slots_do_not_hide_its_two_blocks_for_one_slot(tmp_path: Path) -> None:
    """Between its two blocks for slot 3 the member gossips 4,096 sealed blocks of slots far
    ahead (declined, no fault): none is noted, so the second block is seen and reported."""
    node, a, member = member_node(tmp_path)
    chain = node.chain
    b = reseal(chain, a, member, state_root=bytes(32))
    node.handle("evil", BlockMsg(a), at(3))
    for i in range(4_096):
        far = reseal(chain, a, member, timestamp=at(10_000 + i))
        node.handle("evil", BlockMsg(far), at(3))
    assert node.stats.peer_faults.get("evil", 0) == 0
    node.handle("evil", BlockMsg(b), at(3))
    assert node._reported == {member.public_key}
    reports = [v.tx.payload for v in node.mempool.candidates()]
    assert len(reports) == 1 and isinstance(reports[0], ReportValidatorFault)
    assert set(reports[0].headers) == {a.header, b.header}
    assert len(node.seals) == 1, "only the block of slot 3 is noted"


def test_the_seal_log_keeps_per_key_its_first_seal_of_a_slot_and_drops_its_lowest_slots(
    tmp_path: Path,
) -> None:
    node, a, member = member_node(tmp_path)
    chain = node.chain
    log = SealLog(chain.chain_id, chain.params, per_key=4)
    other = proposer(chain, 4)
    kept = reseal(chain, propose(chain, 4), other, timestamp=at(3))  # (another key's seal of slot 3)
    assert log.add(kept.header, 0, at(3)) is None
    assert log.add(a.header, 0, at(3)) is None
    b = reseal(chain, a, member, state_root=bytes(32))
    c = reseal(chain, a, member, state_root=bytes([1]) * 32)
    assert log.add(b.header, 0, at(3)) == a.header
    assert log.add(c.header, 0, at(3)) == a.header, "the first seal stays, not the newest"
    assert log.add(a.header, 0, at(3)) is None, "the same header twice is no fault"
    lower = [reseal(chain, a, member, timestamp=at(s)) for s in (0, 1, 2)]
    for block in lower:  # (slots 0-2 and 3: the key's 4 places; slot 3 is its highest)
        assert log.add(block.header, 0, at(3)) is None
    # The slot lead ahead of the clock: slot 4 only from half a slot before it starts.
    ahead = reseal(chain, a, member, timestamp=at(4))
    assert log.add(ahead.header, 0, at(3)) is None and len(log) == 5
    assert log.add(ahead.header, 0, at(4) - chain.params.block_interval_ms // 2) is None
    assert len(log) == 5, "the key's lowest slot went, for its own new one"
    assert log.add(b.header, 0, at(4)) == a.header
    assert log.add(reseal(chain, kept, other, state_root=bytes(32)).header, 0, at(4)) == kept.header
    # Below the last final block's slot nothing is noted.
    old = reseal(chain, kept, other, timestamp=at(1))
    assert slot_of(chain.params, old.header.timestamp) < 2
    assert log.add(old.header, 2, at(4)) is None and len(log) == 5
