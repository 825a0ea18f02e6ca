"""SQLite storage of a chain (WAL mode).

A connected block and all its state changes, undo record and main-chain row are
written in one SQLite transaction, as is a whole reorg: a process killed at any
moment leaves the store at the last complete block, and reopening needs no repair.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from gridnet.errors import (
    DataDirExposed,
    DataDirLocked,
    RulesChanged,
    StoreCorrupt,
    StoreError,
    StorePermission,
)
from gridnet.files import check_not_writable_by_others, make_dirs
from gridnet.ledger.lock import acquire
from gridnet.ledger.params import RULES_VERSION
from gridnet.units import Hash32

SCHEMA_VERSION = 2
"""2: the pending table is kept in arrival order by a row id (1 kept it by transaction id)."""
READABLE_SCHEMAS = (1, 2)
"""Schemas a reader opens (the tables it reads are alike in both); a writer moves 1 to 2."""
DB_NAME = "chain.sqlite"
WAL_CHECKPOINT_PAGES = 16_384
"""The write-ahead log is copied into the database file (and both synced) once it holds this
many pages (64 MiB of 4 KiB pages; SQLite's default is 1,000): a block of 1,000 transfers
writes about 500 pages, so with the default nearly every other block paid a checkpoint and
its syncs (``gridnet bench ledger``: 8 to 10 % of a block's import on one core). A process
killed at any moment still leaves the last committed block. A power loss may take back what
was committed since the last checkpoint (``synchronous=NORMAL``; before, up to 1,000 pages of
it): blocks the node fetches again from its peers, pending transactions their senders send
again."""
STORE_ERRORS = (sqlite3.OperationalError,)
"""What SQLite raises when it cannot write now (disk full, I/O error, locked, read-only): a
node retries. A corrupt store (``sqlite3.DatabaseError``) or any other error is not."""

_PENDING_TABLE = """CREATE TABLE pending (
    id INTEGER PRIMARY KEY, txid BLOB NOT NULL, data BLOB NOT NULL, added INTEGER NOT NULL
)"""
# The pending table is written for every transaction a node takes in, and rows come and go in
# arrival order: appending by row id costs a fraction of inserting at a random transaction id
# (a B-tree keyed by a hash). The writer keeps the row id of each transaction id in memory.

_SCHEMA = (
    """
BEGIN;
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE blocks (
    hash BLOB PRIMARY KEY,
    height INTEGER NOT NULL,
    header BLOB NOT NULL,
    txs BLOB NOT NULL,
    invalid INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX blocks_height ON blocks(height);
CREATE TABLE main (
    height INTEGER PRIMARY KEY, hash BLOB NOT NULL, txs INTEGER NOT NULL
);
CREATE TABLE state (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE undo (hash BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
"""
    + _PENDING_TABLE
    + f";\nINSERT INTO meta(key, value) VALUES ('schema', CAST('{SCHEMA_VERSION}' AS BLOB));\nCOMMIT;\n"
)
"""The schema of a new store, with its schema row, made in one transaction (an existing file
is never given it: ``Store`` refuses one that lacks a table, or the schema row)."""
TABLES = ("meta", "blocks", "main", "state", "undo", "pending")
"""The tables of a store (of either readable schema)."""
COLUMNS = {
    "meta": ("key", "value"),
    "blocks": ("hash", "height", "header", "txs", "invalid"),
    "main": ("height", "hash", "txs"),
    "state": ("key", "value"),
    "undo": ("hash", "data"),
    "pending": ("txid", "data", "added"),
}
"""The columns the store reads in each table (of either readable schema; schema 2's pending
table has an ``id`` as well)."""

_PENDING_V1_TO_V2 = (
    "ALTER TABLE pending RENAME TO pending_v1",
    _PENDING_TABLE,
    "INSERT INTO pending(txid, data, added) SELECT txid, data, added FROM pending_v1 ORDER BY added",
    "DROP TABLE pending_v1",
)


_NO_ACCESS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
"""What the kernel answers a process that may not read or write a file (owner, mode, media)."""
_NO_ACCESS_SQLITE = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")
"""What SQLite answers when it may not open or write a file (``SQLITE_READONLY_*`` too)."""


_BUSY_SQLITE = ("SQLITE_BUSY", "SQLITE_LOCKED")
"""What SQLite answers when another connection holds the lock it needs (after its timeout)."""


_TRANSIENT_SQLITE = ("SQLITE_IOERR", "SQLITE_FULL", "SQLITE_NOMEM", "SQLITE_INTERRUPT", "SQLITE_NOLFS")
"""What SQLite answers when the machine, not the file, fails it now (a disk that errs or is
full, memory): the file may be intact."""


def _open_failure(path: Path, exc: sqlite3.Error, verb: str, *, write: bool) -> StoreError | None:
    """What ``exc``, met opening the store ``path`` (to ``verb`` it), says in one line when it is
    not the file's damage: the file may not be read or written (StorePermission), another
    program holds it locked (DataDirLocked: busy, to try again, not to restore), or the disk
    or memory fails now (StoreError: to mend and try again, not to restore); None otherwise."""
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith(_NO_ACCESS_SQLITE):
        return _no_access(verb, path, str(exc), write=write)
    if name.startswith(_BUSY_SQLITE):
        return DataDirLocked(
            f"{path} is locked by another program (SQLite: {exc}); wait for it to finish, or stop it, "
            "and try again"
        )
    if name.startswith(_TRANSIENT_SQLITE):
        return StoreError(
            f"cannot {verb} {path}: SQLite: {exc}; check the disk it is on (its free space, the "
            "kernel's log) and try again"
        )
    return None


def _no_access(verb: str, where: Path, reason: str | None, *, write: bool) -> StorePermission:
    """One line: this process cannot ``verb`` ``where`` (for ``reason``), and what to do."""
    rights = "read and write" if write else "read"
    return StorePermission(
        f"cannot {verb} {where}: {reason or 'refused'}; let the user running gridnet {rights} it (its "
        "owner and mode), or choose another --data-dir"
    )


_DAMAGE_SQLITE = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
"""What SQLite answers when the file does not hold what it wrote (a malformed page)."""

_P = ParamSpec("_P")
_R = TypeVar("_R")
_V = TypeVar("_V", bytes, int)

_STORAGE_CLASS = {bytes: "a BLOB", int: "an INTEGER", str: "TEXT", float: "a REAL", type(None): "NULL"}
"""SQLite's storage class of a value as Python's sqlite3 returns it (its column's type does
not bind it: another program may write TEXT into a BLOB column, or a BLOB into an INTEGER
one)."""


def _row_name(key: object) -> str:
    """A row's key as a person reads it in a message (a hash by its first 16 hex digits)."""
    if isinstance(key, bytes):
        return key.hex()[:16] or "''"
    shown = repr(key)
    return shown if len(shown) <= 24 else shown[:21] + "..."


def _named_damage(method: Callable[Concatenate[Store, _P], _R]) -> Callable[Concatenate[Store, _P], _R]:
    """``method`` with a damaged file met on the way (a malformed page) raised as StoreCorrupt
    naming the file, in one line: never a traceback."""

    @functools.wraps(method)
    def call(self: Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise self.damaged(exc) from None

    return call


def readonly_uri(path: Path, *, immutable: bool = False) -> str:
    """The SQLite URI that opens the database file ``path`` read only, whatever characters its
    path holds (a '#', '?' or '%' in a plain ``file:`` URI would name another file); with
    ``immutable``, as a file nothing changes (``immutable_fallback`` says when that is safe)."""
    return f"{path.resolve().as_uri()}?{'immutable=1' if immutable else 'mode=ro'}"


def immutable_fallback(path: Path) -> bool:
    """Whether the database file ``path``, which SQLite could not read in ``mode=ro``, may be
    read as immutable: on a directory this process cannot write (read-only media) SQLite cannot
    make the shared-memory file a reader of a WAL database needs. A writer at work there would
    have made it (a reader opens an existing one read only), and with no write-ahead log left
    beside the file nothing is missed."""
    log = path.with_name(path.name + "-wal")
    writable = os.access(path.parent, os.W_OK, effective_ids=True)  # (as the kernel will judge it)
    return not writable and not (log.exists() and log.stat().st_size > 0)


def _open_readonly(path: Path) -> sqlite3.Connection:
    """``path`` opened read only (as immutable on read-only media, ``immutable_fallback``)."""
    db = sqlite3.connect(readonly_uri(path), uri=True, isolation_level=None, check_same_thread=False)
    try:
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # (the shared memory is needed now)
    except sqlite3.OperationalError:
        db.close()
        if not immutable_fallback(path):
            raise
        db = sqlite3.connect(
            readonly_uri(path, immutable=True), uri=True, isolation_level=None, check_same_thread=False
        )
    return db


class Store:
    """Thin, typed access to the SQLite file of one data directory."""

    def __init__(self, data_dir: Path, *, create: bool = False, readonly: bool = False) -> None:
        """Open the store of ``data_dir``. A writer (``readonly=False``) holds the data
        directory's lock until :meth:`close` (``ledger/lock.py``): a second writer gets
        :class:`DataDirLocked`. A reader takes no lock and reads consistent snapshots
        (:meth:`snapshot`) beside a running writer."""
        self.data_dir = data_dir
        self.path = path = data_dir / DB_NAME
        self.readonly = readonly
        self.damage: str | None = None
        """What showed the store damaged, once something has (``corrupt``)."""
        self._opened = False
        """Whether the store opened (damage met opening it is not for ``chain verify`` to
        find: it opens the store the same way)."""
        try:
            if data_dir.exists() and not data_dir.is_dir():
                raise StoreError(f"{data_dir} is a file, not a data directory; choose a directory path")
            exists = path.exists()
            if exists and not path.is_file():
                kind = "a directory" if path.is_dir() else "a special file"
                raise StorePermission(
                    f"cannot open {path}: it is {kind}, not a file; move it away, or choose another "
                    "--data-dir"
                )
        except OSError as exc:  # (the directory may not be searched)
            raise _no_access("read", data_dir, exc.strerror, write=not readonly) from None
        if exists:
            try:
                os.close(os.open(path, os.O_RDONLY))  # (SQLite would call it unopenable, or damaged)
            except OSError as exc:
                raise _no_access("read", path, exc.strerror, write=not readonly) from None
        if not exists and not create:
            raise StoreError(
                f"no chain in {data_dir} (create one with 'gridnet chain init --data-dir {data_dir}')"
            )
        try:
            if not exists:
                make_dirs(data_dir)
            if not readonly:
                check_not_writable_by_others(data_dir, "data directory", DataDirExposed)
            self._lock = None if readonly else acquire(data_dir)
        except OSError as exc:
            if exc.errno in _NO_ACCESS:
                raise _no_access("write the data directory", data_dir, exc.strerror, write=True) from None
            raise StoreError(
                f"cannot write the data directory {data_dir}: {exc.strerror}; choose another --data-dir"
            ) from None
        try:
            if readonly:
                self.db = _open_readonly(path)
            else:
                self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._pending_rows: dict[bytes, int] | None = None
            """The writer's pending rows: transaction id -> row id (loaded on first use)."""
            self._next_pending = 1
            tables = {str(t) for (t,) in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            missing = [t for t in TABLES if t not in tables]
            # Nothing is written into a file that is not a store, nor into an empty one but by
            # 'chain init' (a file emptied by damage, opened by a node, is refused like a foreign one).
            if missing and (tables or readonly or not create):
                raise StoreCorrupt(
                    f"{path} is not a GRIDNET store: it has no table {', '.join(missing)}: restore it from "
                    "a backup, or start a new data directory and sync it from peers"
                )
            if not missing:
                self._check_columns(path)
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
                if missing:  # a new store: no table yet
                    self.db.executescript(_SCHEMA)
            self.db.execute("PRAGMA cache_size=-65536")
            version = self.get_meta("schema")
            if version is None and not missing:  # (a new store's tables come with their schema row)
                raise self.corrupt("no schema row (the meta row 'schema')")
            if version is not None and not version.isdigit():
                raise self.corrupt(f"the meta row 'schema' is not a schema number ({version[:20]!r})")
            if not missing:  # (before anything is written: a chain of other rules is left as it is)
                self._check_rules()
            if version == b"1" and not readonly:
                self._upgrade_from_1()
                version = str(SCHEMA_VERSION).encode()
            self._pending_order = "added" if version == b"1" else "id"
            """How the pending rows are read in arrival order (schema 1, read only: by time)."""
        except (StoreCorrupt, RulesChanged):  # (a damaged page met reading the schema)
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._release()
            failure = _open_failure(path, exc, "open", write=not readonly)
            if failure is not None:
                raise failure from None
            raise StoreCorrupt(
                f"{path} is not a readable GRIDNET store ({exc}): restore it from a backup, or start a "
                "new data directory and sync it from peers"
            ) from None
        readable = [str(v).encode() for v in (READABLE_SCHEMAS if readonly else (SCHEMA_VERSION,))]
        if version is not None and version not in readable:
            self.close()
            shown = version.decode("ascii", "replace")[:20]
            raise StoreError(
                f"{path} has schema {shown!r}; this version reads {', '.join(map(str, READABLE_SCHEMAS))}"
            )
        if not readonly:
            self._write_schema(path)
        self._opened = True

    def _check_rules(self) -> None:
        """``RulesChanged`` for a chain made under other consensus rules than this gridnet's
        (``RULES_VERSION``; no ``rules`` row: version 1), which it cannot check: its blocks
        would fail somewhere in their history (or at the genesis) and look like damage. A store
        that holds no chain yet (no parameters: ``chain init`` was cut short) has no rules."""
        if self.get_meta("params") is None:
            return
        raw = self.get_meta("rules")
        if raw is not None and not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
            raise self.corrupt(f"the meta row 'rules' is not a rules version ({raw[:20]!r})")
        made = 1 if raw is None else int(raw)
        if made == RULES_VERSION:
            return
        before = " (a gridnet from before the rules were versioned)" if raw is None else ""
        raise RulesChanged(
            f"{self.data_dir}: its chain was made under consensus rules {made}{before}; this gridnet "
            f"implements rules {RULES_VERSION}, so it cannot check that chain's blocks: start a new "
            "data directory ('gridnet chain init' with the same genesis file makes another chain; a "
            "node of this version syncs one from its peers), or use the gridnet that made it"
        )

    def _check_columns(self, path: Path) -> None:
        """Each table must have the columns the store reads (another program's tables of the
        same names do not: every later query of them would fail)."""
        for table, wanted in COLUMNS.items():
            columns = {str(row[1]) for row in self.db.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in wanted if c not in columns]
            if missing:
                raise StoreCorrupt(
                    f"{path} is not a GRIDNET store: its {table} table has no column {', '.join(missing)}: "
                    "restore it from a backup, or start a new data directory and sync it from peers"
                )

    def corrupt(self, finding: str, kind: type[StoreCorrupt] = StoreCorrupt) -> StoreCorrupt:
        """A ``kind`` of StoreCorrupt for what was found (``finding``), in one line naming the
        file and what to do; the first is kept (``damage``: a node reports it as unhealthy).
        Damage met opening the store (its schema row) is not sent to ``chain verify``, which
        cannot open it either."""
        if self._opened:
            advice = (
                f"'gridnet chain verify --data-dir {self.data_dir}' finds where, then restore it from a "
                "backup or sync a new data directory"
            )
        else:
            advice = "restore it from a backup, or start a new data directory and sync it from peers"
        message = f"{finding} in {self.path}: the store is damaged; {advice}"
        if self.damage is None:
            self.damage = message
        return kind(message, finding)

    def damaged(self, exc: sqlite3.DatabaseError) -> StoreCorrupt | sqlite3.DatabaseError:
        """What to raise for ``exc``, met reading or writing the file: StoreCorrupt naming the
        file when the file is damaged; ``exc`` itself otherwise (a write that fails now: a full
        disk, a lock)."""
        if not getattr(exc, "sqlite_errorname", "").startswith(_DAMAGE_SQLITE):
            return exc
        return self.corrupt(f"SQLite: {exc}")

    def value(self, value: object, kind: type[_V], table: str, column: str, key: object) -> _V:
        """``value``, read from ``column`` of the ``table`` row whose key is ``key``, when it is
        of the storage class the store writes there (``kind``: bytes for a BLOB, int for an
        INTEGER); StoreCorrupt naming the table, the row and the column otherwise. Every value
        the store reads passes here: TEXT, NULL or a number another program wrote where a BLOB
        belongs is never read as one (``bytes(5)`` is five zero bytes; ``bytes('x')`` a
        TypeError), nor a BLOB or TEXT where an INTEGER belongs."""
        if isinstance(value, kind):
            return value
        found = _STORAGE_CLASS.get(type(value), type(value).__name__)
        wanted = _STORAGE_CLASS[kind]
        raise self.corrupt(
            f"the {table} row {_row_name(key)} holds {found}, not {wanted}, in its {column} column"
        )

    def _rows(self, sql: str) -> Iterator[Any]:
        """The rows of ``sql``, read as they are wanted (a damaged file: StoreCorrupt)."""
        try:
            yield from self.db.execute(sql)
        except sqlite3.DatabaseError as exc:
            raise self.damaged(exc) from None

    def _write_schema(self, path: Path) -> None:
        """Write the schema version, as a writer's check that it may write: SQLite opens a file
        this process may not write read only, without a word, and the first block would fail."""
        try:
            self.begin()
            self.set_meta("schema", str(SCHEMA_VERSION).encode())
            self.commit()
        except BaseException as exc:
            self.rollback()
            self.close()  # (and with it the data directory's lock)
            failure = (
                _open_failure(path, exc, "write", write=True) if isinstance(exc, sqlite3.Error) else None
            )
            if failure is not None:
                raise failure from None
            raise

    def _upgrade_from_1(self) -> None:
        """Schema 1 -> 2 in one transaction: the pending rows are kept, in arrival order."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _PENDING_V1_TO_V2:
                db.execute(statement)
            self.set_meta("schema", str(SCHEMA_VERSION).encode())
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @_named_damage
    def backup(self, target: Path) -> None:
        """Copy the store as one committed state (what its write-ahead log holds included,
        whatever a writer in another process commits meanwhile) into a new file ``target``,
        SQLite's online backup (a plain copy of chain.sqlite without its -wal loses the blocks
        the log holds)."""
        copy = sqlite3.connect(target)
        try:
            self.db.backup(copy)
        finally:
            copy.close()

    def close(self) -> None:
        self.db.close()
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read inside one transaction: every read sees the same committed state, whatever
        a writer in another process commits meanwhile. A reader's transaction ends with a
        rollback (it has nothing to commit, and SQLite refuses to commit a read that met a
        damaged page: what the reads found, e.g. ``chain verify``'s report, stands); a damaged
        file met ending a writer's is StoreCorrupt, as anywhere."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            if self.db.in_transaction:  # (what failed, a damaged page, must not be met again)
                self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("ROLLBACK" if self.readonly else "COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self.damaged(exc) from None

    # --- transactions ----------------------------------------------------------------------

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
            self._pending_rows = None  # (what was undone is read again when next needed)

    # --- meta --------------------------------------------------------------------------------

    @_named_damage
    def get_meta(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else self.value(row[0], bytes, "meta", "value", key)

    @_named_damage
    def set_meta(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # --- blocks ------------------------------------------------------------------------------

    @_named_damage
    def put_block(self, block_hash: Hash32, height: int, header: bytes, txs: bytes) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO blocks(hash, height, header, txs) VALUES (?, ?, ?, ?)",
            (block_hash, height, header, txs),
        )

    @_named_damage
    def delete_blocks(self, block_hashes: Iterable[Hash32]) -> None:
        """Delete stored blocks (side blocks being pruned: they have no undo record)."""
        self.db.executemany("DELETE FROM blocks WHERE hash=?", [(h,) for h in block_hashes])

    @_named_damage
    def mark_invalid(self, block_hash: Hash32) -> None:
        self.db.execute("UPDATE blocks SET invalid=1 WHERE hash=?", (block_hash,))

    def block_rows(self) -> Iterator[tuple[bytes, bytes, int]]:
        """(hash, header bytes, invalid) of every stored block, by height."""
        value = self.value
        for h, header, invalid in self._rows("SELECT hash, header, invalid FROM blocks ORDER BY height"):
            yield (
                value(h, bytes, "blocks", "hash", h),
                value(header, bytes, "blocks", "header", h),
                value(invalid, int, "blocks", "invalid", h),
            )

    @_named_damage
    def block_data(self, block_hash: Hash32) -> tuple[bytes, bytes] | None:
        """(header bytes, transaction bytes) of the stored block ``block_hash``."""
        row = self.db.execute("SELECT header, txs FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        if row is None:
            return None
        return (
            self.value(row[0], bytes, "blocks", "header", block_hash),
            self.value(row[1], bytes, "blocks", "txs", block_hash),
        )

    @_named_damage
    def block_row(self, block_hash: Hash32) -> tuple[int, bytes, bytes, int] | None:
        """(height, header bytes, transaction bytes, invalid) of the stored block ``block_hash``."""
        row = self.db.execute(
            "SELECT height, header, txs, invalid FROM blocks WHERE hash=?", (block_hash,)
        ).fetchone()
        if row is None:
            return None
        value = self.value
        return (
            value(row[0], int, "blocks", "height", block_hash),
            value(row[1], bytes, "blocks", "header", block_hash),
            value(row[2], bytes, "blocks", "txs", block_hash),
            value(row[3], int, "blocks", "invalid", block_hash),
        )

    def main_rows(self) -> Iterator[tuple[int, bytes, int]]:
        """(height, hash, signed transactions) of each main-chain block, by height."""
        value = self.value
        for height, h, txs in self._rows("SELECT height, hash, txs FROM main ORDER BY height"):
            yield height, value(h, bytes, "main", "hash", height), value(txs, int, "main", "txs", height)

    @_named_damage
    def block_sizes(self, hashes: Sequence[Hash32]) -> dict[bytes, int]:
        """The encoded size of each stored block of ``hashes`` [bytes]: its header's and its
        body's, as a peer is sent it, read from the rows' lengths without reading the blocks."""
        marks = ",".join("?" * len(hashes))
        rows = self.db.execute(
            f"SELECT hash, length(header) + length(txs) FROM blocks WHERE hash IN ({marks})", tuple(hashes)
        )
        return {bytes(h): int(size) for h, size in rows}

    # --- connecting and disconnecting ------------------------------------------------------

    @_named_damage
    def connect(
        self,
        block_hash: Hash32,
        height: int,
        changes: dict[bytes, bytes | None],
        undo: bytes,
        txids: list[Hash32],
    ) -> None:
        """Make ``block_hash`` the main block at ``height`` with its state changes;
        ``txids`` are its transactions (coinbase first), which leave the pending pool."""
        db = self.db
        db.executemany(
            "INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)",
            [(k, v) for k, v in changes.items() if v is not None],
        )
        deleted = [(k,) for k, v in changes.items() if v is None]
        if deleted:
            db.executemany("DELETE FROM state WHERE key=?", deleted)
        db.execute("INSERT OR REPLACE INTO undo(hash, data) VALUES (?, ?)", (block_hash, undo))
        db.execute(
            "INSERT OR REPLACE INTO main(height, hash, txs) VALUES (?, ?, ?)",
            (height, block_hash, max(len(txids) - 1, 0)),
        )
        self._delete_pending(txids)

    @_named_damage
    def disconnect(
        self,
        block_hash: Hash32,
        height: int,
        restore: dict[bytes, bytes | None],
    ) -> None:
        db = self.db
        db.executemany(
            "INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)",
            [(k, v) for k, v in restore.items() if v is not None],
        )
        db.executemany("DELETE FROM state WHERE key=?", [(k,) for k, v in restore.items() if v is None])
        db.execute("DELETE FROM undo WHERE hash=?", (block_hash,))
        db.execute("DELETE FROM main WHERE height=?", (height,))

    @_named_damage
    def get_undo(self, block_hash: Hash32) -> bytes | None:
        row = self.db.execute("SELECT data FROM undo WHERE hash=?", (block_hash,)).fetchone()
        return None if row is None else self.value(row[0], bytes, "undo", "data", block_hash)

    # --- state and indexes -------------------------------------------------------------------

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        value = self.value
        for k, v in self._rows("SELECT key, value FROM state"):
            yield value(k, bytes, "state", "key", k), value(v, bytes, "state", "value", k)

    def main_tx_count(self) -> int:
        """Signed transactions in the main chain."""
        return sum(txs for _, _, txs in self.main_rows())

    # --- pending transactions (the mempool's durable copy) -------------------------------

    def _pending(self) -> dict[bytes, int]:
        rows = self._pending_rows
        if rows is None:
            value = self.value
            rows = self._pending_rows = {
                value(t, bytes, "pending", "txid", i): value(i, int, "pending", "id", i)
                for i, t in self.db.execute("SELECT id, txid FROM pending")
            }
            self._next_pending = max(rows.values(), default=0) + 1
        return rows

    def _insert_pending(self, added: Iterable[tuple[Hash32, bytes, int]]) -> None:
        """Append the transactions not yet in the table (one row per transaction id)."""
        rows = self._pending()
        new = []
        for tx_id, data, when in added:
            if tx_id not in rows:
                rows[tx_id] = self._next_pending
                new.append((self._next_pending, tx_id, data, when))
                self._next_pending += 1
        self.db.executemany("INSERT INTO pending(id, txid, data, added) VALUES (?, ?, ?, ?)", new)

    def _delete_pending(self, tx_ids: Iterable[Hash32]) -> None:
        rows = self._pending()
        if rows:
            gone = [(i,) for t in tx_ids if (i := rows.pop(t, None)) is not None]
            self.db.executemany("DELETE FROM pending WHERE id=?", gone)

    @_named_damage
    def add_pending(self, tx_id: Hash32, data: bytes, added: int) -> None:
        self._insert_pending([(tx_id, data, added)])

    @_named_damage
    def write_pending(self, added: list[tuple[Hash32, bytes, int]], removed: list[Hash32]) -> None:
        """Many pending-pool changes in one SQLite transaction."""
        if not added and not removed:
            return
        self.begin()
        self._insert_pending(added)
        self._delete_pending(removed)
        self.commit()

    @_named_damage
    def remove_pending(self, tx_ids: Iterable[Hash32]) -> None:
        self._delete_pending(tx_ids)

    @_named_damage
    def pending_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM pending").fetchone()[0])

    @_named_damage
    def pending_rows(self) -> tuple[list[tuple[int, bytes, bytes]], list[tuple[int, str]]]:
        """A writer's pending rows in arrival order, read leniently: (row id, transaction id,
        encoded) of those whose values are of the storage class the store writes, and apart
        (row id, what is wrong) of the others. Pending transactions are not consensus data: a
        node starting drops such a row (``drop_pending_rows``), where ``pending`` calls the
        store damaged."""
        readable: list[tuple[int, bytes, bytes]] = []
        damaged: list[tuple[int, str]] = []
        for row, t, d in self.db.execute("SELECT id, txid, data FROM pending ORDER BY id"):
            column, value = ("txid", t) if not isinstance(t, bytes) else ("data", d)
            if isinstance(value, bytes):
                readable.append((row, t, d))
                continue
            found = _STORAGE_CLASS.get(type(value), type(value).__name__)
            damaged.append(
                (row, f"its txid {_row_name(t)}, holds {found}, not a BLOB, in its {column} column")
            )
        return readable, damaged

    @_named_damage
    def drop_pending_rows(self, rows: Iterable[int]) -> None:
        """Delete pending rows by their row ids (damaged ones: their transaction ids may not
        be readable)."""
        self.db.executemany("DELETE FROM pending WHERE id=?", [(row,) for row in rows])
        self._pending_rows = None  # (read again when next needed)

    @_named_damage
    def pending(self) -> list[tuple[bytes, bytes]]:
        """The pending transactions (id, encoded), in the order they arrived."""
        rows = self.db.execute(f"SELECT txid, data FROM pending ORDER BY {self._pending_order}")
        value = self.value
        return [
            (value(t, bytes, "pending", "txid", t), value(d, bytes, "pending", "data", t)) for t, d in rows
        ]
