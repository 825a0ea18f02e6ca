"""The chain's coin accounted for (``ledger/supply.py``): allocations and block rewards equal
what accounts and escrows hold plus what the rules destroyed. ``tests/ledger/conftest.py``
checks it after every block of every ledger test; here, that it sees each escrow, counts what
is destroyed, and that the audit finds a rule that makes coin (``SupplyMismatch``)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.encoding import encode
from gridnet.errors import SupplyMismatch
from gridnet.ledger import supply
from gridnet.ledger.params import block_reward
from gridnet.ledger.state import _TABLES, ACCOUNTS, DESTROYED, DESTROYED_KEY, Destroyed, StateView
from gridnet.ledger.txs.maintenance import BidTender, ClaimTender, DisputeTender
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.verify import verify_chain
from gridnet.units import UNITS_PER_GNC
from tests.helpers import extend, new_chain, sign, test_keys, test_params
from tests.ledger.test_helios import Helios
from tests.ledger.test_maintenance import DEPOSIT, OWNER, START, TEAM, VENDOR, agreed, h, open_tender  # noqa: F401

KEYS = test_keys(3)


def test_every_state_table_says_whether_it_holds_coin() -> None:
    names = {t.name for t in _TABLES.values()}
    assert set(supply.HOLDINGS) | supply.NO_COIN == names, "a table is neither holding coin nor not"
    assert not set(supply.HOLDINGS) & supply.NO_COIN


def test_rewards_to_sums_the_schedule_across_halvings() -> None:
    params = msgspec.structs.replace(test_params(KEYS), halving_interval=3)
    for height in range(0, 3 * 70):
        assert supply.rewards_to(params, height) == sum(block_reward(params, k) for k in range(1, height + 1))


def test_an_open_tender_holds_its_deposit_and_every_bids_penalty(h: Helios) -> None:  # noqa: F811
    tid, _ = open_tender(h)
    h.mine(h.tx(TEAM, BidTender(tid, 30_000)), h.tx(VENDOR, BidTender(tid, 40_000)))
    coin = supply.check(h.chain.params, h.chain.height, h.chain.values)
    assert coin.held["tenders"] == DEPOSIT + 3_000 + 4_000  # (10 % penalty deposits)
    assert coin.unaccounted == 0


def test_a_disputed_tenders_price_is_counted_destroyed(h: Helios) -> None:  # noqa: F811
    tid = agreed(h)
    h.mine(h.tx(TEAM, ClaimTender(tid)), interval=START + 5)
    assert h.chain.view().get(DESTROYED, DESTROYED_KEY) is None
    h.mine(h.tx(OWNER, DisputeTender(tid)), interval=START + 6)
    assert h.chain.view().get(DESTROYED, DESTROYED_KEY) == Destroyed(30_000)
    coin = supply.check(h.chain.params, h.chain.height, h.chain.values)
    assert coin.destroyed == 30_000 and coin.held["tenders"] == 0


def test_coin_no_rule_created_is_named(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "chain", test_params(KEYS))
    extend(chain)
    values = dict(chain.values)
    key = ACCOUNTS.prefix + KEYS[0].address
    acct = StateView(values).account(KEYS[0].address)
    values[key] = encode(msgspec.structs.replace(acct, balance=acct.balance + 7))
    with pytest.raises(
        SupplyMismatch, match=r"holds 305000000007 \(accounts 305000000007\), 7 more: a rule made coin"
    ):
        supply.check(chain.params, chain.height, values)
    chain.close()


@pytest.mark.coin_unchecked
def test_the_audit_finds_a_rule_that_makes_coin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule that credits one unit more than it took: every node running it stores the same
    state, so the replay matches the stored state, and only the coin tells."""
    credit = StateView.credit
    monkeypatch.setattr(StateView, "credit", lambda self, to, amount: credit(self, to, amount + 1))
    chain = new_chain(tmp_path / "chain", test_params(KEYS))
    a, b, _ = KEYS
    extend(chain, [sign(chain, a, Transfer(b.address, UNITS_PER_GNC), 0)])
    chain.close()
    report = verify_chain(tmp_path / "chain")
    assert not report.ok and report.rule == "SupplyMismatch", report.message
    assert report.supply is None


def test_the_audit_reports_where_the_coin_is(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "chain", test_params(KEYS))
    a, b, _ = KEYS
    extend(chain, [sign(chain, a, Transfer(b.address, UNITS_PER_GNC), 0)])
    extend(chain)
    params, height = chain.params, chain.height
    chain.close()
    report = verify_chain(tmp_path / "chain")
    assert report.ok and report.supply is not None
    allocated = sum(x.amount for x in params.allocations)
    assert report.supply.created == allocated + block_reward(params, 1) + block_reward(params, 2)
    assert report.supply.held["accounts"] == report.supply.created and report.supply.destroyed == 0
    assert height == 2
