"""gridnet devnet: N node processes on 127.0.0.1 converge on one head and are all stopped.

No wall-clock budget: the tests wait for each condition (linked, converged) with a ceiling
far above what a loaded machine needs, so a busy machine is slower, never a failure."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from gridnet.crypto.keys import CORES_ENV
from gridnet.ledger.chain import Chain
from gridnet.node.devnet import Devnet, cores_each
from tests.helpers import processes_using, wait_for

LINK_S = 120.0
"""Ceiling for every node to be up and linked to every other [s]."""
CONVERGE_S = 180.0
"""Ceiling for the nodes to show one head at height ``CONVERGED_AT`` or above [s]."""
CONVERGED_AT = 5
"""Three blocks above the last common one still leave a common block above genesis."""


def one_head(net: Devnet) -> int | None:
    """The height of the head every node shows, if they all show the same one."""
    heads = set()
    for node in net.nodes:
        head = node.head()
        if head is None:
            return None
        heads.add((str(head["hash"]), int(str(head["height"]))))
    return heads.pop()[1] if len(heads) == 1 else None


def link_events(net: Devnet) -> str:
    """The nodes' log lines about links that failed or were cut (for a failure's message)."""
    lines = []
    for node in net.nodes:
        log = node.data_dir / "node.log"
        if log.exists():
            lines += [
                f"{node.name}: {line}"
                for line in log.read_text().splitlines()
                if re.search(r"cut off|refused|cannot link|failed|disconnected|broke", line)
            ]
    return "\n".join(lines[-40:])


def test_four_nodes_converge_and_every_process_is_stopped(tmp_path: Path) -> None:
    net = Devnet(tmp_path / "devnet", 4, hashes_per_tick=100)
    try:
        net.start()
        # Four nodes on one machine: each checks signatures on its share of it (read once the
        # process runs gridnet: between fork and exec it shows the parent's environment).
        share = f"{CORES_ENV}={os.environ.get(CORES_ENV, str(cores_each(4)))}".encode()
        for node in net.nodes:
            assert node.process is not None
            proc = Path(f"/proc/{node.process.pid}")
            assert wait_for(lambda: b"gridnet" in (proc / "cmdline").read_bytes(), LINK_S)  # noqa: B023
            assert share in (proc / "environ").read_bytes().split(b"\0")
        assert wait_for(lambda: all(s.peers == 3 for s in net.status()), LINK_S), (
            f"every node linked to the 3 others: {net.status()}\n{link_events(net)}"
        )
        assert wait_for(lambda: (one_head(net) or 0) >= CONVERGED_AT, CONVERGE_S), (
            f"the four showed one head at height {CONVERGED_AT} or above: {net.status()}"
        )
    finally:
        net.stop()
    assert all(node.process is not None and node.process.poll() is not None for node in net.nodes)
    # All four miners stop within moments of each other, so only their last blocks may
    # differ; everything below is common.
    chains = [Chain.open(node.data_dir, readonly=True) for node in net.nodes]
    try:
        common = min(c.height for c in chains) - 3
        assert common >= 1
        assert len({c.main[common].hash for c in chains}) == 1
    finally:
        for c in chains:
            c.close()


def test_the_command_runs_for_its_duration_and_reports(tmp_path: Path) -> None:
    """The command runs for its duration, reports every node's status as it last saw it (a
    node still starting on a busy machine is reported as such) and stops every process it
    started. Linking within a time is not asked of it: the test above waits for that."""
    out = tmp_path / "d"
    duration = 4.0
    started = time.monotonic()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "gridnet", "devnet"),
            *("--nodes", "2", "--out", str(out), "--duration", str(duration)),
        ],
        capture_output=True,
        text=True,
        timeout=240,  # start-up, the duration and stopping, on a very busy machine
        env={**os.environ, "COLUMNS": "200"},
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed >= duration
    # Where each chain ended, read from its data directory once the nodes stopped (the last
    # status polled could be a block short).
    found = re.search(r"devnet stopped: n0 height (\d+)\s+n1 height (\d+)", result.stdout)
    assert found, result.stdout
    for name, height in zip(("n0", "n1"), found.groups(), strict=True):
        chain = Chain.open(out / name, readonly=True)
        try:
            assert chain.height == int(height)
        finally:
            chain.close()
    assert processes_using(out) == []


def start_two_node_devnet(out: Path) -> subprocess.Popen[str]:
    """``gridnet devnet --nodes 2 --out OUT`` started, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "gridnet", "devnet", "--nodes", "2", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_sigterm_stops_the_devnet_and_every_node_it_started(tmp_path: Path) -> None:
    """SIGTERM is how a supervisor stops a command: the devnet stops its node processes on the
    way out (they were left running, reparented to init) and exits 0."""
    out = tmp_path / "d"
    proc = start_two_node_devnet(out)
    try:
        assert wait_for(lambda: len(processes_using(out)) >= 3, LINK_S)  # the command and its nodes
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=LINK_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stdout + stderr
    assert "devnet stopped" in stdout
    assert wait_for(lambda: processes_using(out) == [], LINK_S)


def test_a_node_that_exits_stops_the_devnet_with_one_line(tmp_path: Path) -> None:
    """A node process that exits ended the command with a RuntimeError's traceback; now it is
    one line naming the node and where to look, and the other nodes are stopped."""
    out = tmp_path / "d"
    proc = start_two_node_devnet(out)
    try:

        def n1_pid() -> int | None:
            try:
                return int(json.loads((out / "n1" / "node.json").read_text())["pid"])
            except (OSError, ValueError, KeyError):
                return None

        assert wait_for(lambda: n1_pid() is not None, LINK_S)
        pid = n1_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # (the node process this test's devnet started, by its PID)
        stdout, stderr = proc.communicate(timeout=LINK_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 1, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: n1 exited (see "), stderr
    assert wait_for(lambda: processes_using(out) == [], LINK_S)
