"""A permissioned chain on real node processes (``gridnet devnet --consensus poa``): four
validators with one equivocating keep safety and finality and remove it; a fifth node syncs
and verifies the finality proofs; two of four stopped halt finality until they return.

No wall-clock budget: each condition is waited for with a generous ceiling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gridnet.ledger.chain import Chain
from gridnet.ledger.poa import validator_set
from gridnet.node.devnet import Devnet, DevNode
from tests.helpers import wait_for

CEILING_S = 240.0


def head(node: DevNode) -> dict[str, object]:
    return node.head() or {}


def final(node: DevNode) -> int:
    return int(str(head(node).get("finalized_height") or 0))


def height(node: DevNode) -> int:
    return int(str(head(node).get("height") or 0))


def test_an_equivocating_validator_is_removed_and_a_fifth_node_verifies_finality(tmp_path: Path) -> None:
    net = Devnet(tmp_path / "devnet", 5, consensus="poa", validators=4, equivocating=frozenset({3}))
    guilty = Chain.open(net.nodes[3].data_dir, readonly=True)
    try:
        members = validator_set(guilty.view()).members
    finally:
        guilty.close()
    assert len(members) == 4
    honest = net.nodes[:3]
    try:
        for i in range(4):
            net.start_node(i)
        # The honest three prove the fault, and finality goes on without the fourth.
        assert wait_for(lambda: min(final(n) for n in honest) >= 12, CEILING_S), [head(n) for n in honest]
        net.start_node(4)  # an observer, not a validator: it syncs and replays every vote
        observer = net.nodes[4]
        caught_up = lambda: height(observer) >= min(height(n) for n in honest) - 2  # noqa: E731
        assert wait_for(lambda: final(observer) >= 12 and caught_up(), CEILING_S), head(observer)
    finally:
        net.stop()
    chains = [Chain.open(n.data_dir, readonly=True) for n in net.nodes]
    try:
        key3 = next(
            m.key for m in members if m.key not in {k.key for k in validator_set(chains[0].view()).members}
        )
        for c in chains[:3] + chains[4:]:
            assert len(validator_set(c.view()).members) == 3 and key3 not in {
                m.key for m in validator_set(c.view()).members
            }
        # Safety: every node's final block is on every other honest node's main chain.
        for c in chains[:3] + chains[4:]:
            f = c.finalized()
            assert f is not None
            for other in chains[:3] + chains[4:]:
                assert other.height >= f.height and other.main[f.height].hash == f.hash
    finally:
        for c in chains:
            c.close()
    audit = subprocess.run(
        [sys.executable, "-m", "gridnet", "chain", "verify", "--data-dir", str(net.nodes[4].data_dir)],
        capture_output=True,
        text=True,
        timeout=CEILING_S,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_two_of_four_stopped_halt_finality_and_it_resumes_when_they_return(tmp_path: Path) -> None:
    net = Devnet(tmp_path / "devnet", 4, consensus="poa")
    first, second = net.nodes[:2]
    try:
        net.start()
        heads = lambda: [head(n) for n in net.nodes]  # noqa: E731
        assert wait_for(lambda: min(final(n) for n in net.nodes) >= 3, CEILING_S), heads()
        net.stop_node(2)
        net.stop_node(3)
        stopped_at = height(first)
        # Blocks keep coming in the slots of the two present; finality does not.
        assert wait_for(lambda: height(first) >= stopped_at + 4, CEILING_S), head(first)
        halted = final(first)
        assert wait_for(lambda: height(first) >= stopped_at + 8, CEILING_S), head(first)
        assert final(first) == halted and final(second) <= halted
        net.start_node(2)
        net.start_node(3)
        assert wait_for(lambda: min(final(n) for n in net.nodes) >= halted + 3, CEILING_S), heads()
    finally:
        net.stop()
    assert all(n.process is not None and n.process.poll() is not None for n in net.nodes)
