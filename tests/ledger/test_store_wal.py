"""The store's write-ahead log is copied into the database file only once it holds
``WAL_CHECKPOINT_PAGES`` pages, not at SQLite's default of 1,000 (a checkpoint nearly every
other block of 1,000 transfers); what was committed meanwhile is read from the log."""

from __future__ import annotations

import os
from pathlib import Path

from gridnet.ledger.store import DB_NAME, WAL_CHECKPOINT_PAGES, Store
from tests.helpers import new_chain, test_params

SQLITE_DEFAULT_PAGES = 1_000


def test_the_log_is_checkpointed_only_once_it_holds_its_pages(tmp_path: Path) -> None:
    new_chain(tmp_path / "c", test_params([])).close()
    store = Store(tmp_path / "c")
    page = store.db.execute("PRAGMA page_size").fetchone()[0]
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_CHECKPOINT_PAGES
    rows = 0
    for commit in range(30):  # about 3,000 pages, in commits of about 100
        batch = [(os.urandom(32), os.urandom(3_900), commit) for _ in range(100)]
        store.write_pending(batch, [])
        rows += len(batch)
    wal = (tmp_path / "c" / f"{DB_NAME}-wal").stat().st_size
    assert wal > 2 * SQLITE_DEFAULT_PAGES * page  # (the default would have reset the log by now)
    reader = Store(tmp_path / "c", readonly=True)
    assert reader.pending_count() == rows  # (what is only in the log is read all the same)
    reader.close()
    store.close()
