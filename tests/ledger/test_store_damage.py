"""A damaged store file — a malformed page in the middle of chain.sqlite — is StoreCorrupt,
one line naming the file and what to do, wherever it is met: at open or by a later query.
The damage is made for real, by overwriting the page that holds a block's transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from gridnet.encoding import encode
from gridnet.errors import StoreCorrupt, UndoMismatch
from gridnet.ledger.blocks import Block, encode_body
from gridnet.ledger.chain import Chain, UndoRecord
from gridnet.ledger.state import Account
from gridnet.ledger.store import DB_NAME, Store
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.verify import verify_chain
from tests.helpers import extend, new_chain, sign, test_keys, test_params

KEYS = test_keys(2)


def _chain_with_a_full_block(data_dir: Path) -> tuple[bytes, bytes]:
    """A closed chain whose block 2 holds 40 transfers: (its hash, one of its signatures)."""
    chain = new_chain(data_dir, test_params(KEYS))
    extend(chain)
    block = extend(chain, [sign(chain, KEYS[0], Transfer(KEYS[1].address, 1 + i), i) for i in range(40)])
    extend(chain)
    h = chain.main[2].hash
    assert chain.get_block(h) is not None and encode(chain.get_block(h)) == encode(block)
    chain.close()
    return h, block.txs[20].signature


def _smash_page_holding(data_dir: Path, needle: bytes) -> None:
    """Overwrite, in place, the database page that holds ``needle`` (its b-tree header too)."""
    path = data_dir / DB_NAME
    raw = path.read_bytes()
    page_size = int.from_bytes(raw[16:18], "big")
    at = raw.index(needle)
    assert raw.find(needle, at + 1) == -1
    start = at - at % page_size
    with path.open("r+b") as f:
        f.seek(start)
        f.write(b"\xff" * page_size)


def _one_line_naming(exc: pytest.ExceptionInfo[StoreCorrupt], data_dir: Path) -> None:
    text = str(exc.value)
    assert "\n" not in text
    assert str(data_dir / DB_NAME) in text and "restore it from a backup" in text


@pytest.mark.parametrize("readonly", [False, True])
def test_a_malformed_page_met_at_open_is_store_corrupt(tmp_path: Path, readonly: bool) -> None:
    _, signature = _chain_with_a_full_block(tmp_path / "d")
    _smash_page_holding(tmp_path / "d", signature)
    with pytest.raises(StoreCorrupt) as err:
        Chain.open(tmp_path / "d", readonly=readonly)
    _one_line_naming(err, tmp_path / "d")
    assert "malformed" in str(err.value)


def test_a_malformed_page_met_by_a_query_is_store_corrupt(tmp_path: Path) -> None:
    h, signature = _chain_with_a_full_block(tmp_path / "d")
    store = Store(tmp_path / "d", readonly=True)  # (open reads the schema and meta pages only)
    try:
        assert store.block_data(h) is not None
        _smash_page_holding(tmp_path / "d", signature)
        store.db.execute("PRAGMA shrink_memory")  # (the page is read from the file again, as in a long run)
        with pytest.raises(StoreCorrupt) as err:
            store.block_data(h)
        _one_line_naming(err, tmp_path / "d")
    finally:
        store.close()


def test_chain_verify_reports_a_malformed_page_wherever_it_is(tmp_path: Path) -> None:
    """Each page of the file in turn has its first 8 bytes overwritten: ``verify_chain``
    reports the damage (or, met opening the store, raises StoreCorrupt in one line); it had
    crashed with sqlite3.DatabaseError ending its read transaction (SQLite refuses to commit a
    read that met a malformed page), a traceback from ``gridnet chain verify``."""
    _chain_with_a_full_block(tmp_path / "base")
    raw = (tmp_path / "base" / DB_NAME).read_bytes()
    page_size = int.from_bytes(raw[16:18], "big")
    reported = 0
    for page in range(1, len(raw) // page_size):
        damaged = bytearray(raw)
        damaged[page * page_size : page * page_size + 8] = b"\xff" * 8
        data_dir = tmp_path / f"p{page}"
        data_dir.mkdir()
        (data_dir / DB_NAME).write_bytes(bytes(damaged))
        try:
            report = verify_chain(data_dir)
        except StoreCorrupt as exc:
            assert "\n" not in str(exc) and str(data_dir / DB_NAME) in str(exc)
            continue
        # (an overflow page's bytes are no b-tree header: what they held fails as data instead)
        reported += report.rule == "StoreCorrupt"
    assert reported > 0  # (malformed pages met by the replay, not at open)


def _rewrite(data_dir: Path, sql: str, *args: object) -> None:
    """Change the store behind its writer's back, as a bad disk or a stray program would."""
    db = sqlite3.connect(data_dir / DB_NAME)
    try:
        db.execute(sql, args)
        db.commit()
    finally:
        db.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_a_stored_header_that_does_not_hash_to_its_key_is_found_at_open(
    tmp_path: Path, readonly: bool
) -> None:
    h, _ = _chain_with_a_full_block(tmp_path / "d")
    chain = Chain.open(tmp_path / "d", readonly=True)
    header = chain.main[2].header
    chain.close()
    altered = msgspec.structs.replace(header, timestamp=header.timestamp + 1)
    _rewrite(tmp_path / "d", "UPDATE blocks SET header=? WHERE hash=?", encode(altered), h)
    with pytest.raises(
        StoreCorrupt, match=rf"the header stored as block {h.hex()[:16]} does not hash to it in "
    ) as err:
        Chain.open(tmp_path / "d", readonly=readonly)
    _one_line_naming(err, tmp_path / "d")


def test_a_stored_body_that_is_not_its_headers_is_never_read_back(tmp_path: Path) -> None:
    h, _ = _chain_with_a_full_block(tmp_path / "d")
    chain = Chain.open(tmp_path / "d")
    try:
        other = chain.block_at(3)
        assert other is not None
        _rewrite(tmp_path / "d", "UPDATE blocks SET txs=? WHERE hash=?", encode_body(other), h)
        with pytest.raises(
            StoreCorrupt, match=rf"block 2 {h.hex()[:16]}: its transactions are not its header's"
        ):
            chain.get_block(h)
        assert chain.store.damage is not None and "is damaged" in chain.store.damage
    finally:
        chain.close()


def _fork(tmp_path: Path) -> tuple[Chain, list[Block]]:
    """A chain whose head, block 1, holds a transfer, and a heavier branch of two blocks that
    leaves it from genesis (not added)."""
    params = test_params(KEYS)
    chain, other = new_chain(tmp_path / "d", params), new_chain(tmp_path / "o", params)
    extend(chain, [sign(chain, KEYS[0], Transfer(KEYS[1].address, 7), 0)])
    branch = [extend(other, miner=KEYS[1]), extend(other, miner=KEYS[1])]
    other.close()
    return chain, branch


def _alter_undo(data_dir: Path, block_hash: bytes) -> None:
    """Change the first value block ``block_hash``'s undo record would restore."""
    db = sqlite3.connect(data_dir / DB_NAME)
    try:
        (raw,) = db.execute("SELECT data FROM undo WHERE hash=?", (block_hash,)).fetchone()
        record = msgspec.msgpack.decode(raw, type=UndoRecord)
        first = encode(Account(balance=1)) if record.values[0] is None else None
        altered = UndoRecord(record.keys, (first, *record.values[1:]))
        db.execute("UPDATE undo SET data=? WHERE hash=?", (encode(altered), block_hash))
        db.commit()
    finally:
        db.close()


def test_an_undo_record_that_does_not_restore_the_parents_state_is_refused(tmp_path: Path) -> None:
    chain, branch = _fork(tmp_path)
    head, values = chain.head, dict(chain.values)
    _alter_undo(tmp_path / "d", head.hash)
    chain.add_block(branch[0], now=branch[0].header.timestamp)
    with pytest.raises(
        UndoMismatch, match=r"block 1 .*: its undo record does not restore the state of block 0"
    ):
        chain.add_block(branch[1], now=branch[1].header.timestamp)
    assert chain.head is head and chain.values == values  # nothing of the reorg was kept
    assert chain.commitment.root == head.header.state_root
    chain.close()


def test_chain_verify_checks_each_undo_record(tmp_path: Path) -> None:
    chain, _ = _fork(tmp_path)
    h = chain.head.hash
    chain.close()
    assert verify_chain(tmp_path / "d").ok
    _alter_undo(tmp_path / "d", h)
    report = verify_chain(tmp_path / "d")
    assert not report.ok and report.rule == "UndoMismatch" and report.bad_height == 1
    assert report.message == "block 1: its undo record does not restore the state of block 0"


@pytest.mark.parametrize("undo", [None, b"\xc1 not an undo record"])
def test_a_missing_or_unreadable_undo_record_is_store_corrupt(tmp_path: Path, undo: bytes | None) -> None:
    chain, branch = _fork(tmp_path)
    head, values = chain.head, dict(chain.values)
    if undo is None:
        _rewrite(tmp_path / "d", "DELETE FROM undo WHERE hash=?", head.hash)
    else:
        _rewrite(tmp_path / "d", "UPDATE undo SET data=? WHERE hash=?", undo, head.hash)
    chain.add_block(branch[0], now=branch[0].header.timestamp)
    named = rf"block 1 {head.hash.hex()[:16]}: its undo record (is missing|does not decode)"
    with pytest.raises(StoreCorrupt, match=named):
        chain.add_block(branch[1], now=branch[1].header.timestamp)
    assert chain.head is head and chain.values == values
    assert chain.store.damage is not None
    chain.close()


@pytest.mark.parametrize(
    ("damage", "finding"),
    [
        ("DELETE FROM main WHERE height = 1", "the main chain index is broken at height 2"),
        ("UPDATE meta SET value = zeroblob(32) WHERE key = 'head'", "the stored head does not match"),
        ("DELETE FROM state WHERE key = (SELECT max(key) FROM state)", "the stored state does not"),
        ("UPDATE meta SET value = zeroblob(32) WHERE key = 'genesis'", "the stored genesis does not match"),
    ],
)
def test_a_broken_index_head_or_state_found_at_open_is_store_corrupt(
    tmp_path: Path, damage: str, finding: str
) -> None:
    """What the open finds inconsistent in the store is damage like a malformed page: the
    file named, what to do, and a node reports it (it was a plain StoreError)."""
    _chain_with_a_full_block(tmp_path / "d")
    db = sqlite3.connect(tmp_path / "d" / DB_NAME)
    db.execute(damage)
    db.commit()
    db.close()
    with pytest.raises(StoreCorrupt, match=finding) as err:
        Chain.open(tmp_path / "d", readonly=True)
    _one_line_naming(err, tmp_path / "d")


def _deep_fork(tmp_path: Path) -> tuple[Chain, list[Block]]:
    """A chain of three blocks, block 1 holding a transfer, and a heavier branch of four that
    leaves it from genesis (not added): a reorg onto it takes every block back to genesis."""
    params = test_params(KEYS)
    chain, other = new_chain(tmp_path / "d", params), new_chain(tmp_path / "o", params)
    extend(chain, [sign(chain, KEYS[0], Transfer(KEYS[1].address, 7), 0)])
    extend(chain)
    extend(chain)
    branch = [extend(other, miner=KEYS[1]) for _ in range(4)]
    other.close()
    return chain, branch


@pytest.mark.parametrize("damage", ["altered", "text"])
def test_a_damaged_undo_record_below_the_head_is_named_when_a_reorg_reaches_it(
    tmp_path: Path, damage: str
) -> None:
    """Opening checks no undo record (it would cost a walk back through the chain at every
    start); each is checked when a reorg applies it, against its parent's state root, and by
    'chain verify'. An older block's, damaged, is named when the reorg reaches it: the blocks
    taken back above it are restored, and the state is the head's, as it was."""
    chain, branch = _deep_fork(tmp_path)
    head, values, root = chain.head, dict(chain.values), chain.commitment.root
    older = chain.main[1].hash
    if damage == "altered":
        _alter_undo(tmp_path / "d", older)
        expected = rf"^block 1 {older.hex()[:16]}: its undo record does not restore the state of block 0 in "
    else:
        _rewrite(tmp_path / "d", "UPDATE undo SET data = 'x' WHERE hash = ?", older)
        expected = rf"^the undo row {older.hex()[:16]} holds TEXT, not a BLOB, in its data column in "
    for block in branch[:3]:
        chain.add_block(block, now=block.header.timestamp)
    with pytest.raises(UndoMismatch if damage == "altered" else StoreCorrupt, match=expected):
        chain.add_block(branch[3], now=branch[3].header.timestamp)
    assert chain.head is head and chain.values == values and chain.commitment.root == root
    assert chain.store.damage is not None
    chain.close()
    reopened = Chain.open(tmp_path / "d", readonly=True)  # nothing of the reorg was written
    assert reopened.head.hash == head.hash and reopened.values == values
    reopened.close()
    report = verify_chain(tmp_path / "d")
    assert not report.ok and report.bad_height == 1
    assert report.rule == ("UndoMismatch" if damage == "altered" else "StoreCorrupt")
