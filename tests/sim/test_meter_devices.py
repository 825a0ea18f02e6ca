"""The homes' meters as devices (``[meters] devices``): the world feeds them and they measure,
in this process or as ``gridnet meter`` processes over HTTP with the same result; a DSO command
to curtail to 0 W acts through the meters' PV relays, and a home that overrides it closes its
relay again."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gridnet.errors import ConfigError
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.meter import READINGS
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import scenario_from_dict

SMALL: dict[str, Any] = {
    "simulation": {"intervals": 4, "start": "2026-06-21T10:00:00Z"},
    "homes": {"count": 4, "businesses": 0},
    "relay": {"hill_homes": 0},
    "meters": {"devices": "process"},
}
FEEDER: dict[str, Any] = {
    "simulation": {"seed": 4, "intervals": 8, "start": "2026-06-21T09:00:00Z"},
    "weather": {"sky": "clear"},
    "homes": {"count": 16, "pv_share": 0.75, "battery_share": 0.0, "pv_kw": [8.0, 10.0], "businesses": 0},
    "grid": {"line_type": "NAYY 4x50 SE", "spacing_m": 120.0},
    "relay": {"hill_homes": 0},
    "line_owner": [{"name": "Hill Road Lines", "fee": 0.01}],
    "dso": {"curtail_limit_w": 0},
    "meters": {"devices": "memory"},
}


def readings(chain_dir: Path) -> dict[bytes, bytes]:
    chain = Chain.open(chain_dir, readonly=True)
    try:
        return {k: v for k, v in chain.values.items() if k.startswith(READINGS.prefix)}
    finally:
        chain.close()


def test_meter_processes_measure_what_the_model_and_memory_devices_do(tmp_path: Path) -> None:
    reports, chains = {}, {}
    for devices in ("process", "memory", "model"):
        doc = copy.deepcopy(SMALL)
        doc["meters"]["devices"] = devices
        reports[devices] = simulate(scenario_from_dict(doc, f"{devices}.toml"), tmp_path / devices)
        chains[devices] = readings(tmp_path / devices / "chain")
    meters = reports["process"]["roles"]["meters"]
    assert meters["devices"] == "process" and meters["processes"] == meters["meters"] == 4
    assert reports["model"]["roles"]["meters"] == {"devices": "model"}
    assert reports["process"]["energy"] == reports["memory"]["energy"] == reports["model"]["energy"]
    assert chains["process"] == chains["memory"] == chains["model"] and chains["process"]
    assert all(r["verify"]["ok"] and r["transactions"]["refused"] == {} for r in reports.values())


def test_a_curtailment_to_zero_acts_through_the_pv_relays(tmp_path: Path) -> None:
    report = simulate(scenario_from_dict(FEEDER, "meter-relays.toml"), tmp_path / "out")
    meters, dso = report["roles"]["meters"], report["dso"]
    assert report["verify"]["ok"] and report["transactions"]["refused"] == {}
    assert dso["commands"] > 0 and meters["opened_by_dso"] >= dso["homes_following_commands"] > 0
    assert meters["closed_by_owner"] == dso["overrides_recorded"] > 0  # each override closes its relay
    assert report["energy"]["curtailed_wh"] > 0


def test_an_unknown_meter_kind_is_one_clear_line(tmp_path: Path) -> None:
    doc = {**SMALL, "meters": {"devices": "hardware"}}
    with pytest.raises(ConfigError, match=r'\[meters\] devices must be "model", "memory" or "process"'):
        simulate(scenario_from_dict(doc, "bad.toml"), tmp_path / "bad")
