"""One writer per data directory (ledger/lock.py): a second writer is refused with the
holder's PID, readers are not, and the lock goes with its holder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gridnet.errors import DataDirLocked
from gridnet.ledger.chain import Chain
from gridnet.ledger.lock import holder
from gridnet.ledger.verify import verify_chain
from tests.helpers import extend, test_keys, test_params


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    chain = Chain.create(tmp_path / "d", test_params(test_keys()))
    try:
        with pytest.raises(DataDirLocked) as err:
            Chain.open(tmp_path / "d")
        assert err.value.pid == os.getpid()
        assert f"in use by process {os.getpid()}" in str(err.value)
        with pytest.raises(DataDirLocked):
            Chain.create(tmp_path / "d", test_params(test_keys()))
        found = holder(tmp_path / "d")
        assert found is not None and found.pid == os.getpid()
    finally:
        chain.close()
    assert holder(tmp_path / "d") is None
    Chain.open(tmp_path / "d").close()  # free again once closed


def test_deleting_the_lock_file_does_not_let_a_second_writer_in(tmp_path: Path) -> None:
    """``.lock`` stays after every clean stop and looks stale: an operator who tidies it away
    while a node runs must not let a second node write the same store (they forked one
    chain.sqlite into a chain that no longer verifies)."""
    chain = Chain.create(tmp_path / "d", test_params(test_keys()))
    try:
        (tmp_path / "d" / ".lock").unlink()
        with pytest.raises(DataDirLocked) as err:
            Chain.open(tmp_path / "d")
        assert "in use by another process" in str(err.value)  # (who it is went with the file)
        found = holder(tmp_path / "d")
        assert found is not None and found.pid is None
    finally:
        chain.close()
    Chain.open(tmp_path / "d").close()


def test_readers_see_a_consistent_chain_beside_the_writer(tmp_path: Path) -> None:
    chain = Chain.create(tmp_path / "d", test_params(test_keys()))
    try:
        for _ in range(3):
            extend(chain)
        reader = Chain.open(tmp_path / "d", readonly=True)
        try:
            assert reader.height == 3 and reader.head.hash == chain.head.hash
        finally:
            reader.close()
        extend(chain)
        assert verify_chain(tmp_path / "d").ok
        assert holder(tmp_path / "d") is not None  # the readers did not disturb the writer's lock
    finally:
        chain.close()


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    Chain.create(tmp_path / "d", test_params(test_keys())).close()
    code = (
        "import os, sys; from pathlib import Path; from gridnet.ledger.chain import Chain; "
        "c = Chain.open(Path(sys.argv[1])); print('locked', flush=True); os.kill(os.getpid(), 9)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "d")], capture_output=True, text=True, timeout=60
    )
    assert "locked" in proc.stdout and proc.returncode == -9
    assert holder(tmp_path / "d") is None
    Chain.open(tmp_path / "d").close()
