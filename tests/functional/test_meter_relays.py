"""A DSO command to curtail to 0 W with the homes' meters as ``gridnet meter`` processes
(``[meters] devices = "process"``, ``scenarios/meter-relays.toml`` from 10:00 to 12:00): the
DSO opens the PV relays downstream before each interval its commands cover, and a home whose
policy overrides them closes its relay again each time, so it exports what it does with the
model meters and none of its PV is curtailed. (Sixteen meter processes: tens of seconds.)"""

from __future__ import annotations

import copy
from pathlib import Path

from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import scenario_from_dict
from tests.sim.test_meter_devices import FEEDER, energy_of, overriding

LATE_MORNING = {**FEEDER, "simulation": {**FEEDER["simulation"], "start": "2026-06-21T10:00:00Z"}}


def test_a_home_that_overrides_keeps_its_pv_with_meter_processes(tmp_path: Path) -> None:
    reports = {}
    for devices in ("process", "model"):
        doc = copy.deepcopy(LATE_MORNING)
        doc["meters"]["devices"] = devices
        reports[devices] = simulate(scenario_from_dict(doc, f"{devices}.toml"), tmp_path / devices)
    process, dso = reports["process"], reports["process"]["dso"]
    meters = process["roles"]["meters"]
    assert process["verify"]["ok"] and process["transactions"]["refused"] == {}
    assert meters["processes"] == 16 and dso["commands"] >= 2  # (two commands: the DSO opens twice)
    names = overriding(LATE_MORNING)
    assert (
        dso["overrides_recorded"]
        == dso["commands"] * len(names)
        == reports["model"]["dso"]["overrides_recorded"]
    )
    assert meters["closed_by_owner"] >= len(names)
    overriders = energy_of(process, names)
    assert overriders == energy_of(reports["model"], names) and len(overriders) == len(names)
    assert all(e["curtailed_wh"] == 0 and e["export_wh"] > 0 for e in overriders.values())
    assert meters["relays_open_at_end"] <= dso["homes_following_commands"]
