"""A data directory's path may hold any character, and a chain on read-only media can be
read: the store opens its database by a URI built from the path, not by pasting the path
into one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gridnet.errors import StoreCorrupt
from gridnet.ledger.chain import Chain
from gridnet.ledger.store import DB_NAME, Store, immutable_fallback
from tests.helpers import extend, new_chain, test_params


@pytest.mark.parametrize("name", ["run #1", "p?x", "pct%41", "sp ace", "ünï"])
def test_a_data_directory_may_have_any_name(tmp_path: Path, name: str) -> None:
    data_dir = tmp_path / name
    chain = new_chain(data_dir, test_params([]))
    extend(chain)
    chain.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written beside it
    reader = Store(data_dir, readonly=True)
    assert reader.get_meta("head") is not None
    reader.close()
    again = Chain.open(data_dir)
    assert again.height == 1
    again.close()


def test_a_chain_on_read_only_media_is_verified(tmp_path: Path) -> None:
    """As an unprivileged user (root may write anywhere), on a directory it cannot write:
    SQLite cannot make the shared-memory file a WAL reader needs, so the store reads the file
    as immutable (no writer can be at work where nobody may write)."""
    root = Path(tempfile.mkdtemp(prefix="gridnet-ro-"))
    try:
        root.chmod(0o755)
        chain = new_chain(root / "c", test_params([]))
        extend(chain)
        chain.close()
        for f in (root / "c").iterdir():
            f.chmod(0o644)
        (root / "c").chmod(0o555)
        assert not immutable_fallback(root / "c" / DB_NAME)  # (root may write it)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        env = dict(os.environ, HOME=str(root))
        probe = subprocess.run(
            [*as_nobody, sys.executable, "-c", "import gridnet"], env=env, capture_output=True
        )
        if probe.returncode != 0:  # e.g. a checkout in a directory of mode 0700 (mktemp -d)
            pytest.skip("an unprivileged user cannot import gridnet from this checkout")
        result = subprocess.run(
            [*as_nobody, sys.executable, "-m", "gridnet", "chain", "verify", "--data-dir", str(root / "c")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0 and "chain valid: 2 blocks" in result.stdout, result.stderr
    finally:
        (root / "c").chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("readonly", [False, True])
def test_a_store_that_is_not_sqlite_says_how_to_mend_it(tmp_path: Path, readonly: bool) -> None:
    new_chain(tmp_path / "d", test_params()).close()
    (tmp_path / "d" / DB_NAME).write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)  # a smashed header
    with pytest.raises(StoreCorrupt, match=r"is not a readable GRIDNET store .*restore it from a backup"):
        Chain.open(tmp_path / "d", readonly=readonly)
