"""What a node keeps in its data directory is never writable by other users, whatever the umask
(files.py): under ``umask 000`` a plain ``mkdir`` and ``write_text`` made the directory 0777 and
its settings, genesis, info file and log 0666, so anyone on the machine could rewrite the node's
settings or its chain. A data directory others may write in is refused for writing."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.errors import DataDirExposed
from gridnet.ledger.chain import Chain
from gridnet.node.logs import LOG_NAME, configure, logger, reset
from gridnet.node.process import _write_info
from tests.helpers import test_keys, test_params

OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_chain_init_under_umask_000_leaves_nothing_writable_by_others(tmp_path: Path) -> None:
    data = tmp_path / "parent" / "d"
    result = subprocess.run(
        [sys.executable, "-m", "gridnet", "chain", "init", "--data-dir", str(data)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        umask=0,
    )
    assert result.returncode == 0, result.stderr
    written = [data.parent, data, *data.iterdir()]
    assert {p.name for p in written} >= {"parent", "d", "chain.sqlite", "genesis.toml", "gridnet.toml"}
    exposed = {p.name: oct(mode(p)) for p in written if mode(p) & OTHERS_WRITE}
    assert exposed == {}


def test_the_info_file_log_and_key_directory_are_not_writable_by_others(
    tmp_path: Path,
) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with umask(0):
        try:
            configure(tmp_path, max_bytes=300, backups=1)
            for i in range(20):  # (rotates: the new file is opened the same way)
                logger("node").warning("line %d of the log, long enough to rotate soon", i)
        finally:
            reset()
            root.setLevel(level)
        _write_info(tmp_path, {"pid": 1})
        write_key_file(tmp_path / "keys" / "sub" / "node.key", PrivateKey.generate())
    assert root.handlers == handlers
    assert (tmp_path / f"{LOG_NAME}.1").exists()
    for path in (tmp_path / LOG_NAME, tmp_path / f"{LOG_NAME}.1", tmp_path / "node.json"):
        assert mode(path) & OTHERS_WRITE == 0, (path, oct(mode(path)))
    assert mode(tmp_path / "keys") & OTHERS_WRITE == 0
    assert mode(tmp_path / "keys" / "sub") & OTHERS_WRITE == 0


def test_a_log_left_writable_by_others_is_tightened_when_reopened(tmp_path: Path) -> None:
    log = tmp_path / LOG_NAME
    log.write_text("earlier\n")
    log.chmod(0o666)
    try:
        configure(tmp_path)
        logger("node").warning("started")
    finally:
        reset()
    assert mode(log) == 0o644
    assert log.read_text().startswith("earlier\n")


def test_a_data_directory_everyone_may_write_is_refused_for_writing(tmp_path: Path) -> None:
    data = tmp_path / "d"
    Chain.create(data, test_params(test_keys())).close()
    data.chmod(0o777)
    with pytest.raises(DataDirExposed) as err:
        Chain.open(data)
    assert f"run 'chmod o-w {data}'" in str(err.value)
    assert "\n" not in str(err.value)
    Chain.open(data, readonly=True).close()  # reading it is no danger
    data.chmod(0o775)  # a group that may write (a user-private group, umask 002) is the owner's choice
    Chain.open(data).close()


def test_chain_init_in_an_empty_directory_everyone_may_write_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    data.chmod(0o1777)
    with pytest.raises(DataDirExposed):
        Chain.create(data, test_params(test_keys()))
    assert list(data.iterdir()) == []


def test_a_data_directory_inside_a_directory_everyone_may_write_is_refused(tmp_path: Path) -> None:
    """Without the sticky bit, any user may rename a directory's entries: a data directory in
    one could be swapped for another's (with the sticky bit, as /tmp, only its owner may)."""
    data = tmp_path / "shared" / "d"
    Chain.create(data, test_params(test_keys())).close()
    (tmp_path / "shared").chmod(0o777)
    with pytest.raises(DataDirExposed, match=r"is in .*shared, which every user .* no sticky bit"):
        Chain.open(data)
    (tmp_path / "shared").chmod(0o1777)
    Chain.open(data).close()


def test_a_log_file_of_another_user_is_written_as_it_is() -> None:
    """Only a file's owner may change its mode: a log another user left writable is not
    tightened (the node failed to start, 'Operation not permitted' naming no file)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run as another user")
    data = Path(tempfile.mkdtemp(prefix="gridnet-log-"))
    try:
        data.chmod(0o755)
        log = data / LOG_NAME
        log.write_text("earlier\n")
        log.chmod(0o666)  # (root's, left by a run under umask 000)
        os.chown(data, 65534, 65534)
        os.setegid(65534)
        os.seteuid(65534)
        try:
            configure(data)
            logger("node").warning("started")
        finally:
            reset()
            os.seteuid(0)
            os.setegid(0)
        assert "started" in log.read_text() and mode(log) == 0o666
    finally:
        shutil.rmtree(data)
