"""Who sealed what, as a node of a permissioned chain notes it (``node/finality.py``'s
``SealLog``): only members of the head's validator set, so that keys outside it can neither
pose as faulty validators nor push a member's seals out of the log."""

from __future__ import annotations

from pathlib import Path

from msgspec.structs import replace

from gridnet.crypto.keys import PrivateKey
from gridnet.ledger.blocks import Block
from gridnet.ledger.poa import seal_header
from gridnet.ledger.txs.validators import ReportValidatorFault
from gridnet.node.finality import SealLog
from gridnet.node.messages import BlockMsg
from gridnet.node.node import Node, NodeConfig
from tests.helpers import new_chain
from tests.ledger.test_poa import KEYS, at, grow, poa_params, propose, proposer


def sealed_by(key: PrivateKey, template: Block, chain_id: bytes, branch: int) -> BlockMsg:
    """``template`` sealed by ``key`` on an unknown parent (an orphan: kept, not validated)."""
    header = replace(template.header, prev_hash=bytes([branch]) * 32)
    return BlockMsg(replace(template, header=seal_header(key, chain_id, header)))


def test_seals_by_keys_outside_the_set_are_neither_noted_nor_reported(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "poa", poa_params())
    grow(chain, range(1, 3))
    node = Node("n0", chain, NodeConfig(validator=KEYS[0]))
    node.add_peer("p")
    node.seals = SealLog(chain.chain_id, chain.params, max_slots=8)
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
