"""Generation monitoring in the simulator (``[generation]``): the station's meters sign every
sample of the machine; a real load rejection and reconnection raise no flag, and every record
the compromised generator meter falsifies after the attack is flagged on chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridnet.errors import ConfigError
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.monitoring import STATIONS, station_id
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import scenario_from_dict
from tests.helpers import participant_key

HOUR: dict[str, Any] = {
    "simulation": {"intervals": 2, "start": "2026-06-21T10:00:00Z"},
    "homes": {"count": 2, "businesses": 0},
    "relay": {"hill_homes": 0},
    "generation": {"enabled": True, "sample_s": 5, "operator_opens_sl_s": 300, "operator_closes_sl_s": 600},
}


def test_normal_operation_raises_no_flag(tmp_path: Path) -> None:
    report = simulate(scenario_from_dict(HOUR, "generation.toml"), tmp_path / "out")
    g = report["roles"]["generation"]
    assert report["verify"]["ok"] and report["transactions"]["refused"] == {}
    assert g["registered"] and g["measurements"] == 30 * 60 // 5 and g["flagged"] == 0
    assert [e["what"] for e in g["events"]] == ["operator opened SL", "operator closed SL"]


def test_a_false_data_injection_is_flagged_on_chain(tmp_path: Path) -> None:
    doc = {**HOUR, "generation": {**HOUR["generation"], "attack_s": 1200}}
    report = simulate(scenario_from_dict(doc, "generation.toml"), tmp_path / "out")
    g = report["roles"]["generation"]
    assert report["verify"]["ok"] and report["transactions"]["refused"] == {}
    assert g["false_records"] == 121 and g["false_records_flagged"] == 121 and g["true_records_flagged"] == 0
    assert g["flags_by_reason"] == {"switch_contradiction": 121} and g["switch_violations"] == 2
    chain = Chain.open(tmp_path / "out" / "chain", readonly=True)
    try:
        operator = participant_key(report, "generation-operator")
        station = chain.view().get(STATIONS, station_id(operator.public_key, "Plant"))
        assert station is not None and station.flagged == 121 and station.switches == 0b100  # SL, SC open
    finally:
        chain.close()


def test_a_bad_generation_table_is_one_clear_line(tmp_path: Path) -> None:
    doc = {**HOUR, "generation": {**HOUR["generation"], "sample_s": 0}}
    with pytest.raises(ConfigError, match=r"\[generation\] sample_s must be 1 to 60"):
        simulate(scenario_from_dict(doc, "generation.toml"), tmp_path / "bad")
