"""Real node processes on 127.0.0.1: encrypted, authenticated TCP links, gossip and sync."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import params_to_toml
from tests.helpers import test_params

LOCAL = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


class Cluster:
    """Node processes sharing one genesis; every process is stopped (by PID) at the end."""

    def __init__(self, root: Path, n: int) -> None:
        self.root = root
        params = test_params([], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
        genesis = root / "genesis.toml"
        genesis.write_text(params_to_toml(params))
        self.dirs = [root / f"n{i}" for i in range(n)]
        self.ports = [free_port() for _ in range(n)]
        for i, d in enumerate(self.dirs):
            Chain.create(d, params).close()
            write_key_file(d / "node.key", PrivateKey.from_label(f"process-node-{i}-{os.getpid()}"))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, i: int, *, mine: bool = False, peers: tuple[int, ...] = ()) -> None:
        cmd = [
            sys.executable,
            "-m",
            "gridnet",
            "node",
            "--data-dir",
            str(self.dirs[i]),
            "--listen",
            f"{LOCAL}:{self.ports[i]}",
            "--hashes-per-tick",
            "500",
        ]
        for p in peers:
            cmd += ["--peer", f"{LOCAL}:{self.ports[p]}"]
        if mine:
            cmd.append("--mine")
        self.procs[i] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self, i: int, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(i)
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop_all(self) -> None:
        for i in list(self.procs):
            self.stop(i)

    def head(self, i: int) -> tuple[int, bytes]:
        chain = Chain.open(self.dirs[i], readonly=True)
        try:
            return chain.height, chain.head.hash
        finally:
            chain.close()

    def info(self, i: int) -> dict[str, object]:
        return json.loads((self.dirs[i] / "node.json").read_text())  # type: ignore[no-any-return]


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
    time.sleep(6)
    cluster.stop(0)  # SIGTERM: the process closes its links and its store
    time.sleep(1)  # its last block reaches the others
    for i in (2, 1):
        cluster.stop(i)
    heights = {cluster.head(i) for i in range(3)}
    (height, _), *_ = heights
    assert len(heights) == 1 and height >= 3
    assert cluster.info(0)["listen"] == f"{LOCAL}:{cluster.ports[0]}"


def test_a_restarted_node_catches_up(cluster: Cluster) -> None:
    cluster.start(0, mine=True)
    cluster.start(1, peers=(0,))
    time.sleep(3)
    cluster.stop(1, signal.SIGKILL)
    time.sleep(3)
    cluster.start(1, peers=(0,))
    time.sleep(3)
    cluster.stop(0)
    time.sleep(1)
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
        time.sleep(4)
        cluster.stop(2)
        cluster.stop(3)
        side_b = cluster.head(2)
        assert side_b != cluster.head(1), "the halves built different branches"
        # Heal: both come back linked to the other half (node 2 no longer mining, so the
        # end is clean: one miner, whose last block reaches everyone before the others stop).
        cluster.start(2, peers=(0,))
        cluster.start(3, peers=(0, 2))
        time.sleep(5)
        cluster.stop(0)
        time.sleep(1.5)
        for i in (1, 2, 3):
            cluster.stop(i)
        chains = [Chain.open(d, readonly=True) for d in cluster.dirs]
        try:
            assert len({c.head.hash for c in chains}) == 1
            assert all(c.values == chains[0].values for c in chains)
        finally:
            for c in chains:
                c.close()
    finally:
        cluster.stop_all()
