"""Every scenario in scenarios/ runs, at reduced size: an hour around midday of its date with
at most 16 homes, on the in-memory network. Each must converge to a chain that verifies, and
show what it is there for."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gridnet.dashboard.run import RunResults
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import scenario_from_dict

LIBRARY = Path(__file__).parents[2] / "scenarios"
FILES = sorted(LIBRARY.glob("*.toml"))


def reduced(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` over four intervals from 11:00 UTC of its day, with at most 16 homes (meters as
    devices in this process rather than as processes)."""
    doc = copy.deepcopy(doc)
    simulation = doc.setdefault("simulation", {})
    day = str(simulation.get("start", "2026-06-21T00:00:00Z"))[:10]
    simulation.update(start=f"{day}T11:00:00Z", intervals=4)
    homes = doc.setdefault("homes", {})
    if homes.get("count", 20) > 16:
        homes["count"] = 16
        homes["businesses"] = min(homes.get("businesses", 1), 2)
        security = doc.setdefault("security", {})
        security["flagged_meters"] = min(security.get("flagged_meters", 0), 1)
    network = doc.setdefault("network", {})
    network["nodes"] = min(network.get("nodes", 3), 3)
    if doc.get("meters", {}).get("devices") == "process":  # (tests/sim/test_meter_devices.py runs
        doc["meters"]["devices"] = "memory"  # the processes; the same devices, in this process)
    return doc


def test_the_library_holds_the_scenarios_the_docs_name() -> None:
    assert [f.stem for f in FILES] == [
        "aggregators",
        "area-1000",
        "area-200",
        "credit-bank",
        "etse-update-fails",
        "etse",
        "ev",
        "generation-attack",
        "helios-island",
        "helios",
        "long-feeder",
        "maintenance",
        "meter-relays",
        "neighbourhood",
        "no-pv-street",
        "privacy",
        "winter-weekday",
    ]


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_every_scenario_in_the_library_runs(path: Path, tmp_path: Path) -> None:
    doc = tomllib.loads(path.read_text())
    report = simulate(scenario_from_dict(reduced(doc), f"{path} (reduced)"), tmp_path)
    assert report["verify"]["ok"] and report["converged"]
    RunResults.open(tmp_path).close()  # (the dashboard takes it: each series' rows within SERIES_ROWS)
    energy, grid = report["energy"], report["grid"]
    assert energy["load_wh"] > 0
    if path.stem == "no-pv-street":
        assert energy["pv_wh"] == 0 and energy["p2p_wh"] == 0 and energy["bought_from_dso_wh"] > 0
    else:
        assert energy["pv_wh"] > 0
    if path.stem in ("long-feeder", "meter-relays"):  # the grid decides: the DSO commands the far end
        assert grid["congested_intervals"] > 0 and report["dso"]["commands"] > 0
        assert energy["curtailed_wh"] > 0
    else:
        assert grid["congested_intervals"] == 0 and report["dso"]["commands"] == 0
    contracts = report["contracts"]
    assert contracts["settled_in_full"] + contracts["delivered_short"] == contracts["opened"]
    assert contracts["closed_with_remainder"] == contracts["delivered_short"]
    assert contracts["disputes_resolved"] == contracts["disputes_raised"]
    refused = report["transactions"]["refused"]
    if path.stem.startswith("etse"):  # a contract submitted just before the advisory is mined after it
        assert set(refused) <= {"VulnerableMeter"}
    else:
        assert refused == {}
    if path.stem == "etse":  # every meter is updated, so every home's balancing contract opens
        # (one refused VulnerableMeter, submitted just before the advisory, waits again: Home.dropped)
        balancing = contracts["imbalance"]
        assert balancing["balancing_contracts"] == balancing["closed"] == doc["homes"]["count"]
    if path.stem == "meter-relays":
        meters = report["roles"]["meters"]
        assert meters["meters"] == 16 and meters["opened_by_dso"] > 0
    if path.stem == "helios-island":
        island = report["roles"]["helios"]["island"]
        assert island["registered"] and island["within_caps"]
    if path.stem == "aggregators":  # both markets traded, and the records hold a majority's signatures
        aggregators = report["roles"]["aggregators"]
        assert aggregators["records"] > 0 and aggregators["majority_signed"] and aggregators["refused"] == 0
        assert aggregators["comparison"]["direct"]["energy_wh"] > 0
