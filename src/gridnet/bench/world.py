"""The realistic day's cost: a whole scenario run and the share its power flows take.

The target (issue 11): the default day in under 60 s on 2 cores with the power flow below a
third of the run. Both figures come from the same run, so a busy machine moves them together.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import load_scenario


def run(scenario: Path | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    s = load_scenario(scenario)
    if progress is not None:
        progress(f"simulating {s.simulation.name}: {s.homes.count} homes, {s.simulation.intervals} intervals")
    with tempfile.TemporaryDirectory(prefix="gridnet-bench-world-") as tmp:
        started = time.perf_counter()
        report = simulate(s, Path(tmp) / "run")
        wall = time.perf_counter() - started
    timing, contracts = report["timing"], report["contracts"]
    txs = sum(v for k, v in report["chain"]["transactions_by_type"].items() if k != "Coinbase")
    return {
        "scenario": s.simulation.name,
        "homes": s.homes.count,
        "intervals": s.simulation.intervals,
        "run_s": round(wall, 2),
        "simulation_s": timing["simulation_s"],
        "power_flow_s": timing["power_flow_s"],
        "power_flow_share": round(timing["power_flow_s"] / timing["simulation_s"], 3),
        "power_flow_ms_per_interval": round(1000 * timing["power_flow_s"] / s.simulation.intervals, 1),
        "audit_s": timing["audit_s"],
        "transactions": txs,
        "contracts": contracts["opened"],
        "delivered_short": contracts["delivered_short"],
        "disputes_resolved": contracts["disputes_resolved"],
        "dso_commands": report["dso"]["commands"],
        "converged": report["converged"] and report["verify"]["ok"],
    }
