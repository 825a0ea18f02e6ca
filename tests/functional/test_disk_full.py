"""A node whose data directory's disk is full, for real: a small tmpfs mounted for the test
(it needs root; skipped where mounting is not allowed) and filled with a file until the
kernel answers ENOSPC. The node keeps answering its API, ``/health`` says 503 with the
reason (SQLite's "database or disk is full") instead of serving a stale head as healthy,
and once the file is deleted the node writes again and mines, or syncs, on. Every process
started here is stopped (by PID) before the file system is unmounted."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of ``DISK`` mounted on a fresh directory; unmounted when the test ends."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, capture_output=True)


def new_node(root: Path, name: str, params: ChainParams) -> DevNode:
    node = DevNode(name, root / name, free_port(), free_port())
    Chain.create(node.data_dir, params).close()
    write_key_file(node.data_dir / "node.key", PrivateKey.from_label(f"disk-{name}"))
    return node


def fill(disk: Path) -> Path:
    """Write a file until the file system has no byte left; the file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while os.write(fd, bytes(size)):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


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


def failing(node: DevNode) -> bool:
    status, body = health(node)
    return status == 503 and FULL in str(body.get("message"))


def submit(node: DevNode, tx: Transaction) -> tuple[int, object]:
    """(HTTP status, body) of POST /transactions."""
    client = node.client()
    try:
        return client.call("POST", "/transactions", {"tx": encode(tx).hex()})
    finally:
        client.close()


def test_a_miner_whose_disk_fills_says_so_and_mines_on_once_space_returns(
    small_disk: Path, nodes: list[DevNode]
) -> None:
    params = test_params([USER], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    chain = Chain.create(small_disk / "wallet", params)
    tx = sign(chain, USER, Transfer(PrivateKey.from_label("disk-payee").address, 1), 0)
    chain.close()
    miner = new_node(small_disk, "miner", params)
    nodes.append(miner)
    miner.start("--mine", "--hashes-per-tick", "300")
    assert wait_for(lambda: height(miner) >= 2, WAIT_S)
    filler = fill(small_disk)
    assert wait_for(lambda: failing(miner), WAIT_S)
    status, body = health(miner)
    stuck = height(miner)  # the API still answers
    assert status == 503 and body["code"] == "Unhealthy"
    assert f"its head, height {stuck}, may be stale" in str(body["message"])
    # A user's transaction is not taken while it cannot be written, and the user is told.
    status, answer = submit(miner, tx)
    assert status == 503 and isinstance(answer, dict) and answer["code"] == "StoreUnavailable"
    assert FULL in answer["message"]
    filler.unlink()
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
    small_disk: Path, tmp_path: Path, nodes: list[DevNode]
) -> None:
    params = test_params([], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    miner = new_node(tmp_path, "miner", params)  # on the ordinary disk
    follower = new_node(small_disk, "follower", params)
    nodes += [miner, follower]
    miner.start("--mine", "--hashes-per-tick", "300")
    follower.start("--peer", f"{LOCAL}:{miner.port}")
    assert wait_for(lambda: height(follower) >= 2, WAIT_S)
    filler = fill(small_disk)
    assert wait_for(lambda: failing(follower), WAIT_S)
    stuck = height(follower)
    assert wait_for(lambda: height(miner) >= stuck + 3, WAIT_S)  # the miner went on
    assert height(follower) == stuck and failing(follower)
    filler.unlink()
    assert wait_for(lambda: health(follower)[0] == 200, WAIT_S)
    target = height(miner)
    assert wait_for(lambda: height(follower) >= target, WAIT_S)
