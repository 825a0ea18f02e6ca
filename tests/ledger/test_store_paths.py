"""A data directory's path may hold any character, and a chain on read-only media can be
read: the store opens its database by a URI built from the path, not by pasting the path
into one."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridnet.ledger import store as store_module
from gridnet.ledger.chain import Chain
from gridnet.ledger.store import DB_NAME, Store, readonly_uri
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


def test_a_chain_on_read_only_media_is_read_as_immutable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = new_chain(tmp_path / "c", test_params([]))
    extend(chain)
    chain.close()  # (the log is checkpointed and removed on close)
    path = tmp_path / "c" / DB_NAME
    assert readonly_uri(path).endswith("?mode=ro")
    monkeypatch.setattr(store_module.os, "access", lambda *_args: False)  # as on a read-only mount
    assert readonly_uri(path).endswith("?immutable=1")
    reader = Store(tmp_path / "c", readonly=True)
    assert reader.get_meta("head") is not None
    reader.close()
