"""The audit beside a simulation: a child process that follows the chain while it is
written (across a reorganisation) reports what the replay from genesis does, and is
stopped when its figures are not wanted."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridnet.crypto.ops import OPS, snapshot
from gridnet.errors import AuditFailed
from gridnet.ledger.store import DB_NAME
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.verify import verify_chain
from gridnet.sim import output
from gridnet.sim.output import audit_beside
from gridnet.units import UNITS_PER_GNC
from tests.helpers import extend, new_chain, processes_using, sign, test_params, wait_for
from tests.ledger.test_replay import KEYS, forks, switch

A, B, C = KEYS


@pytest.fixture(autouse=True)
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child is started whatever this machine (or ``taskset``) leaves to the tests."""
    monkeypatch.setattr(output, "usable_cores", lambda: 2)


def followers(chain_dir: Path) -> list[str]:
    """Audit children following ``chain_dir``."""
    return [p for p in processes_using(chain_dir) if "gridnet.sim.output" in p]


def test_the_audit_follows_the_chain_while_it_is_written(tmp_path: Path) -> None:
    p, q, x = forks(tmp_path, test_params(KEYS), 2, 6)
    with audit_beside(tmp_path / "x") as audited:
        for n in range(3):  # the chain grows on P, then switches to Q's longer branch
            extend(x, [sign(x, A, Transfer(C.address, UNITS_PER_GNC), 2 + n)])
        switch(x, q)
        before = snapshot()
        figures = audited()
        child_ops = OPS.since(before)  # the child's checks, counted here
    whole = verify_chain(tmp_path / "x")
    assert figures["ok"] and whole.ok, figures
    assert (figures["blocks"], figures["transactions"]) == (whole.blocks, whole.transactions) == (9, 8)
    assert child_ops.verifies >= figures["transactions"]
    for c in (p, q, x):
        c.close()


def test_an_audit_not_waited_for_is_stopped(tmp_path: Path) -> None:
    p, q, x = forks(tmp_path, test_params(KEYS), 1, 0)
    with pytest.raises(RuntimeError, match="the run failed"), audit_beside(tmp_path / "x"):
        assert wait_for(lambda: followers(tmp_path / "x"), 60)
        raise RuntimeError("the run failed")
    assert followers(tmp_path / "x") == []
    for c in (p, q, x):
        c.close()


def test_an_audit_that_cannot_open_the_chain_is_auditfailed_with_the_childs_last_line(tmp_path: Path) -> None:
    """The chain's database file overwritten from its first byte (as a stray program would):
    the child cannot open it, stops on the store's named error, and the parent raises
    AuditFailed naming the chain and that error, the child's last line."""
    chain = new_chain(tmp_path / "x", test_params(KEYS))
    extend(chain)
    chain.close()
    db = tmp_path / "x" / DB_NAME
    db.write_bytes(b"not a chain " * (db.stat().st_size // 12))
    with audit_beside(tmp_path / "x") as audited, pytest.raises(AuditFailed) as err:
        audited()
    text = str(err.value)
    assert text.startswith(f"the audit of {tmp_path / 'x'} stopped: gridnet.errors.StoreCorrupt: "), text
    assert "is not a readable GRIDNET store" in text
    assert followers(tmp_path / "x") == []
