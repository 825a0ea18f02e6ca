"""Validators of a permissioned chain on the in-memory network: sealing in turn, votes and
finality, an equivocating validator proven and removed, finality halting without a quorum."""

from __future__ import annotations

from pathlib import Path

from gridnet.crypto.keys import PrivateKey
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import CONSENSUS_POA, Validator
from gridnet.ledger.poa import validator_set
from gridnet.net.memory import MemoryNetwork
from gridnet.node.messages import Message
from gridnet.node.node import Node, NodeConfig, Outgoing
from tests.helpers import GENESIS_TIME, test_params

KEYS = [PrivateKey.from_label(f"net-validator-{i}") for i in range(4)]
AHEAD_MS = 60_000


class ClockAhead(Node):
    """A validator whose clock runs ``AHEAD_MS`` ahead of the others'."""

    def tick(self, now: int) -> list[Outgoing]:
        return super().tick(now + AHEAD_MS)

    def handle(self, peer: str, msg: Message, now: int) -> list[Outgoing]:
        return super().handle(peer, msg, now + AHEAD_MS)


def make_network(
    tmp_path: Path, *, equivocating: int | None = None, ahead: int | None = None, observers: int = 0
) -> tuple[MemoryNetwork, list[Node]]:
    members = tuple(sorted((Validator(k.public_key, 1) for k in KEYS), key=lambda v: v.key))
    params = test_params(KEYS, consensus=CONSENSUS_POA, validators=members, block_interval_ms=1_000)
    net = MemoryNetwork(start_ms=GENESIS_TIME, latency_ms=40, jitter_ms=30, seed=3)
    nodes = []
    for i in range(4 + observers):
        chain = Chain.create(tmp_path / f"n{i}", params)
        config = NodeConfig(validator=KEYS[i] if i < 4 else None, equivocate=i == equivocating)
        kind = ClockAhead if i == ahead else Node
        nodes.append(net.add(kind(f"n{i}", chain, config)))
    net.link_all()
    return net, nodes


def final_height(node: Node) -> int:
    final = node.chain.finalized()
    assert final is not None
    return final.height


def test_validators_seal_in_turn_and_finalize(tmp_path: Path) -> None:
    net, nodes = make_network(tmp_path, observers=1)
    net.run_for(20_000)
    heights = {n.chain.height for n in nodes}
    assert min(heights) >= 15, heights
    assert min(final_height(n) for n in nodes) >= min(heights) - 4
    observer = nodes[4]
    for n in nodes[:4]:
        final = n.chain.finalized()
        assert final is not None
        assert observer.chain.main[final.height].hash == final.hash, "one final history everywhere"
    assert {n.stats.blocks_mined for n in nodes[:4]} and observer.stats.blocks_mined == 0


def test_an_equivocating_validator_is_proven_and_removed_and_finality_goes_on(tmp_path: Path) -> None:
    net, nodes = make_network(tmp_path, equivocating=3)
    net.run_for(40_000)
    honest = nodes[:3]
    for n in honest:
        assert validator_set(n.chain.view()).member(KEYS[3].public_key) is None, n.name
    finals = [n.chain.finalized() for n in honest]
    assert min(f.height for f in finals if f is not None) >= 20
    top = max(finals, key=lambda f: f.height if f else 0)
    assert top is not None
    for n in honest:  # safety: every final block is on every honest main chain
        f = n.chain.finalized()
        assert f is not None and n.chain.main[f.height].hash == top_hash_at(nodes, f.height)


def top_hash_at(nodes: list[Node], height: int) -> bytes:
    hashes = {n.chain.main[height].hash for n in nodes[:3] if n.chain.height >= height}
    assert len(hashes) == 1
    return hashes.pop()


def test_a_validator_whose_clock_runs_ahead_takes_no_slot_of_the_others(tmp_path: Path) -> None:
    """Its blocks of slots a minute ahead are refused until their time (TimestampTooFarInFuture,
    declined, no fault): the others seal their own slots and finalize."""
    net, nodes = make_network(tmp_path, ahead=3)
    net.run_for(20_000)
    honest = nodes[:3]
    sealers = [e.header.proposer for e in honest[0].chain.main[1:]]
    for k in KEYS[:3]:
        assert sealers.count(k.public_key) >= 4, [sealers.count(k.public_key) for k in KEYS]
    assert min(final_height(n) for n in honest) >= 10
    assert all(n.stats.declined["HeadersAhead"] >= 1 for n in honest)


def test_two_of_four_away_halt_finality_and_it_resumes_when_they_return(tmp_path: Path) -> None:
    net, nodes = make_network(tmp_path)
    net.run_for(8_000)
    net.partition(["n0", "n1"], ["n2", "n3"])
    net.run_for(2_000)
    halted = [final_height(n) for n in nodes[:2]]
    net.run_for(10_000)
    assert [final_height(n) for n in nodes[:2]] == halted, "no quorum, no new final block"
    assert nodes[0].chain.height > halted[0] + 3, "blocks keep coming in the slots of those present"
    net.heal()
    net.run_for(15_000)
    assert min(final_height(n) for n in nodes) > max(halted) + 3


def test_the_api_shows_finality_and_the_validator_set(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from gridnet.node.api import create_app

    net, nodes = make_network(tmp_path)
    net.run_for(8_000)
    node = nodes[0]
    app = create_app(node, clock=lambda: net.now, broadcast=lambda out: None)
    with TestClient(app) as client:
        head = client.get("/head").json()
        final = node.chain.finalized()
        assert final is not None and final.height >= 3
        assert head["consensus"] == "poa"
        assert (head["finalized_height"], head["finalized_hash"]) == (final.height, final.hash.hex())
        assert head["justified_height"] > head["finalized_height"]
        assert (head["finalized_slot"], head["justified_slot"]) == (final.slot, node.chain.justified().slot)
        assert head["justified_slot"] > head["finalized_slot"] >= head["finalized_height"]
        members = client.get("/state/validator_set/63757272656e74").json()["record"]["members"]
        assert sorted(m["key"] for m in members) == sorted(k.public_key.hex() for k in KEYS)


def test_a_restarted_validator_remembers_its_last_seal_and_vote(tmp_path: Path) -> None:
    """What a validator signed is in its store before it is sent: a node started again on the
    same data directory never seals a second block for that slot nor a conflicting vote."""
    net, nodes = make_network(tmp_path)
    net.run_for(6_000)
    node = nodes[0]
    assert node.stats.blocks_mined >= 1
    sealed, voted = node._proposed_slot, node._last_vote
    assert voted.target >= 1
    again = Node("n0-again", node.chain, NodeConfig(validator=KEYS[0]))
    assert (again._proposed_slot, again._last_vote) == (sealed, voted)
