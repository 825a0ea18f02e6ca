"""A chain records the consensus rules it was made under; one made under other rules is
refused by name when opened or verified (``RulesChanged``), not taken for damage."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gridnet.errors import RulesChanged, StoreCorrupt
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import RULES_VERSION
from gridnet.ledger.store import DB_NAME
from gridnet.ledger.verify import verify_chain
from tests.helpers import new_chain, next_block, test_params


def made(tmp_path: Path) -> Path:
    chain = new_chain(tmp_path / "d", test_params())
    chain.add_block(next_block(chain))
    chain.close()
    return tmp_path / "d"


def set_rules(data_dir: Path, value: bytes | None) -> None:
    db = sqlite3.connect(data_dir / DB_NAME)
    try:
        if value is None:
            db.execute("DELETE FROM meta WHERE key='rules'")
        else:
            db.execute("UPDATE meta SET value=? WHERE key='rules'", (value,))
        db.commit()
    finally:
        db.close()


def test_a_new_chain_records_the_rules_it_was_made_under(tmp_path: Path) -> None:
    data_dir = made(tmp_path)
    db = sqlite3.connect(data_dir / DB_NAME)
    try:
        assert db.execute("SELECT value FROM meta WHERE key='rules'").fetchone() == (
            str(RULES_VERSION).encode(),
        )
    finally:
        db.close()
    chain = Chain.open(data_dir, readonly=True)
    assert chain.height == 1
    chain.close()
    assert verify_chain(data_dir).ok


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (None, "consensus rules 1 (a gridnet from before the rules were versioned)"),
        (str(RULES_VERSION + 1).encode(), f"consensus rules {RULES_VERSION + 1};"),
    ],
)
def test_a_chain_of_other_rules_is_ruleschanged_when_opened_or_verified(
    tmp_path: Path, value: bytes | None, said: str
) -> None:
    data_dir = made(tmp_path)
    set_rules(data_dir, value)
    for readonly in (False, True):
        with pytest.raises(RulesChanged, match="start a new data directory") as caught:
            Chain.open(data_dir, readonly=readonly)
        assert said in str(caught.value) and f"this gridnet implements rules {RULES_VERSION}" in str(
            caught.value
        )
    with pytest.raises(RulesChanged):
        verify_chain(data_dir)


@pytest.mark.parametrize("value", [b"two", b"", b"1" * 10, "2".encode("utf-16")])
def test_a_rules_row_that_is_no_version_is_damage(tmp_path: Path, value: bytes) -> None:
    data_dir = made(tmp_path)
    set_rules(data_dir, value)
    with pytest.raises(StoreCorrupt, match="the meta row 'rules' is not a rules version"):
        Chain.open(data_dir, readonly=True)
