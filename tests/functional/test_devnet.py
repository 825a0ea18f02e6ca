"""gridnet devnet: N node processes on 127.0.0.1 converge on one head and are all stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gridnet.ledger.chain import Chain
from gridnet.node.devnet import Devnet, NodeStatus


def test_four_nodes_converge_and_every_process_is_stopped(tmp_path: Path) -> None:
    net = Devnet(tmp_path / "devnet", 4, hashes_per_tick=100)
    seen: list[list[NodeStatus]] = []
    net.run(6.0, seen.append)
    assert all(node.process is not None and node.process.poll() is not None for node in net.nodes)
    assert any(all(s.peers == 3 for s in status) for status in seen), "every node linked to the 3 others"
    # While running, the four were at one height (the status line showed it) ...
    assert any(len({s.height for s in status}) == 1 and (status[0].height or 0) >= 3 for status in seen)
    # ... and on one chain: all four miners stop within moments of each other, so only their
    # last blocks may differ; everything below is common.
    chains = [Chain.open(node.data_dir, readonly=True) for node in net.nodes]
    try:
        common = min(c.height for c in chains) - 3
        assert common >= 1
        assert len({c.main[common].hash for c in chains}) == 1
    finally:
        for c in chains:
            c.close()


def test_the_command_runs_for_its_duration_and_reports(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridnet",
            "devnet",
            "--nodes",
            "2",
            "--out",
            str(tmp_path / "d"),
            "--duration",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "devnet stopped: n0 height" in result.stdout and "peers 1" in result.stdout
