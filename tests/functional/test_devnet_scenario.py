"""gridnet devnet --scenario: a neighbourhood scenario driven through the HTTP APIs of real
node processes on a fast scenario clock trades exactly what the in-memory simulation trades,
and every process is stopped at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from gridnet.errors import PlotFailed
from gridnet.ledger.lock import LOCK_NAME
from gridnet.ledger.verify import verify_chain
from gridnet.node.devnet import DevNode
from gridnet.sim import plots
from gridnet.sim.neighbourhood import simulate, simulate_on_devnet
from gridnet.sim.output import MARKER, STAGING
from gridnet.sim.scenario import load_scenario
from tests.helpers import wait_for

SCENARIO = """
[simulation]
name = "devnet-test"
intervals = 6
start = "2026-06-21T10:45:00Z"
seed = 2  # (the homes' PV sizes put the overvoltage where a following and an overriding home are)

[homes]
count = 6
pv_share = 1.0
battery_share = 0.0
pv_kw = [9.0, 10.0]
businesses = 0
ack_own_meter_share = 0.0

[weather]
sky = "clear"

[dso]
override_share = 0.5

[grid]
line_type = "NAYY 4x50 SE"
spacing_m = 200.0

[relay]
hill_homes = 0

[[line_owner]]
name = "Hill Road Lines"
fee = 0.01
"""
# Six homes 200 m apart on one thin cable, all exporting at noon: the DSO commands them.


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_scenario_on_node_processes_trades_what_the_simulation_trades(tmp_path: Path) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(SCENARIO)
    out = tmp_path / "devnet"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "gridnet", "devnet", "--nodes", "3"),
            *("--scenario", str(path), "--out", str(out), "--speed", "600"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["converged"] and report["verify"]["ok"]
    assert report["devnet"]["nodes"] == 3 and set(report["nodes"]) == {"n0", "n1", "n2"}
    assert sum(n["blocks_mined"] for n in report["nodes"].values()) == report["chain"]["height"]
    assert report["transactions"]["refused"] == {} and report["transactions"]["orders_refused"] == {}
    assert report["energy"]["contracts"] > 0 and report["dso"]["commands"] >= 1
    assert report["dso"]["overrides_recorded"] >= 1 and report["dso"]["homes_following_commands"] >= 1
    # The same people with the same policies on the in-memory network (relays off, as on a
    # devnet): the same trades, the same contracts, the same subsidies.
    scenario = load_scenario(path)
    memory = simulate(replace(scenario, relay=replace(scenario.relay, enabled=False)), tmp_path / "memory")
    assert report["energy"] == memory["energy"]
    assert report["clearing_price"] == memory["clearing_price"]
    assert report["subsidies"] == memory["subsidies"]
    assert report["contracts"] == memory["contracts"] and report["dso"] == memory["dso"]
    by_type = report["chain"]["transactions_by_type"]
    for kind in (
        "OpenContract",
        "SettleContract",
        "CloseContract",
        "SubmitReadings",
        "PaySubsidy",
        "RecordOverride",
    ):
        assert by_type[kind] == memory["chain"]["transactions_by_type"][kind], kind
    # Every node holds the audited chain, and no process outlived the command.
    assert verify_chain(out / "n1").ok
    for node in ("n0", "n1", "n2"):
        assert not alive(json.loads((out / node / "node.json").read_text())["pid"])
    assert "converged" in result.stdout and "relays are simulated only" in result.stderr


def test_a_devnet_run_that_fails_after_its_nodes_stopped_leaves_the_earlier_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``gridnet simulate``: the devnet writes in OUT/.gridnet-new, moved in place of the
    earlier results only once the run is complete; a run that fails as it draws its plots
    (matplotlib's mathtext on a line owner's name, as the plots drew before) leaves them, and
    what it wrote (its nodes' logs) in OUT/.gridnet-new."""
    out = tmp_path / "devnet"
    (out / "n0").mkdir(parents=True)
    earlier = {MARKER: "written by gridnet devnet; safe to delete\n", "report.json": "{}", "n0/node.log": "x"}
    for name, text in earlier.items():
        (out / name).write_text(text)
    path = tmp_path / "scenario.toml"
    path.write_text(
        SCENARIO.replace("intervals = 6", "intervals = 2").replace("Hill Road Lines", "$\\\\frac$")
    )
    monkeypatch.setitem(plots.matplotlib.rcParams, "text.parse_math", True)
    with pytest.raises(
        PlotFailed, match=r"^the run's plot plots/feeders.png could not be drawn \(ValueError: "
    ):
        simulate_on_devnet(load_scenario(path), out, 2, 600)
    assert {name: (out / name).read_text() for name in earlier} == earlier
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, LOCK_NAME, STAGING, "report.json", "n0"])
    assert (out / STAGING / "n0" / "node.log").exists()  # (what the run wrote, until the next run)


def _height(node: DevNode) -> int:
    try:
        return node.stored_height()
    except Exception:  # created but not yet written
        return -1


def test_ctrl_c_during_a_devnet_run_keeps_the_earlier_results_and_says_where_its_chain_is(
    tmp_path: Path,
) -> None:
    """Ctrl-C stops every node process; the earlier results in ``--out`` are kept, and the line
    names the partial chain where the run wrote it (OUT/.gridnet-new/n0)."""
    out = tmp_path / "devnet"
    out.mkdir()
    earlier = {MARKER: "written by gridnet devnet; safe to delete\n", "report.json": "{}"}
    for name, text in earlier.items():
        (out / name).write_text(text)
    path = tmp_path / "scenario.toml"
    path.write_text(SCENARIO)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gridnet", "devnet", "--nodes", "2"),
            *("--scenario", str(path), "--out", str(out), "--speed", "600"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal would
    )

    def mining() -> list[Path]:
        """The directory the nodes write in, once n0 has stored two blocks."""
        return [
            db.parent.parent
            for db in out.rglob("n0/chain.sqlite")
            if _height(DevNode("n0", db.parent, 0, 0)) >= 2
        ]

    try:
        assert wait_for(mining, 240)
        pids = [json.loads((mining()[0] / n / "node.json").read_text())["pid"] for n in ("n0", "n1")]
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert {name: (out / name).read_text() for name in earlier} == earlier
    line = stderr.strip().splitlines()[-1]
    partial = out / STAGING / "n0"
    assert (
        line.startswith("interrupted at interval ") and f"; the partial chain in {partial} verifies (" in line
    )
    assert line.endswith(f"; {out} keeps the earlier run's results")
    assert not any(alive(pid) for pid in pids)
