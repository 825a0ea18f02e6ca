"""Real node processes on 127.0.0.1: encrypted, authenticated TCP links, gossip and sync.

The tests wait for what they need (linked, synced, a head reached) by reading the nodes'
APIs and stores, with ceilings far above what a busy machine needs; none sleeps a fixed time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.ledger.chain import Chain
from gridnet.node.devnet import LOCAL, DevNode, free_port, stop_all
from tests.helpers import test_params, wait_for

SYNC_S = 180.0
"""Ceiling for nodes to start, link and reach a head [s]."""

Head = tuple[int, str]
"""(height, hash hex) of a node's head."""


class Cluster:
    """Node processes sharing one genesis; every process is stopped (by PID) at the end."""

    def __init__(self, root: Path, n: int) -> None:
        params = test_params([], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
        self.nodes = [DevNode(f"n{i}", root / f"n{i}", free_port(), free_port()) for i in range(n)]
        for i, node in enumerate(self.nodes):
            Chain.create(node.data_dir, params).close()
            write_key_file(
                node.data_dir / "node.key", PrivateKey.from_label(f"process-node-{i}-{os.getpid()}")
            )

    def start(self, i: int, *, mine: bool = False, peers: tuple[int, ...] = ()) -> None:
        links = [a for p in peers for a in ("--peer", f"{LOCAL}:{self.nodes[p].port}")]
        self.nodes[i].start("--hashes-per-tick", "500", *links, *(["--mine"] if mine else []))

    def stop(self, i: int, sig: int = signal.SIGTERM) -> None:
        proc = self.nodes[i].process
        assert proc is not None
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        stop_all(self.nodes)

    def head(self, i: int) -> Head:
        """The head in node ``i``'s store (running or stopped)."""
        chain = Chain.open(self.nodes[i].data_dir, readonly=True)
        try:
            return chain.height, chain.head.hash.hex()
        finally:
            chain.close()

    def live_head(self, i: int) -> Head | None:
        """The head node ``i``'s API shows (None while it does not answer)."""
        head = self.nodes[i].head()
        return None if head is None else (int(str(head["height"])), str(head["hash"]))

    def height(self, i: int) -> int:
        """The height node ``i``'s API shows (-1 while it does not answer)."""
        head = self.live_head(i)
        return -1 if head is None else head[0]

    def reach(self, i: int, head: Head) -> bool:
        """Wait until node ``i`` shows ``head``."""
        return wait_for(lambda: self.live_head(i) == head, SYNC_S)

    def info(self, i: int) -> dict[str, object]:
        return json.loads((self.nodes[i].data_dir / "node.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 3)
    try:
        yield c
    finally:
        c.stop_all()


def test_nodes_sync_over_encrypted_links_and_stop_gracefully(cluster: Cluster) -> None:
    cluster.start(0, mine=True)
    cluster.start(1, peers=(0,))
    cluster.start(2, peers=(1,))  # reaches the miner only through node 1
    assert wait_for(lambda: cluster.height(2) >= 3, SYNC_S)
    cluster.stop(0)  # SIGTERM: the process closes its links and its store
    final = cluster.head(0)
    assert cluster.reach(1, final) and cluster.reach(2, final)  # its last block reaches the others
    for i in (2, 1):
        cluster.stop(i)
    heights = {cluster.head(i) for i in range(3)}
    (height, _), *_ = heights
    assert len(heights) == 1 and height >= 3
    assert cluster.info(0)["listen"] == f"{LOCAL}:{cluster.nodes[0].port}"


def test_a_restarted_node_catches_up(cluster: Cluster) -> None:
    cluster.start(0, mine=True)
    cluster.start(1, peers=(0,))
    assert wait_for(lambda: cluster.height(1) >= 2, SYNC_S)
    cluster.stop(1, signal.SIGKILL)
    killed_at = cluster.nodes[1].stored_height()
    miner = cluster.nodes[0]
    assert wait_for(lambda: miner.stored_height() >= killed_at + 3, SYNC_S)  # it moves on alone
    cluster.start(1, peers=(0,))
    behind = miner.stored_height()
    assert wait_for(lambda: cluster.height(1) >= behind, SYNC_S)
    cluster.stop(0)
    assert cluster.reach(1, cluster.head(0))
    cluster.stop(1)
    assert cluster.head(1) == cluster.head(0)


def test_halves_mining_apart_converge_on_the_most_work_chain_with_identical_state(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, 4)
    try:
        # Two halves, no link between them, each mining its own branch.
        cluster.start(0, mine=True)
        cluster.start(1, peers=(0,))
        cluster.start(2, mine=True)
        cluster.start(3, peers=(2,))
        assert wait_for(lambda: cluster.height(1) >= 2 and cluster.height(3) >= 2, SYNC_S)
        cluster.stop(2)
        cluster.stop(3)
        side_b = cluster.head(2)
        assert side_b != cluster.head(1), "the halves built different branches"
        # Heal: both come back linked to the other half (node 2 no longer mining, so the
        # end is clean: one miner, whose last block reaches everyone before the others stop).
        cluster.start(2, peers=(0,))
        cluster.start(3, peers=(0, 2))
        # Past side B's height, nodes 2 and 3 follow the one miner's chain.
        assert wait_for(lambda: all(cluster.height(i) > side_b[0] for i in (1, 2, 3)), SYNC_S)
        cluster.stop(0)
        final = cluster.head(0)
        assert all(cluster.reach(i, final) for i in (1, 2, 3))
        for i in (1, 2, 3):
            cluster.stop(i)
        for i in (2, 3):  # side B left its branch: its log says so, with the depth
            assert "sync    reorg of depth " in (cluster.nodes[i].data_dir / "node.log").read_text()
        chains = [Chain.open(node.data_dir, readonly=True) for node in cluster.nodes]
        try:
            assert len({c.head.hash for c in chains}) == 1
            assert all(c.values == chains[0].values for c in chains)
        finally:
            for c in chains:
                c.close()
    finally:
        cluster.stop_all()
