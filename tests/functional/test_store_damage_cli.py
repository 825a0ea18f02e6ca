"""A damaged or hostile store file, met by the ``gridnet`` commands run as a user runs them
(a subprocess): each is one line on stderr and a non-zero exit, never a traceback (but a
damaged pending row, which a node starting drops with a warning naming it); and a
running node beside which ``chain backup`` copies the chain, or another program holds the
store locked for a while, is told it cannot write (503, retried) but never that its store is
damaged, and is healthy again once the lock is let go."""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import RULES_VERSION
from gridnet.ledger.store import DB_NAME
from gridnet.ledger.transactions import tx_id
from gridnet.ledger.txs.transfer import Transfer
from gridnet.node.devnet import DevNode
from tests.functional.test_cli import gridnet, new_key, ok, one_line_error
from tests.functional.test_disk_full import health, height, new_node
from tests.functional.test_node_ops import fast_params
from tests.helpers import sign, test_params, wait_for


@dataclass
class Stored:
    """A chain of height 4 made by the command line: block 4 holds a transfer, one more waits
    in the pending table."""

    root: Path
    data: Path
    payee: str


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    root = tmp_path_factory.mktemp("stored")
    new_key(root, "a.key")
    payee = new_key(root, "b.key")
    ok(gridnet("chain", "init", "--data-dir", "D", cwd=root))
    ok(gridnet("chain", "mine", "--data-dir", "D", "--blocks", "3", "--key", "a.key", cwd=root))
    transfer = ("tx", "transfer", "--data-dir", "D", "--key", "a.key", "--to", payee, "--amount", "1")
    ok(gridnet(*transfer, cwd=root))
    ok(gridnet("chain", "mine", "--data-dir", "D", "--blocks", "1", "--key", "a.key", cwd=root))
    ok(gridnet(*transfer, cwd=root))
    ok(gridnet("keys", "new", "--out", "D/node.key", "--unencrypted", cwd=root))  # (no notice of a new one)
    return Stored(root, root / "D", payee)


def _copy(stored: Stored, tmp_path: Path) -> Path:
    shutil.copytree(stored.data, tmp_path / "D")
    shutil.copy2(stored.root / "a.key", tmp_path / "a.key")
    return tmp_path / "D"


def _commands(payee: str) -> dict[str, tuple[str, ...]]:
    return {
        "show": ("chain", "show", "--data-dir", "D", "--json"),
        "account": ("chain", "account", "--data-dir", "D", "--address", payee),
        "verify": ("chain", "verify", "--data-dir", "D", "--quiet"),
        "mine": ("chain", "mine", "--data-dir", "D", "--blocks", "1", "--key", "a.key"),
        "transfer": ("tx", "transfer", "--data-dir", "D", "--key", "a.key", "--to", payee, "--amount", "1"),
        "backup": ("chain", "backup", "--data-dir", "D", "--out", "B"),
        "node": ("node", "--data-dir", "D", "--listen", "127.0.0.1:0", "--api", "off", "--unencrypted-key"),
    }


AT_OPEN = {"show", "account", "mine", "transfer", "backup", "node"}
"""The commands that open the chain as a node does (every check made at open)."""
PENDING = {"mine", "transfer"}
"""The commands that read the pending table strictly (a node starting drops a damaged row:
``test_a_node_starts_without_a_damaged_pending_row``)."""

DAMAGE = [
    ("blocks", "UPDATE blocks SET header = 'x' WHERE height = 2", AT_OPEN),
    ("blocks", "UPDATE blocks SET txs = 'x' WHERE height = 2", set()),  # (read when served)
    ("blocks", "UPDATE blocks SET invalid = 'x' WHERE height = 2", AT_OPEN),
    ("main", "UPDATE main SET hash = 'x' WHERE height = 2", AT_OPEN),
    ("main", "UPDATE main SET txs = x'01' WHERE height = 4", AT_OPEN),
    ("state", "UPDATE state SET key = 'x' WHERE key = (SELECT max(key) FROM state)", AT_OPEN),
    ("state", "UPDATE state SET value = 7 WHERE key = (SELECT max(key) FROM state)", AT_OPEN),
    ("undo", "UPDATE undo SET data = 'x' WHERE hash = (SELECT hash FROM main WHERE height = 3)", set()),
    ("meta", "UPDATE meta SET value = 'x' WHERE key = 'head'", AT_OPEN),
    ("pending", "UPDATE pending SET data = 'x'", PENDING),
]
"""(table, what another program writes, the commands that must refuse it besides verify; the
schema row: ``test_a_missing_or_damaged_schema_row_is_one_line_from_every_command``)."""


@pytest.mark.parametrize(("table", "sql", "refusing"), DAMAGE, ids=[d[1][:48] for d in DAMAGE])
def test_a_value_of_another_storage_class_is_one_line_from_every_command(
    stored: Stored, tmp_path: Path, table: str, sql: str, refusing: set[str]
) -> None:
    data = _copy(stored, tmp_path)
    db = sqlite3.connect(data / DB_NAME)
    assert db.execute(sql).rowcount >= 1
    db.commit()
    db.close()
    for name, args in _commands(stored.payee).items():
        if name == "node" and name not in refusing:
            continue  # (it would run: the damage is met serving a peer, tests/net/test_tcp.py)
        result = gridnet(*args, cwd=tmp_path, timeout=60)
        assert "Traceback" not in result.stderr, (name, result.stderr)
        if name == "verify":  # (a report, or a damage met opening the store: one line either way)
            assert result.returncode == 1, result
            said = (result.stdout + result.stderr).strip().splitlines()
            assert len(said) == 1 and said[0].startswith(("chain invalid at height ", "error: ")), said
            assert f"the {table} row " in said[0], said
            continue
        if name not in refusing:
            continue
        line = one_line_error(result)
        assert f"the {table} row " in line and "holds " in line, (name, line)
        assert "damaged" in line and "chain verify" in line, (name, line)
        shutil.rmtree(tmp_path / "B", ignore_errors=True)


def _truncate(size: int) -> Callable[[Path], None]:
    def cut(path: Path) -> None:
        with path.open("r+b") as f:
            f.truncate(size)

    return cut


def _foreign(path: Path) -> None:
    path.unlink()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.commit()
    db.close()


def _same_names(path: Path) -> None:
    path.unlink()
    db = sqlite3.connect(path)
    for table in ("meta", "blocks", "main", "state", "undo", "pending"):
        db.execute(f"CREATE TABLE {table} (x)")
    db.commit()
    db.close()


def _schema(value: bytes) -> Callable[[Path], None]:
    def set_schema(path: Path) -> None:
        db = sqlite3.connect(path)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (value,))
        db.commit()
        db.close()

    return set_schema


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


HOSTILE: dict[str, tuple[Callable[[Path], object], str]] = {
    "zero bytes": (lambda p: p.write_bytes(b""), "is not a GRIDNET store: it has no table meta"),
    "not SQLite": (lambda p: p.write_bytes(b"not a database\n" * 300), "is not a readable GRIDNET store"),
    "truncated to half": (_truncate(20_000), "is not a readable GRIDNET store"),
    "truncated to its header": (_truncate(100), "is not a readable GRIDNET store"),
    "a foreign database": (_foreign, "is not a GRIDNET store: it has no table meta"),
    "tables of the same names": (_same_names, "is not a GRIDNET store: its meta table has no column"),
    "a newer schema": (_schema(b"9"), "has schema '9'; this version reads 1, 2"),
    "a directory": (_directory, "it is a directory, not a file"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_store_file_is_one_line_from_every_command(
    stored: Stored, tmp_path: Path, case: str
) -> None:
    data = _copy(stored, tmp_path)
    make, says = HOSTILE[case]
    before = None
    make(data / DB_NAME)
    if (data / DB_NAME).is_file() and case != "a newer schema":  # (a writer's WAL mode is set)
        before = (data / DB_NAME).read_bytes()
    for name, args in _commands(stored.payee).items():
        line = one_line_error(gridnet(*args, cwd=tmp_path, timeout=60))
        assert says in line, (name, line)
        assert not (tmp_path / "B").exists()
    if before is not None:
        assert (data / DB_NAME).read_bytes() == before  # nothing was written into it


SCHEMA_ROW = {
    "missing": ("DELETE FROM meta WHERE key = 'schema'", "no schema row (the meta row 'schema') in "),
    "TEXT": (
        "UPDATE meta SET value = '2' WHERE key = 'schema'",
        "the meta row 'schema' holds TEXT, not a BLOB, in its value column in ",
    ),
    "not a number": (
        "UPDATE meta SET value = x'ff' WHERE key = 'schema'",
        "the meta row 'schema' is not a schema number (b'\\xff') in ",
    ),
}


@pytest.mark.parametrize("case", list(SCHEMA_ROW))
def test_a_missing_or_damaged_schema_row_is_one_line_from_every_command(
    stored: Stored, tmp_path: Path, case: str
) -> None:
    """A store whose schema row (the meta row 'schema') is gone was opened as any other, and
    a writer wrote the row anew; one whose row holds something else told every command,
    'gridnet chain verify' itself, to run 'chain verify', which failed the same way. Both are
    now one line from every command naming the file and saying to restore a backup or sync a
    new data directory (not to run 'chain verify': it cannot open the store either), and
    nothing is written into the file."""
    data = _copy(stored, tmp_path)
    sql, says = SCHEMA_ROW[case]
    db = sqlite3.connect(data / DB_NAME)
    assert db.execute(sql).rowcount == 1
    db.commit()
    db.close()
    before = (data / DB_NAME).read_bytes()
    for name, args in _commands(stored.payee).items():
        line = one_line_error(gridnet(*args, cwd=tmp_path, timeout=60))
        assert says + str(Path("D") / DB_NAME) in line, (name, line)
        assert line.endswith(
            "the store is damaged; restore it from a backup, or start a new data directory and sync "
            "it from peers"
        ), (name, line)
        assert "chain verify" not in line, (name, line)
    assert (data / DB_NAME).read_bytes() == before  # nothing was written into it


@pytest.mark.parametrize("rules", [None, RULES_VERSION + 1], ids=["unversioned", "later"])
def test_a_chain_of_other_consensus_rules_is_one_line_from_every_command(
    stored: Stored, tmp_path: Path, rules: int | None
) -> None:
    """A data directory made by a gridnet of other consensus rules (before the rules were
    versioned: no 'rules' row) had been called damaged by every command, 'chain verify'
    included (a genesis that does not match its parameters); now each says which rules made
    it and which this gridnet implements, and to start a new data directory; nothing is
    written into the file and 'chain backup' makes no copy."""
    data = _copy(stored, tmp_path)
    db = sqlite3.connect(data / DB_NAME)
    if rules is None:
        assert db.execute("DELETE FROM meta WHERE key = 'rules'").rowcount == 1
    else:
        assert (
            db.execute("UPDATE meta SET value = ? WHERE key = 'rules'", (str(rules).encode(),)).rowcount == 1
        )
    db.commit()
    db.close()
    before = (data / DB_NAME).read_bytes()
    made = "1 (a gridnet from before the rules were versioned)" if rules is None else f"{rules};"
    for name, args in _commands(stored.payee).items():
        line = one_line_error(gridnet(*args, cwd=tmp_path, timeout=60))
        assert f"error: D: its chain was made under consensus rules {made}" in line, (name, line)
        assert f"this gridnet implements rules {RULES_VERSION}" in line and "damaged" not in line, (
            name,
            line,
        )
    assert (data / DB_NAME).read_bytes() == before
    assert not (tmp_path / "B").exists()


def test_a_disk_that_fails_at_open_is_one_line_to_check_it(stored: Stored, tmp_path: Path) -> None:
    """SQLite's disk I/O error at open (here: a file-size limit, as a full disk) says to check
    the disk and try again, not to restore a backup."""
    _copy(stored, tmp_path)
    for name in ("show", "mine"):
        line = one_line_error(_limited(_commands(stored.payee)[name], tmp_path))
        assert "SQLite: disk I/O error; check the disk it is on" in line and "backup" not in line, line


def _limited(args: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``gridnet ARGS`` run with a file-size limit of one byte (no file may grow)."""
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "gridnet", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1)),
    )


def test_a_backup_or_a_lock_beside_a_running_node_is_no_damage(tmp_path: Path, nodes: list[DevNode]) -> None:
    """'chain backup' beside a running miner copies the chain and leaves the node healthy;
    another program holding SQLite's write lock for a while makes the node's writes fail
    ('database is locked': 503, cannot write, retried), never 'damaged', and once it lets go
    the node is healthy and mines on: a transient error does not mark the store damaged."""
    miner = new_node(tmp_path, "miner", fast_params())
    nodes.append(miner)
    miner.start("--mine", "--hashes-per-tick", "300")
    assert wait_for(lambda: height(miner) >= 2, 90)
    for i in range(3):
        ok(
            gridnet(
                "chain", "backup", "--data-dir", miner.data_dir, "--out", tmp_path / f"b{i}", cwd=tmp_path
            )
        )
        assert health(miner)[0] == 200
    holder = sqlite3.connect(miner.data_dir / DB_NAME, isolation_level=None, timeout=30)
    seen: list[tuple[int, dict[str, object]]] = []
    try:
        holder.execute("BEGIN EXCLUSIVE")
        stop = time.monotonic() + 60
        while time.monotonic() < stop:
            seen.append(health(miner))
            if seen[-1][0] == 503 and "database is locked" in str(seen[-1][1].get("message")):
                break
            time.sleep(0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert seen and seen[-1][0] == 503, seen[-5:]
    assert "the node cannot write its store: database is locked" in str(seen[-1][1]["message"])
    stuck = height(miner)
    assert wait_for(lambda: health(miner)[0] == 200, 90)
    assert wait_for(lambda: height(miner) >= stuck + 2, 90)
    assert not any("damaged" in str(body.get("message")) for _, body in seen)


SENDERS = [PrivateKey.from_label(f"pending-{i}") for i in range(3)]


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("UPDATE pending SET data = 'x' WHERE id = 2", "TEXT, not a BLOB, in its data column"),
        ("UPDATE pending SET txid = 7 WHERE id = 2", "an INTEGER, not a BLOB, in its txid column"),
        ("UPDATE pending SET data = x'c1' WHERE id = 2", "Malformed"),
        ("UPDATE pending SET txid = zeroblob(32) WHERE id = 2", "not the id of the transaction it holds"),
    ],
    ids=["text data", "integer txid", "undecodable", "another txid"],
)
def test_a_node_starts_without_a_damaged_pending_row(
    tmp_path: Path, nodes: list[DevNode], sql: str, says: str
) -> None:
    """One row of the pending table (the mempool kept across restarts) damaged by another
    program made the node refuse to start (or dropped it without a word). Pending
    transactions are not consensus data: the node drops that row with one warning naming it,
    starts, and holds the other pending transactions."""
    params = test_params(SENDERS, genesis_time=int(time.time() * 1000) - 60_000)
    node = new_node(tmp_path, "node", params)
    nodes.append(node)
    chain = Chain.open(node.data_dir)
    txs = [sign(chain, key, Transfer(SENDERS[0].address, 1), 0) for key in SENDERS]
    chain.store.write_pending([(tx_id(tx), encode(tx), 0) for tx in txs], [])  # (rows 1, 2, 3)
    chain.close()
    db = sqlite3.connect(node.data_dir / DB_NAME)
    assert db.execute(sql).rowcount == 1
    db.commit()
    db.close()
    node.start()
    assert wait_for(lambda: health(node)[0] == 200, 90), (node.data_dir / "console.log").read_text()
    client = node.client()
    try:
        for tx in (txs[0], txs[2]):
            status, body = client.call("GET", f"/transactions/{tx_id(tx).hex()}")
            assert status == 200 and isinstance(body, dict) and body["status"] == "pending", body
        status, body = client.call("GET", "/mempool")
        assert status == 200 and isinstance(body, dict) and body["size"] == 2, body
    finally:
        client.close()
    warned = [
        line
        for line in (node.data_dir / "node.log").read_text().splitlines()
        if "damaged pending row" in line
    ]
    assert len(warned) == 1 and "WARNING" in warned[0], warned
    assert "dropped the damaged pending row 2 (" in warned[0] and says in warned[0], warned
    db = sqlite3.connect(f"file:{node.data_dir / DB_NAME}?mode=ro", uri=True)
    try:
        assert [row for (row,) in db.execute("SELECT id FROM pending ORDER BY id")] == [1, 3]
    finally:
        db.close()
