"""The homes' meters as devices (``[meters] devices``): the world feeds them and they measure,
in this process or as ``gridnet meter`` processes over HTTP with the same result; a DSO command
to curtail to 0 W acts through the meters' PV relays, and a home that overrides it closes its
relay again (``tests/functional/test_meter_relays.py``: with meter processes)."""

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


ENERGY = ("pv_wh", "load_wh", "import_wh", "export_wh", "curtailed_wh")
"""A home's energy in ``report.json`` → ``homes[]``."""


def overriding(doc: dict[str, Any]) -> list[str]:
    """The PV homes whose policy overrides the DSO's commands (``[dso] override_share``, 0.3 by
    default, spread evenly over the PV homes, which are the first)."""
    share, pv_homes = 0.3, round(doc["homes"]["count"] * doc["homes"]["pv_share"])
    return [f"home-{i}" for i in range(pv_homes) if int((i + 1) * share) > int(i * share)]


def energy_of(report: dict[str, Any], names: list[str]) -> dict[str, dict[str, int]]:
    return {h["name"]: {k: h[k] for k in ENERGY} for h in report["homes"] if h["name"] in names}


def test_a_curtailment_to_zero_acts_through_the_pv_relays(tmp_path: Path) -> None:
    """The DSO opens the PV relays downstream; a home that overrides its command closes its
    relay again before every interval the command covers: none of its PV is curtailed, and its
    energy is what it is with the model meters (the auditor's case: the owner closed the relay
    when the command arrived, before the DSO opened it, and was curtailed all the same)."""
    report = simulate(scenario_from_dict(FEEDER, "meter-relays.toml"), tmp_path / "out")
    meters, dso = report["roles"]["meters"], report["dso"]
    assert report["verify"]["ok"] and report["transactions"]["refused"] == {}
    assert dso["commands"] > 0 and meters["opened_by_dso"] >= dso["homes_following_commands"] > 0
    names = overriding(FEEDER)
    assert dso["overrides_recorded"] > 0 and meters["closed_by_owner"] >= len(names)
    assert report["energy"]["curtailed_wh"] > 0
    model = copy.deepcopy(FEEDER)
    model["meters"]["devices"] = "model"
    modelled = simulate(scenario_from_dict(model, "meter-relays.toml"), tmp_path / "model")
    assert energy_of(report, names) == energy_of(modelled, names)
    assert all(e["curtailed_wh"] == 0 and e["export_wh"] > 0 for e in energy_of(report, names).values())
    assert meters["relays_open_at_end"] <= dso["homes_following_commands"]  # (the overriders' are closed)


def test_an_unknown_meter_kind_is_one_clear_line(tmp_path: Path) -> None:
    doc = {**SMALL, "meters": {"devices": "hardware"}}
    with pytest.raises(ConfigError, match=r'\[meters\] devices must be "model", "memory" or "process"'):
        simulate(scenario_from_dict(doc, "bad.toml"), tmp_path / "bad")
