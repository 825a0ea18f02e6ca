"""A value of another storage class than the store writes — TEXT, NULL, a number or a BLOB
another program put where a BLOB or an INTEGER belongs (SQLite's column types do not bind
it) — is StoreCorrupt naming the table, the row and the column, wherever it is read: at open,
reading a block, an undo record in a reorg, the pending rows, and in ``chain verify``; never a
TypeError, and never read as something else (``bytes(5)`` is five zero bytes)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gridnet.crypto.hashing import header_hash
from gridnet.encoding import encode
from gridnet.errors import StoreCorrupt
from gridnet.ledger.chain import Chain
from gridnet.ledger.store import DB_NAME, Store
from gridnet.ledger.transactions import tx_id
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.verify import verify_chain
from tests.helpers import extend, new_chain, sign, test_keys, test_params

KEYS = test_keys(2)


def _chain(data_dir: Path) -> tuple[bytes, bytes]:
    """A closed chain of height 3 whose block 2 holds a transfer, with one pending
    transaction: (block 2's hash, the pending transaction's id)."""
    chain = new_chain(data_dir, test_params(KEYS))
    extend(chain)
    extend(chain, [sign(chain, KEYS[0], Transfer(KEYS[1].address, 5), 0)])
    extend(chain)
    tx = sign(chain, KEYS[0], Transfer(KEYS[1].address, 6), 1)
    chain.store.add_pending(tx_id(tx), encode(tx), 0)
    h = chain.main[2].hash
    chain.close()
    return h, tx_id(tx)


def _rewrite(data_dir: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(data_dir / DB_NAME)
    try:
        assert db.execute(sql, args).rowcount == 1
        db.commit()
    finally:
        db.close()


OPEN_CASES = [
    ("blocks", "header", "'x'", "TEXT, not a BLOB, in its header column"),
    ("blocks", "hash", "'x'", "TEXT, not a BLOB, in its hash column"),
    ("blocks", "invalid", "'x'", "TEXT, not an INTEGER, in its invalid column"),
    ("blocks", "invalid", "x'00'", "a BLOB, not an INTEGER, in its invalid column"),
    ("main", "hash", "'x'", "TEXT, not a BLOB, in its hash column"),
    ("main", "txs", "x'01'", "a BLOB, not an INTEGER, in its txs column"),
    ("main", "txs", "'x'", "TEXT, not an INTEGER, in its txs column"),
    ("main", "txs", "1.5", "a REAL, not an INTEGER, in its txs column"),
    ("state", "key", "'x'", "TEXT, not a BLOB, in its key column"),
    ("state", "value", "'x'", "TEXT, not a BLOB, in its value column"),
    ("state", "value", "7", "an INTEGER, not a BLOB, in its value column"),
    ("meta", "head", "'x'", "TEXT, not a BLOB, in its value column"),
    ("meta", "params", "'x'", "TEXT, not a BLOB, in its value column"),
    ("meta", "schema", "'2'", "TEXT, not a BLOB, in its value column"),
]
"""(table, column (of meta: the row's key), SQL value, what the error says): damage met by
every open."""

_WHERE = {
    "blocks": "hash = (SELECT hash FROM main WHERE height = 2)",
    "main": "height = 2",
    "state": "key = (SELECT max(key) FROM state)",
}


def _damage(data_dir: Path, table: str, column: str, value: str) -> None:
    if table == "meta":
        _rewrite(data_dir, f"UPDATE meta SET value = {value} WHERE key = ?", column)
    else:
        _rewrite(data_dir, f"UPDATE {table} SET {column} = {value} WHERE {_WHERE[table]}")


@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize(("table", "column", "value", "says"), OPEN_CASES)
def test_a_value_of_another_storage_class_met_at_open_is_store_corrupt_naming_it(
    tmp_path: Path, table: str, column: str, value: str, says: str, readonly: bool
) -> None:
    _chain(tmp_path / "d")
    _damage(tmp_path / "d", table, column, value)
    with pytest.raises(StoreCorrupt) as err:
        Chain.open(tmp_path / "d", readonly=readonly)
    text = str(err.value)
    assert re.match(
        rf"the {table} row \S+ holds {re.escape(says)} in {re.escape(str(tmp_path / 'd' / DB_NAME))}", text
    )
    assert "\n" not in text and "restore it from a backup" in text


@pytest.mark.parametrize(("table", "column", "value", "says"), OPEN_CASES)
def test_chain_verify_reports_a_value_of_another_storage_class(
    tmp_path: Path, table: str, column: str, value: str, says: str
) -> None:
    _chain(tmp_path / "d")
    _damage(tmp_path / "d", table, column, value)
    if column in ("schema", "params"):  # (read opening the store, the parameters for its rules:
        # an error naming the file, as any open)
        with pytest.raises(StoreCorrupt, match=re.escape(says)):
            verify_chain(tmp_path / "d")
        return
    report = verify_chain(tmp_path / "d")
    if (table, column) == ("blocks", "hash"):  # (the main chain's block is not found by its hash)
        assert (report.ok, report.rule, report.bad_height) == (False, "MissingBlock", 2)
        return
    assert not report.ok and report.rule == "StoreCorrupt"
    assert report.message is not None
    assert re.fullmatch(rf"the {table} row \S+ holds {re.escape(says)}", report.message)


@pytest.mark.parametrize("value", ["'x'", "5", "NULL"])
def test_a_block_read_back_whose_transactions_are_no_blob_is_store_corrupt(
    tmp_path: Path, value: str
) -> None:
    h, _ = _chain(tmp_path / "d")
    if value == "NULL":
        _without_not_null(tmp_path / "d", "blocks")
    chain = Chain.open(tmp_path / "d")
    try:
        _rewrite(tmp_path / "d", f"UPDATE blocks SET txs = {value} WHERE hash = ?", h)
        with pytest.raises(
            StoreCorrupt,
            match=rf"^the blocks row {h.hex()[:16]} holds (TEXT|an INTEGER|NULL), not a BLOB, in its txs",
        ):
            chain.get_block(h)
        assert chain.store.damage is not None  # (a node reports it: /health)
    finally:
        chain.close()
    report = verify_chain(tmp_path / "d")
    assert not report.ok and report.rule == "StoreCorrupt" and report.bad_height == 2


def _without_not_null(data_dir: Path, table: str) -> None:
    """Rebuild ``table`` without its NOT NULL constraints, as another program might."""
    db = sqlite3.connect(data_dir / DB_NAME, isolation_level=None)
    try:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        db.execute("BEGIN")
        db.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
        db.execute(sql.replace(" NOT NULL", ""))
        db.execute(f"INSERT INTO {table} SELECT * FROM old_{table}")
        db.execute(f"DROP TABLE old_{table}")
        db.execute("COMMIT")
    finally:
        db.close()


@pytest.mark.parametrize(("column", "value"), [("data", "'x'"), ("txid", "'x'"), ("data", "NULL")])
def test_a_pending_row_of_another_storage_class_is_store_corrupt(
    tmp_path: Path, column: str, value: str
) -> None:
    _, txid = _chain(tmp_path / "d")
    if value == "NULL":
        _without_not_null(tmp_path / "d", "pending")
    _rewrite(tmp_path / "d", f"UPDATE pending SET {column} = {value} WHERE txid = ?", txid)
    store = Store(tmp_path / "d")
    try:
        with pytest.raises(
            StoreCorrupt, match=rf"^the pending row \S+ holds (TEXT|NULL), not a BLOB, in its {column} "
        ):
            store.pending()
    finally:
        store.close()
    report = verify_chain(tmp_path / "d")  # (what a node reads when it starts)
    assert not report.ok and report.rule == "StoreCorrupt" and "pending row" in str(report.message)


def test_a_state_value_set_to_null_is_store_corrupt(tmp_path: Path) -> None:
    _chain(tmp_path / "d")
    _without_not_null(tmp_path / "d", "state")
    _damage(tmp_path / "d", "state", "value", "NULL")
    with pytest.raises(
        StoreCorrupt, match=r"^the state row \S+ holds NULL, not a BLOB, in its value column in "
    ):
        Chain.open(tmp_path / "d")


def test_a_side_block_row_of_another_storage_class_is_found_by_verify(tmp_path: Path) -> None:
    """``chain verify`` reads every stored block's row as opening does, side blocks too."""
    params = test_params(KEYS)
    chain, other = new_chain(tmp_path / "d", params), new_chain(tmp_path / "o", params)
    extend(chain)
    extend(chain)
    side = extend(other, miner=KEYS[1])
    other.close()
    chain.add_block(side, now=side.header.timestamp)  # (less work: kept as a side block)
    chain.close()
    _rewrite(
        tmp_path / "d", "UPDATE blocks SET invalid = 'no' WHERE hash = ?", header_hash(encode(side.header))
    )
    report = verify_chain(tmp_path / "d")
    assert not report.ok and report.rule == "StoreCorrupt"
    assert "holds TEXT, not an INTEGER, in its invalid column" in str(report.message)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (
            "UPDATE main SET txs = 7 WHERE height = 2",
            "block 2: the main chain index counts 7 signed transactions, the block holds 1",
        ),
        (
            "UPDATE blocks SET height = 9 WHERE hash = (SELECT hash FROM main WHERE height = 2)",
            "block 2 is stored as a block of height 9",
        ),
        (
            "UPDATE blocks SET invalid = 1 WHERE hash = (SELECT hash FROM main WHERE height = 2)",
            "block 2 of the main chain is stored marked invalid",
        ),
    ],
)
def test_chain_verify_checks_a_main_blocks_index_rows(tmp_path: Path, damage: str, says: str) -> None:
    """A main block's rows in the indexes that do not match it (a wrong count of transactions
    was added into the chain's total without a word) are IndexMismatch."""
    _chain(tmp_path / "d")
    _rewrite(tmp_path / "d", damage)
    report = verify_chain(tmp_path / "d")
    assert (report.ok, report.rule, report.bad_height, report.message) == (False, "IndexMismatch", 2, says)


def test_tables_of_a_gridnet_name_without_its_columns_are_refused_at_open(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    db = sqlite3.connect(data_dir / DB_NAME)
    for table in ("meta", "blocks", "main", "state", "undo", "pending"):
        db.execute(f"CREATE TABLE {table} (x)")
    db.commit()
    db.close()
    for readonly in (False, True):
        with pytest.raises(
            StoreCorrupt, match=r"is not a GRIDNET store: its meta table has no column key, value: restore"
        ):
            Store(data_dir, readonly=readonly)


def test_an_empty_store_file_is_refused_by_a_writer_and_left_as_it_was(tmp_path: Path) -> None:
    """A chain.sqlite emptied (a truncation to zero bytes) is no new store to a node: it is
    refused as a reader refuses it, nothing written into it; only 'chain init' makes a chain."""
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / DB_NAME).write_bytes(b"")
    with pytest.raises(StoreCorrupt, match=r"is not a GRIDNET store: it has no table meta, blocks"):
        Chain.open(data_dir)
    assert (data_dir / DB_NAME).stat().st_size == 0
    Chain.create(data_dir, test_params(KEYS)).close()
    Chain.open(data_dir).close()


def test_a_disk_that_fails_at_open_is_no_damage_to_restore(tmp_path: Path) -> None:
    """SQLite's 'disk I/O error' opening the store (here: the process may not grow a file, as
    on a full disk) is the machine's, not the file's: a one-line StoreError saying to check the
    disk and try again, not StoreCorrupt saying to restore a backup."""
    _chain(tmp_path / "d")
    script = (
        "import resource, sys\n"
        "from gridnet.errors import StoreCorrupt, StoreError\n"
        "from gridnet.ledger.chain import Chain\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))\n"
        "try:\n"
        "    Chain.open(__import__('pathlib').Path(sys.argv[1]))\n"
        "except StoreError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "d")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith(f"StoreError cannot open {tmp_path / 'd' / DB_NAME}: SQLite: disk I/O error"), line
    assert "check the disk" in line and "backup" not in line
