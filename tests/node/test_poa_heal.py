"""Finality after a partition heals (the red team's stall): the majority of validators spent
the partition on the longer branch, the minority on a shorter one justified one checkpoint
higher, which every node follows once the network heals. Votes name slots, not heights, so
the majority's votes on the losing branch (for blocks far above the followed branch's height,
but in earlier slots than its new blocks) do not keep it from voting on the followed branch.
Five validators on the in-memory network: four votes of five are needed (more than two
thirds), so neither side justifies anything while it is cut off."""

from __future__ import annotations

from pathlib import Path

from gridnet.crypto.keys import PrivateKey
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import CONSENSUS_POA, Validator
from gridnet.ledger.poa import slot_of, validator_set
from gridnet.net.memory import MemoryNetwork
from gridnet.node.messages import Message, VoteMsg
from gridnet.node.node import Node, NodeConfig, Outgoing
from tests.helpers import GENESIS_TIME, test_params

KEYS = [PrivateKey.from_label(f"heal-validator-{i}") for i in range(5)]
INTERVAL_MS = 1_000
PARTITION_MS = 150_000
RESUME_SLOTS = 6
"""Finality resumes on the followed branch within this many slots of the heal: a block sealed
after the heal is final on every node by then. With every validator up, the first block
sealed on the followed branch after the heal gets all five votes, the next block justifies
it and the one after finalizes it: three slots (measured: 3, seeds 1 to 11), three more for
the majority to fetch the branch. (Votes naming heights took 32 slots here: until the
followed branch grew past the majority's last target height.)"""


class VotesLostToward(Node):
    """A validator whose votes (its own and those it relays) never reach the nodes named in
    ``votes_lost_to`` (a lossy link, one way): those nodes cannot count its votes in their blocks."""

    votes_lost_to: frozenset[str] = frozenset()

    def _filter(self, out: list[Outgoing]) -> list[Outgoing]:
        return [(p, m) for p, m in out if not (p in self.votes_lost_to and isinstance(m, VoteMsg))]

    def tick(self, now: int) -> list[Outgoing]:
        return self._filter(super().tick(now))

    def handle(self, peer: str, msg: Message, now: int) -> list[Outgoing]:
        return self._filter(super().handle(peer, msg, now))


def justified_slot(node: Node) -> int:
    justified = node.chain.justified()
    assert justified is not None
    return slot_of(node.chain.params, node.chain.main[justified.height].header.timestamp)


def final_slot(node: Node) -> int:
    final = node.chain.finalized()
    assert final is not None
    return slot_of(node.chain.params, node.chain.main[final.height].header.timestamp)


def test_finality_resumes_within_a_few_slots_after_a_long_partition_heals(tmp_path: Path) -> None:
    members = tuple(sorted((Validator(k.public_key, 1) for k in KEYS), key=lambda v: v.key))
    params = test_params(KEYS, consensus=CONSENSUS_POA, validators=members, block_interval_ms=INTERVAL_MS)
    net = MemoryNetwork(start_ms=GENESIS_TIME, latency_ms=40, jitter_ms=30, seed=5)
    nodes: list[Node] = []
    for i, key in enumerate(KEYS):
        chain = Chain.create(tmp_path / f"n{i}", params)
        nodes.append(net.add(VotesLostToward(f"n{i}", chain, NodeConfig(validator=key))))
    net.link_all()
    majority, minority = nodes[:3], nodes[3:]
    for n in minority:  # (the majority's votes reach the minority; not the other way round)
        n.votes_lost_to = frozenset(m.name for m in majority)
    net.run_for(8_000)

    # The partition falls just after a minority validator sealed a block that justifies its
    # parent: the majority never sees it, and lacks the minority's votes to do the same.
    deadline = net.now + 30_000
    while max(justified_slot(n) for n in minority) <= max(justified_slot(n) for n in majority):
        assert net.now < deadline, "no block of the minority justified a checkpoint"
        net.step(100)
    net.partition([n.name for n in majority], [n.name for n in minority])
    cut = slot_of(params, net.now)
    for n in minority:
        n.votes_lost_to = frozenset()
    net.run_for(PARTITION_MS)
    losing, followed = majority[0].chain, minority[0].chain
    assert losing.height > followed.height + 20, (losing.height, followed.height)
    assert justified_slot(minority[0]) > justified_slot(majority[0]), "the shorter branch is justified higher"
    stalled_final = max(final_slot(n) for n in nodes)
    assert stalled_final <= cut, "neither side finalizes while cut off (four votes of five needed)"

    net.heal()
    healed = slot_of(params, net.now)
    deadline = net.now + 120 * INTERVAL_MS
    while not min(final_slot(n) for n in nodes) > healed:
        assert net.now < deadline, f"finality did not resume within 120 slots (final {stalled_final})"
        net.step(100)
    resumed = slot_of(params, net.now) - healed
    assert resumed <= RESUME_SLOTS, f"finality resumed {resumed} slots after the heal"
    for n in nodes:  # no validator was reported: the votes across the heal do not conflict
        assert len(validator_set(n.chain.view()).members) == len(KEYS), n.name
        assert not n._reported, n.name
    for n in nodes:  # safety: one final history everywhere
        final = n.chain.finalized()
        assert final is not None
        for m in nodes:
            assert m.chain.main[final.height].hash == final.hash, (n.name, m.name)
