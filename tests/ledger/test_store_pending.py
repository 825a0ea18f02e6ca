"""The store's pending table (the mempool's durable copy): rows kept in arrival order by row
id, one per transaction id, a schema-1 store upgraded in place with its rows, and what a
rolled-back write leaves."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gridnet.errors import StoreError
from gridnet.ledger.store import DB_NAME, SCHEMA_VERSION, Store
from tests.helpers import new_chain, test_params


def _tid(i: int) -> bytes:
    return bytes([i]) * 32


def _store(path: Path) -> Store:
    new_chain(path, test_params([])).close()
    return Store(path)


def test_rows_come_back_in_arrival_order_once_each(tmp_path: Path) -> None:
    store = _store(tmp_path / "c")
    # Ids that sort the other way round from their arrival: the order is the arrival's.
    store.write_pending([(_tid(9), b"a", 5), (_tid(3), b"b", 5), (_tid(7), b"c", 6)], [])
    store.add_pending(_tid(3), b"again", 7)  # already there: not a second row
    store.write_pending([(_tid(1), b"d", 8), (_tid(1), b"d", 8)], [_tid(7)])
    assert store.pending() == [(_tid(9), b"a"), (_tid(3), b"b"), (_tid(1), b"d")]
    assert store.pending_count() == 3
    store.remove_pending([_tid(9), _tid(200)])  # (one never written: nothing to remove)
    assert [t for t, _ in store.pending()] == [_tid(3), _tid(1)]
    store.close()
    reopened = Store(tmp_path / "c")  # the writer's row ids are read back on first use
    reopened.write_pending([(_tid(4), b"e", 9), (_tid(3), b"dup", 9)], [_tid(1)])
    assert reopened.pending() == [(_tid(3), b"b"), (_tid(4), b"e")]
    reopened.close()


def test_a_rolled_back_write_is_forgotten(tmp_path: Path) -> None:
    store = _store(tmp_path / "c")
    store.write_pending([(_tid(1), b"a", 1)], [])
    store.begin()
    store.remove_pending([_tid(1)])
    store.add_pending(_tid(2), b"b", 2)
    store.rollback()
    # Neither the removal nor the addition happened: the rows are as before, and writing
    # them again neither duplicates the first nor loses the second.
    assert store.pending() == [(_tid(1), b"a")]
    store.write_pending([(_tid(1), b"a", 3), (_tid(2), b"b", 3)], [])
    assert store.pending() == [(_tid(1), b"a"), (_tid(2), b"b")]
    store.remove_pending([_tid(1)])
    assert store.pending() == [(_tid(2), b"b")]
    store.close()


def _make_schema_1(path: Path, rows: list[tuple[bytes, bytes, int]]) -> None:
    """Turn a fresh store into one written by schema 1 (pending keyed by transaction id)."""
    db = sqlite3.connect(path / DB_NAME, isolation_level=None)
    db.executescript(
        """
        DROP TABLE pending;
        CREATE TABLE pending (
            txid BLOB PRIMARY KEY, data BLOB NOT NULL, added INTEGER NOT NULL
        ) WITHOUT ROWID;
        UPDATE meta SET value = CAST('1' AS BLOB) WHERE key = 'schema';
        """
    )
    db.executemany("INSERT INTO pending(txid, data, added) VALUES (?, ?, ?)", rows)
    db.close()


def test_a_schema_1_store_is_read_as_it_is_and_upgraded_by_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "c"
    new_chain(path, test_params([])).close()
    _make_schema_1(path, [(_tid(9), b"first", 10), (_tid(1), b"second", 20)])
    reader = Store(path, readonly=True)  # a reader (an audit beside an old node) changes nothing
    assert reader.get_meta("schema") == b"1"
    assert reader.pending() == [(_tid(9), b"first"), (_tid(1), b"second")]
    reader.close()
    writer = Store(path)
    assert writer.get_meta("schema") == str(SCHEMA_VERSION).encode()
    assert writer.pending() == [(_tid(9), b"first"), (_tid(1), b"second")]
    writer.write_pending([(_tid(5), b"third", 30), (_tid(1), b"dup", 30)], [_tid(9)])
    assert writer.pending() == [(_tid(1), b"second"), (_tid(5), b"third")]
    writer.close()


def test_a_store_of_an_unknown_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c"
    new_chain(path, test_params([])).close()
    db = sqlite3.connect(path / DB_NAME, isolation_level=None)
    db.execute("UPDATE meta SET value = CAST('3' AS BLOB) WHERE key = 'schema'")
    db.close()
    for readonly in (False, True):
        with pytest.raises(StoreError, match="has schema '3'; this version reads 1, 2"):
            Store(path, readonly=readonly)
