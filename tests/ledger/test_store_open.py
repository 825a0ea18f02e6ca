"""What opening a data directory's store finds: a file that is not a GRIDNET store, or one
missing tables, is refused by name and left as it was (only a new store gets the schema)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from gridnet.errors import DataDirLocked, StoreCorrupt
from gridnet.ledger.chain import Chain
from gridnet.ledger.store import DB_NAME, Store
from tests.helpers import new_chain, test_params


def _tables(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    finally:
        db.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path, readonly: bool) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    db = sqlite3.connect(data_dir / DB_NAME)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.commit()
    db.close()
    named = re.escape(f"{data_dir / DB_NAME} is not a GRIDNET store: it has no table meta, blocks, main")
    with pytest.raises(StoreCorrupt, match=f"^{named}") as err:
        Store(data_dir, readonly=readonly)
    assert "\n" not in str(err.value)
    assert _tables(data_dir / DB_NAME) == ["notes"]  # no schema written into it


@pytest.mark.parametrize("readonly", [False, True])
def test_a_store_missing_a_table_is_refused_by_name(tmp_path: Path, readonly: bool) -> None:
    data_dir = tmp_path / "d"
    new_chain(data_dir, test_params([])).close()
    db = sqlite3.connect(data_dir / DB_NAME)
    db.execute("DROP TABLE undo")
    db.commit()
    db.close()
    with pytest.raises(StoreCorrupt, match=r"it has no table undo: restore it from a backup"):
        Chain.open(data_dir, readonly=readonly)
    assert "undo" not in _tables(data_dir / DB_NAME)


def test_a_new_store_gets_the_schema(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "d", test_params([]))
    chain.close()
    assert _tables(tmp_path / "d" / DB_NAME) == ["blocks", "main", "meta", "pending", "state", "undo"]
    Chain.open(tmp_path / "d").close()


@pytest.mark.parametrize("readonly", [False, True])
def test_a_store_another_program_holds_locked_is_reported_as_locked(tmp_path: Path, readonly: bool) -> None:
    """Another program (not a GRIDNET writer, which the data directory's lock names) holds
    SQLite's exclusive lock: the store is busy, not damaged; it is not to be restored."""
    data_dir = tmp_path / "d"
    new_chain(data_dir, test_params([])).close()
    holder = sqlite3.connect(data_dir / DB_NAME, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(DataDirLocked) as err:
            Chain.open(data_dir, readonly=readonly)
    finally:
        holder.close()
    text = str(err.value)
    assert text.startswith(f"{data_dir / DB_NAME} is locked by another program (SQLite: database is locked)")
    assert "try again" in text and "backup" not in text and "\n" not in text
    Chain.open(data_dir, readonly=readonly).close()  # once it lets go
