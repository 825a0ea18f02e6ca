"""A store this process may not read or write is named as such, in one line, with what to
do: never a traceback, nor a store called damaged when it is only out of reach.

Root may read and write any file whatever its mode, so as root the checks run with the
effective user and group switched to nobody for their duration (``another_user``): the
kernel then applies the mode bits as it would to any user. Any other user is already one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gridnet.errors import StorePermission
from gridnet.ledger.chain import Chain
from gridnet.ledger.store import DB_NAME
from tests.helpers import extend, new_chain, test_params

NOBODY = 65534


@contextmanager
def another_user() -> Iterator[None]:
    """Run the block as a user the mode bits apply to (nobody, when this process is root)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def chain_dir() -> Iterator[Path]:
    """A chain of two blocks in a directory anyone may reach (pytest's own are its owner's
    only), owned by the user of ``another_user`` (a data directory every user may write in is
    refused for writing: ``DataDirExposed``)."""
    root = Path(tempfile.mkdtemp(prefix="gridnet-access-"))
    try:
        root.chmod(0o755)
        chain = new_chain(root / "c", test_params([]))
        extend(chain)
        chain.close()
        for path in (*(root / "c").iterdir(), root / "c"):
            path.chmod(0o755 if path.is_dir() else 0o644)
            if os.geteuid() == 0:
                os.chown(path, NOBODY, NOBODY)
        yield root / "c"
    finally:
        (root / "c").chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def _one_line(exc: pytest.ExceptionInfo[StorePermission]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("readonly", [False, True])
def test_a_directory_in_place_of_the_store_file_is_named_not_called_damaged(
    tmp_path: Path, readonly: bool
) -> None:
    data_dir = tmp_path / "d"
    (data_dir / DB_NAME).mkdir(parents=True)
    with pytest.raises(StorePermission) as err:
        Chain.open(data_dir, readonly=readonly)
    assert f"cannot open {data_dir / DB_NAME}: it is a directory, not a file; move it away" in _one_line(err)


@pytest.mark.parametrize("readonly", [False, True])
def test_a_store_file_this_user_may_not_read_is_named(chain_dir: Path, readonly: bool) -> None:
    (chain_dir / DB_NAME).chmod(0o000)
    with another_user(), pytest.raises(StorePermission) as err:
        Chain.open(chain_dir, readonly=readonly)
    text = _one_line(err)
    assert f"cannot read {chain_dir / DB_NAME}: Permission denied; let the user running gridnet" in text
    assert "--data-dir" in text


@pytest.mark.parametrize("readonly", [False, True])
def test_a_data_directory_this_user_may_not_enter_is_named(chain_dir: Path, readonly: bool) -> None:
    chain_dir.chmod(0o000)
    with another_user(), pytest.raises(StorePermission) as err:
        Chain.open(chain_dir, readonly=readonly)
    assert f"cannot read {chain_dir}: Permission denied; let the user running gridnet" in _one_line(err)


def test_a_data_directory_this_user_may_not_write_is_named_to_a_writer(chain_dir: Path) -> None:
    (chain_dir / ".lock").unlink()
    chain_dir.chmod(0o555)
    with another_user(), pytest.raises(StorePermission) as err:
        Chain.open(chain_dir)
    assert f"cannot write the data directory {chain_dir}: Permission denied" in _one_line(err)
    with another_user():  # a reader needs no write
        Chain.open(chain_dir, readonly=True).close()


def test_a_writer_that_may_not_make_the_write_ahead_log_is_told_so(chain_dir: Path) -> None:
    """The directory is read only but the lock file is left from an earlier run: SQLite cannot
    make the log and shared-memory files beside the store."""
    for leftover in (DB_NAME + "-wal", DB_NAME + "-shm"):
        (chain_dir / leftover).unlink(missing_ok=True)
    chain_dir.chmod(0o555)
    with another_user(), pytest.raises(StorePermission) as err:
        Chain.open(chain_dir)
    assert f"cannot open {chain_dir / DB_NAME}: attempt to write a readonly database; let" in _one_line(err)


def test_a_writer_finds_out_at_open_that_it_may_not_write_the_store(chain_dir: Path) -> None:
    """SQLite opens a file it may not write read only, without a word: the writer writes at
    open, so it is refused then, not at its first block."""
    (chain_dir / DB_NAME).chmod(0o444)
    with another_user(), pytest.raises(StorePermission) as err:
        Chain.open(chain_dir)
    text = _one_line(err)
    assert f"cannot write {chain_dir / DB_NAME}: attempt to write a readonly database; let" in text
    assert "read and write it" in text
    with another_user():  # a reader needs no write
        reader = Chain.open(chain_dir, readonly=True)
        assert reader.height == 1
        reader.close()
