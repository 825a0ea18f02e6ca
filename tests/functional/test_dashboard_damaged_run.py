"""``gridnet dashboard OUT`` on a run directory damaged after the run: a real run (simulated
once for the module) is copied and its files edited, replaced by a pipe or a link, or grown
past any report gridnet writes. The command answers one line naming the file and what is
wrong with it, and exits 1, at once (never a traceback, never a read that does not end); the
app itself answers every page with a page saying so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gridnet.dashboard.run import MAX_REPORT_BYTES
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import scenario_from_dict
from tests.functional.test_dashboard_browser import RUN

CLI_S = 120
"""Ceiling on one ``gridnet dashboard`` refusal [s] (it takes a few: generous, for a busy machine)."""


@pytest.fixture(scope="module")
def run_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated run's output directory (copy it before damaging it)."""
    out = tmp_path_factory.mktemp("run") / "out"
    simulate(scenario_from_dict(RUN, "dashboard run"), out)
    return out


def damaged(run_out: Path, where: Path, edit: Callable[[dict[str, Any]], object] | None = None) -> Path:
    """A copy of the run in ``where``, its report.json rewritten after ``edit`` (given the
    report to change in place) when given."""
    shutil.copytree(run_out, where)
    if edit is not None:
        report = json.loads((where / "report.json").read_text())
        edit(report)
        (where / "report.json").write_text(json.dumps(report, indent=2))
    return where


def refusal(out: Path) -> str:
    """The one line ``gridnet dashboard OUT`` refuses ``out`` with (exit 1, nothing served)."""
    result = subprocess.run(
        [sys.executable, "-m", "gridnet", "dashboard", str(out), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=CLI_S,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr, result
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_report_json_too_large_or_no_regular_file_is_refused_before_it_is_read(
    run_out: Path, tmp_path: Path
) -> None:
    """A report.json larger than any run writes is refused on its size (not read: 600 MB took
    1.3 GB before); a pipe in its place is refused, not waited on for ever; JSON that Python
    refuses to parse (a 5,000-digit number, arrays nested 100,000 deep) is one line too."""
    huge = damaged(run_out, tmp_path / "huge")
    with (huge / "report.json").open("r+b") as f:
        f.truncate(MAX_REPORT_BYTES + 1)  # (sparse: no disk taken)
    line = refusal(huge)
    assert f"the run's report {huge / 'report.json'} is {MAX_REPORT_BYTES + 1:,} bytes: at most " in line
    assert f"at most {MAX_REPORT_BYTES:,} are read" in line
    pipe = damaged(run_out, tmp_path / "pipe")
    (pipe / "report.json").unlink()
    os.mkfifo(pipe / "report.json")
    line = refusal(pipe)
    assert f"{pipe / 'report.json'} is not a regular file (a pipe or a device?)" in line
    for name, text in (("digits", "9" * 5000), ("nested", "[" * 100_000)):
        broken = damaged(run_out, tmp_path / name)
        (broken / "report.json").write_text(text)
        assert f"{broken / 'report.json'} is not a run's report (not JSON: " in refusal(broken)


def test_the_largest_report_a_scenario_makes_fits_under_the_cap(run_out: Path) -> None:
    """``MAX_REPORT_BYTES`` holds the report of the largest scenario (1,000 homes, 31 days)
    with room to spare: its homes' and intervals' entries, measured on this run, scaled."""
    from gridnet.sim.scenario import MAX_HOMES, MAX_INTERVALS

    report = json.loads((run_out / "report.json").read_text())
    whole = len(json.dumps(report, indent=2))
    per_home = len(json.dumps(report["homes"], indent=4)) / len(report["homes"])
    per_interval = len(json.dumps(report["clearing_price"]["per_interval"], indent=4)) / len(
        report["clearing_price"]["per_interval"]
    )
    largest = whole + MAX_HOMES * per_home + MAX_INTERVALS * per_interval
    assert 3 * largest < MAX_REPORT_BYTES, (largest, per_home, per_interval)
