"""Crash safety of the SQLite store: SIGKILL a writer at random moments, then reopen.

A child process mines (or imports, with reorgs) blocks full of transactions in a
tight loop; the parent kills it with SIGKILL after a random delay, several times.
After every kill the store must open without any repair, verify from genesis, and
its head must never have moved back; a new writer must carry on from there.
"""

from __future__ import annotations

import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.verify import verify_chain
from gridnet.ledger.wallet import mine_blocks, submit
from tests.helpers import test_keys, test_params, wait_for

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 7
MIN_ROUNDS = 4
TIME_BUDGET_S = 18.0  # per test, for the kill rounds (past it, no new round starts)
READY_TIMEOUT_S = 120.0
PROGRESS_S = 120.0
"""Ceiling for the writer to commit what the test checks (a block, a reorg) [s]."""

CHILD = r'''
"""Writer killed by the crash test: loops forever, never exits on its own."""
import sys
from pathlib import Path

root, mode, data, shadow = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
sys.path.insert(0, root)

from gridnet.crypto.keys import PrivateKey
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.wallet import mine_blocks, submit
from tests.helpers import extend, sign, test_keys

keys = test_keys(4)
# Explicit fee: the default (ledger.transactions.min_fee) is one byte short once a
# nonce reaches 128; test_cli.py covers that bug, this test is about crash safety.
FEE = 1_000


def transfers(chain, sender, n):
    nonce = chain.account(sender.address).nonce
    to = [k for k in keys if k is not sender]
    return [
        sign(chain, sender, Transfer(to[i % len(to)].address, 1_000 + i), nonce + i, FEE) for i in range(n)
    ]


def sync(src, dst):
    """Import into dst every block of src's main chain that dst does not know."""
    missing = []
    for entry in reversed(src.main):
        if entry.hash in dst.entries:
            break
        missing.append(entry)
    for entry in reversed(missing):
        block = src.get_block(entry.hash)
        dst.add_block(block, now=block.header.timestamp)


if mode == "wallet":
    # What 'gridnet tx transfer' + 'gridnet chain mine' do, by wall clock.
    chain = Chain.open(data)
    miner = PrivateKey.from_label("crash-miner")
    print("ready", chain.height, flush=True)
    i = 0
    while True:
        sender, to = keys[i % 4], keys[(i + 1) % 4]
        for j in range(4):
            submit(chain, sender, Transfer(to.address, 1_000 + j), FEE)
        mine_blocks(chain, miner, 1)
        i += 1
else:
    # Imports: the data dir mines one block, a shadow chain mines two on the same
    # parent, and importing them makes the data dir reorg onto the shadow branch.
    d = Chain.open(data)
    s = Chain.open(shadow)
    print("ready", d.height, flush=True)
    sync(s, d)
    sync(d, s)
    m1, m2 = PrivateKey.from_label("miner-d"), PrivateKey.from_label("miner-s")
    while True:
        extend(d, transfers(d, keys[0], 4), miner=m1)
        for _ in range(2):
            extend(s, transfers(s, keys[1], 4), miner=m2)
        sync(s, d)
        sync(d, s)
'''


def start_child(script: Path, mode: str, data: Path, shadow: Path, log: Path) -> subprocess.Popen[str]:
    with log.open("a") as err:
        return subprocess.Popen(
            [sys.executable, str(script), str(ROOT), mode, str(data), str(shadow)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


def wait_ready(proc: subprocess.Popen[str], log: Path) -> int:
    """Block until the child has opened the chain; returns the height it reported."""
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
    line = proc.stdout.readline() if readable else ""
    if not line.startswith("ready"):
        proc.kill()
        proc.wait()
        pytest.fail(f"writer did not start (exit {proc.returncode}):\n{log.read_text()}")
    return int(line.split()[1])


def check_store(data: Path, *, verify_first: bool) -> int:
    """The store opens without repair, is intact and verifies; returns its head height."""
    if verify_first:  # what a user runs right after a crash: read-only, straight on the WAL
        report = verify_chain(data)
        assert report.ok, f"{report.bad_height}: {report.rule}: {report.message}"
    chain = Chain.open(data)
    try:
        height = chain.height
        assert chain.store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        chain.close()
    if not verify_first:
        report = verify_chain(data)
        assert report.ok, f"{report.bad_height}: {report.rule}: {report.message}"
    assert report.height == height
    return height


def stored(data: Path) -> tuple[int, int]:
    """(blocks stored, blocks on the main chain) of the store at ``data``, read beside its writer."""
    db = sqlite3.connect(f"file:{data / 'chain.sqlite'}?mode=ro", uri=True)
    try:
        (blocks,) = db.execute("SELECT COUNT(*) FROM blocks").fetchone()
        (main,) = db.execute("SELECT COUNT(*) FROM main").fetchone()
    finally:
        db.close()
    return int(blocks), int(main)


def kill_rounds(
    tmp_path: Path, mode: str, data: Path, shadow: Path, progressed: Callable[[], bool]
) -> list[int]:
    """Run the writer and SIGKILL it ROUNDS times (at least MIN_ROUNDS, then while the time
    budget lasts); returns the head height after each round. The kills come at random
    moments, so on a busy machine the writer may not get anywhere before them: the last
    round then first waits until it has made the progress the test checks (``progressed``)."""
    script = tmp_path / "writer.py"
    script.write_text(CHILD)
    log = tmp_path / "writer.log"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    heights = [check_store(data, verify_first=False)]
    started = time.monotonic()
    for n in range(ROUNDS):
        over = n >= MIN_ROUNDS and time.monotonic() - started > TIME_BUDGET_S
        if over and progressed():
            break
        last = over or n == ROUNDS - 1
        delay = rng.uniform(0.05, 0.8)
        proc = start_child(script, mode, data, shadow, log)
        try:
            opened_at = wait_ready(proc, log)
            assert opened_at == heights[-1], "the writer opened at another height than the parent saw"
            if last and not progressed():
                assert wait_for(progressed, PROGRESS_S), f"the writer made no progress:\n{log.read_text()}"
            time.sleep(delay)
            assert proc.poll() is None, (
                f"writer stopped by itself (exit {proc.returncode}):\n{log.read_text()}"
            )
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        height = check_store(data, verify_first=n % 2 == 1)
        assert height >= heights[-1], (
            f"seed {seed}: head went back from {heights[-1]} to {height} after kill {n} at {delay:.2f} s"
        )
        heights.append(height)
    assert heights[-1] > heights[0], f"seed {seed}: the writer made no progress: {heights}"
    return heights


def test_sigkill_while_mining_with_pending(tmp_path: Path) -> None:
    keys = test_keys(4)
    # Wall-clock mining: keep the target at the easy 4 bits however fast blocks come.
    params = test_params(keys, retarget_window=10**6)
    data = tmp_path / "D"
    Chain.create(data, params).close()

    start = stored(data)[1]
    kill_rounds(tmp_path, "wallet", data, tmp_path / "unused", lambda: stored(data)[1] > start)

    # The data dir carries on: submit and mine in this process.
    chain = Chain.open(data)
    try:
        before = chain.height
        for k in keys[:2]:
            submit(chain, k, Transfer(keys[3].address, 12_345), 1_000)
        mined = mine_blocks(chain, PrivateKey.from_label("after-crash"), 2)
        assert chain.height == before + 2
        assert len(mined[0].block.txs) >= 3  # coinbase + both new transfers
    finally:
        chain.close()
    assert verify_chain(data).ok


def test_sigkill_while_importing_with_reorgs(tmp_path: Path) -> None:
    params = test_params(test_keys(4))
    data, shadow = tmp_path / "D", tmp_path / "S"
    Chain.create(data, params).close()
    Chain.create(shadow, params).close()

    def reorganised() -> bool:
        blocks, main = stored(data)
        return blocks > main

    kill_rounds(tmp_path, "reorg", data, shadow, reorganised)

    assert verify_chain(shadow).ok
    assert reorganised(), "no block was ever reorganised away: the test did not exercise reorgs"

    # The data dir carries on: mine on top of the head after all those kills.
    chain = Chain.open(data)
    try:
        before = chain.height
        mine_blocks(chain, PrivateKey.from_label("after-crash"), 2)
        assert chain.height == before + 2
    finally:
        chain.close()
    assert verify_chain(data).ok
