"""A node whose data directory cannot be written, for real, two ways: a small tmpfs mounted
for the test (it needs root; skipped where mounting is not allowed) filled with a file until
the kernel answers ENOSPC; and, for any user, the node process's file-size limit
(RLIMIT_FSIZE, set from outside with prlimit) lowered so every write past a file's first byte
fails with EFBIG. The node keeps answering its API, ``/health`` says 503 with the reason
(SQLite's "database or disk is full", or "disk I/O error") instead of serving a stale head as
healthy, and once the file is deleted (the limit lifted) the node writes again and mines, or
syncs, on. Meanwhile it keeps its links: it still sends its status, so its peers do not close
them as idle. Every process started here is stopped (by PID) before the file system is
unmounted."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.encoding import encode
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import ChainParams
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.txs.transfer import Transfer
from gridnet.node.devnet import LOCAL, DevNode, free_port, stop_all
from tests.helpers import sign, test_params, wait_for

DISK = "16m"
"""Size of the file system the node writes to."""
WAIT_S = 120.0
"""Ceiling for a node to start, fail, recover or catch up [s]: far above what a busy machine
needs (the tests wait for conditions, never for a fixed time)."""
USER = PrivateKey.from_label("disk-user")
FULL = "database or disk is full"
"""SQLite's message for SQLITE_FULL."""


class Disk(Protocol):
    root: Path
    """Where the data directories that fill go."""
    message: str
    """What SQLite says when a write fails there."""

    def fill(self, node: DevNode) -> None: ...
    def free(self, node: DevNode) -> None: ...


class SmallDisk:
    """A tmpfs of ``DISK``, filled with a file until the kernel answers ENOSPC."""

    message = FULL

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self, node: DevNode) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT)
        try:
            for size in (1 << 20, 1 << 12, 1):
                try:
                    while os.write(fd, bytes(size)):
                        pass
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)

    def free(self, node: DevNode) -> None:
        self.filler.unlink()


class FileSizeLimit:
    """The node process may write no file past its first byte (Python ignores SIGXFSZ, so a
    write past it fails with EFBIG, which SQLite reports as an I/O error)."""

    message = "disk I/O error"

    def __init__(self, root: Path) -> None:
        self.root = root

    def fill(self, node: DevNode) -> None:
        assert node.process is not None
        _, hard = resource.prlimit(node.process.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(node.process.pid, resource.RLIMIT_FSIZE, (1, hard))

    def free(self, node: DevNode) -> None:
        assert node.process is not None
        _, hard = resource.prlimit(node.process.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(node.process.pid, resource.RLIMIT_FSIZE, (hard, hard))


@pytest.fixture(params=["tmpfs", "file-size limit"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Disk]:
    """A place whose writes can be made to fail: a tmpfs of ``DISK`` mounted on a fresh
    directory (unmounted when the test ends), or the node process's file-size limit."""
    root = tmp_path / "disk"
    root.mkdir()
    if request.param == "file-size limit":
        yield FileSizeLimit(root)
        return
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(root)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield SmallDisk(root)
    finally:
        subprocess.run(["umount", str(root)], check=True, capture_output=True)


def new_node(root: Path, name: str, params: ChainParams) -> DevNode:
    node = DevNode(name, root / name, free_port(), free_port())
    Chain.create(node.data_dir, params).close()
    write_key_file(node.data_dir / "node.key", PrivateKey.from_label(f"disk-{name}"))
    return node


def health(node: DevNode) -> tuple[int, dict[str, object]]:
    """(HTTP status, body) of ``/health``; (0, {}) when the API does not answer."""
    try:
        with urllib.request.urlopen(f"http://{LOCAL}:{node.api_port}/health", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


def height(node: DevNode) -> int:
    head = node.head()
    return -1 if head is None else int(str(head["height"]))


def failing(node: DevNode, disk: Disk) -> bool:
    status, body = health(node)
    return status == 503 and disk.message in str(body.get("message"))


def submit(node: DevNode, tx: Transaction) -> tuple[int, object]:
    """(HTTP status, body) of POST /transactions."""
    client = node.client()
    try:
        return client.call("POST", "/transactions", {"tx": encode(tx).hex()})
    finally:
        client.close()


def test_a_miner_whose_disk_fills_says_so_and_mines_on_once_space_returns(
    disk: Disk, tmp_path: Path, nodes: list[DevNode]
) -> None:
    params = test_params([USER], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    chain = Chain.create(tmp_path / "wallet", params)
    tx = sign(chain, USER, Transfer(PrivateKey.from_label("disk-payee").address, 1), 0)
    chain.close()
    miner = new_node(disk.root, "miner", params)
    nodes.append(miner)
    miner.start("--mine", "--hashes-per-tick", "300")
    assert wait_for(lambda: height(miner) >= 2, WAIT_S)
    disk.fill(miner)
    assert wait_for(lambda: failing(miner, disk), WAIT_S)
    status, body = health(miner)
    stuck = height(miner)  # the API still answers
    assert status == 503 and body["code"] == "Unhealthy"
    assert f"its head, height {stuck}, may be stale" in str(body["message"])
    # A user's transaction is not taken while it cannot be written, and the user is told.
    status, answer = submit(miner, tx)
    assert status == 503 and isinstance(answer, dict) and answer["code"] == "StoreUnavailable"
    assert disk.message in answer["message"]
    disk.free(miner)
    assert wait_for(lambda: health(miner)[0] == 200, WAIT_S)
    assert submit(miner, tx)[0] == 202
    assert wait_for(lambda: height(miner) >= stuck + 3, WAIT_S)
    stop_all(nodes)
    log = (miner.data_dir / "node.log").read_text()
    assert "the store accepts writes again" in log
    chain = Chain.open(miner.data_dir, readonly=True)  # what it mined after is stored
    try:
        assert chain.height >= stuck + 3
    finally:
        chain.close()


def test_a_follower_whose_disk_fills_catches_up_once_space_returns(
    disk: Disk, tmp_path: Path, nodes: list[DevNode]
) -> None:
    params = test_params([], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    miner = new_node(tmp_path, "miner", params)  # on the ordinary disk
    follower = new_node(disk.root, "follower", params)
    nodes += [miner, follower]
    miner.start("--mine", "--hashes-per-tick", "300")
    follower.start("--peer", f"{LOCAL}:{miner.port}")
    assert wait_for(lambda: height(follower) >= 2, WAIT_S)
    disk.fill(follower)
    assert wait_for(lambda: failing(follower, disk), WAIT_S)
    stuck = height(follower)
    assert wait_for(lambda: height(miner) >= stuck + 3, WAIT_S)  # the miner went on
    assert height(follower) == stuck and failing(follower, disk)
    disk.free(follower)
    assert wait_for(lambda: health(follower)[0] == 200, WAIT_S)
    target = height(miner)
    assert wait_for(lambda: height(follower) >= target, WAIT_S)


IDLE_MS = 6_000
"""The peers' idle timeout in ``test_a_node_that_cannot_write_its_store_keeps_its_links``
(the least a node takes; 30 s by default)."""


def link_age(node: DevNode, peer: str) -> float | None:
    """How long ``node``'s link with ``peer`` (an address) has been up [s]; None: no link."""
    client = node.client()
    try:
        status, body = client.call("GET", "/peers")
    finally:
        client.close()
    assert status == 200 and isinstance(body, list), (status, body)
    ages = [p["connected_s"] for p in body if p["address"] == peer]
    return float(ages[0]) if ages and ages[0] is not None else None


def test_a_node_that_cannot_write_its_store_keeps_its_links(tmp_path: Path, nodes: list[DevNode]) -> None:
    """A miner whose writes fail (the file-size limit, as a full disk) stopped ticking, and
    with it stopped sending anything to a follower that had nothing to ask it: the follower
    closed the link every idle timeout (``LinkIdle``), and the miner dialled again. Now it
    still sends its status while ``/health`` says it cannot write: the follower keeps the one
    link for three idle timeouts and more, and follows again once the miner writes."""
    params = test_params([], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    miner = new_node(tmp_path, "miner", params)
    follower = new_node(tmp_path, "follower", params)
    nodes += [miner, follower]
    for node in (miner, follower):
        (node.data_dir / "gridnet.toml").write_text(f"peer_idle_timeout_ms = {IDLE_MS}\n")
    miner.start("--mine", "--hashes-per-tick", "300")
    follower.start("--peer", f"{LOCAL}:{miner.port}")
    assert wait_for(lambda: height(follower) >= 2, WAIT_S)
    disk = FileSizeLimit(tmp_path)
    disk.fill(miner)
    assert wait_for(lambda: failing(miner, disk), WAIT_S)
    failed = time.monotonic()
    name = address_to_text(PrivateKey.from_label("disk-miner").address)

    def same_link() -> bool:
        """The follower's link with the miner is the one it had when the miner failed (a
        link closed as idle is dialled again: a new one)."""
        age = link_age(follower, name)
        return age is not None and age >= time.monotonic() - failed - 0.5

    held = 3 * IDLE_MS / 1000
    assert wait_for(lambda: not same_link() or time.monotonic() - failed >= held, WAIT_S)
    assert same_link()
    assert failing(miner, disk)  # (it could not write all along)
    assert "closed the idle link" not in (follower.data_dir / "node.log").read_text()
    stuck = height(miner)
    disk.free(miner)
    assert wait_for(lambda: health(miner)[0] == 200, WAIT_S)
    assert wait_for(lambda: height(follower) >= stuck + 2, WAIT_S)
