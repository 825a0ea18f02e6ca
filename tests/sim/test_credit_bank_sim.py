"""The credit bank in the simulator (``[credit_bank]``): borrowers short of coin borrow against
the credit value the chain shows, sales and balances repay on the schedule, and the bank proves
the installments missed; the report agrees with the chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridnet.errors import ConfigError
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.credit import BANKS, LOANS, bank_id, credit_value, history_of
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import scenario_from_dict
from tests.helpers import participant_key

MORNING: dict[str, Any] = {
    "simulation": {"intervals": 16, "start": "2026-06-21T06:00:00Z"},
    "homes": {"count": 4, "pv_share": 0.5, "battery_share": 0.0, "businesses": 0},
    "relay": {"hill_homes": 0},
    "chain": {"block_interval_s": 60},
    "dso": {"balancing_kwh": 5.0},
    "credit_bank": {
        "enabled": True, "borrowers": 2, "borrower_start_gnc": 3.0, "borrow_below_gnc": 1.5,
        "point_gnc": 0.2, "installments": 2, "every_intervals": 5,
    },
}  # fmt: skip


def test_borrowers_borrow_repay_and_miss_as_the_chain_says(tmp_path: Path) -> None:
    report = simulate(scenario_from_dict(MORNING, "credit-bank.toml"), tmp_path / "out")
    bank = report["roles"]["credit_bank"]
    assert report["verify"]["ok"] and report["transactions"]["refused"] == {}
    assert bank["registered"] and bank["loans"] >= 2 and bank["lent_gnc"] >= 4.0
    by_name = {b["name"]: b for b in bank["borrowers"]}
    assert [b["pv"] for b in bank["borrowers"]] == [True, False]
    chain = Chain.open(tmp_path / "out" / "chain", readonly=True)
    try:
        view = chain.view()
        record = view.get(BANKS, bank_id(participant_key(report, "credit-bank").public_key, "Commons"))
        assert record is not None and record.loans == bank["loans"] and record.defaults == bank["defaults"]
        assert sum(b["missed_installments"] for b in bank["borrowers"]) == bank["missed_reported"]
        total_histories = 0
        for key in [k for k in chain.values if k.startswith(LOANS.prefix)]:
            borrower = key[len(LOANS.prefix) :]
            loan = view.get(LOANS, borrower)
            history = history_of(view, borrower)
            assert loan is not None and loan.principal <= record.criteria.max_loan
            value = credit_value(history, record.criteria)
            assert value in {b["credit_value"] for b in bank["borrowers"]}
            total_histories += 1
        assert total_histories == len(by_name) == 2
    finally:
        chain.close()
    home_without_pv = bank["borrowers"][1]
    assert home_without_pv["missed_installments"] >= 1  # no sales: it could not keep up
    assert home_without_pv["credit_value"] < 10  # below a newcomer's


def test_a_bad_credit_bank_table_is_one_clear_line(tmp_path: Path) -> None:
    for bad, message in (
        ({"threshold": 4}, "threshold 1 to members"),
        ({"installments": 0}, "installments must be 1"),
        ({"repay_share_pct": 0}, "repay_share_pct must be 1 to 100 %"),
        ({"borrowers": 9}, "borrowers must be 0 to"),
        ({"per_missed": -1}, "per_missed must be 0 to 1,000,000 points"),
    ):
        doc = {**MORNING, "credit_bank": {**MORNING["credit_bank"], **bad}}
        with pytest.raises(ConfigError, match=message):
            simulate(scenario_from_dict(doc, "credit-bank.toml"), tmp_path / f"bad-{len(message)}")


def test_the_credit_banks_capital_is_checked_in_base_units(tmp_path: Path) -> None:
    doc = {**MORNING, "credit_bank": {**MORNING["credit_bank"], "capital_gnc": 1e-9}}
    with pytest.raises(ConfigError) as info:
        simulate(scenario_from_dict(doc, "credit-bank.toml"), tmp_path / "out")
    assert str(info.value) == (
        "credit-bank.toml: [credit_bank] the criteria's points and amounts must be at least 0, "
        "capital_gnc above 0 in base units of 0.00000001 GNC (further decimals are dropped)"
    )
