"""``gridnet bench sim``: a run in its own process, its cryptographic work counted and priced."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from gridnet.bench import sim
from gridnet.cli import app


def test_a_short_run_counts_its_cryptography_and_prices_its_floor() -> None:
    figures = sim.run([3], cores=[1], intervals=4)
    (run,) = figures["runs"]
    assert run["homes"] == 3 and run["cores"] == 1 and run["converged"]
    ops = run["ops"]
    assert ops["signs"] > 0 and ops["verifies"] > 0 and ops["pow_hashes"] > 0
    # Four nodes each check what the others signed: more checks than signatures.
    assert ops["verifies"] + ops["verifies_cached"] > ops["signs"]
    assert 0 < run["floor_s"] < run["wall_s"]
    assert 0 < run["floor_ratio"] < 1
    assert abs(sum(run["floor_by_kind_s"].values()) - run["floor_s"]) < 0.02
    assert run["peak_rss_mb_per_home"] > 0
    assert figures["speedup"] == {}  # (one core only: nothing to compare)


def test_speedup_is_one_core_over_the_most_cores() -> None:
    runs = [
        {"homes": 20, "cores": 1, "wall_s": 10.0},
        {"homes": 20, "cores": 2, "wall_s": 8.0},
        {"homes": 100, "cores": 2, "wall_s": 50.0},
    ]
    assert sim.speedups(runs) == {"20_homes_2_cores": 1.25}


def test_a_bad_list_of_sizes_is_one_line() -> None:
    """An item that is not a whole number is refused, an empty one too ("20,,5" ran 20 and 5
    homes, taking a typo for a list of two)."""
    for homes in ("20,x", "20,,5", "20,", ","):
        result = CliRunner().invoke(app, ["bench", "sim", "--homes", homes], env={"COLUMNS": "300"})
        assert result.exit_code == 2, homes
        assert f"{homes!r} is not a comma-separated list of whole numbers" in result.output
        assert "Traceback" not in result.output


def test_a_size_or_a_core_count_the_run_cannot_have_is_one_line_before_any_run() -> None:
    from gridnet.system import usable_cores

    cases = [
        (["--homes", "0"], "bench sim (0 homes, 96 intervals): [homes] count must be 2 to 1000"),
        (["--homes", "20,5000"], "[homes] count must be 2 to 1000"),
        (["--homes", "2", "--intervals", "9999"], "[simulation] intervals must be 1 to 2976"),
        (["--homes", "2", "--cores", f"1,{usable_cores() + 1}"], f"may use {usable_cores()} core(s)"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, ["bench", "sim", *args], env={"COLUMNS": "300"})
        assert result.exit_code == 2, args
        assert message in result.output and "Traceback" not in result.output
        assert "simulating" not in result.output  # (refused before any run started)


def test_every_size_is_checked_before_any_area_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--homes 1000000000`` took gigabytes and never answered: the area's document (a table
    per 50 homes) was built before the scenario's checks refused its size. Every size's range
    is now checked first, so no area is built when one of them is out of range."""
    built: list[int] = []

    def scenario_doc(homes: int, intervals: int = sim.DAY_INTERVALS) -> dict[str, Any]:
        built.append(homes)
        if homes > 1_000:
            raise AssertionError(f"the {homes}-home area was built before its size was checked")
        return real(homes, intervals)

    real = sim.scenario_doc
    monkeypatch.setattr(sim, "scenario_doc", scenario_doc)
    for sizes in ("1000000000", "20,1000000000"):
        result = CliRunner().invoke(app, ["bench", "sim", "--homes", sizes], env={"COLUMNS": "300"})
        assert result.exit_code == 2, result.output
        assert "bench sim (1000000000 homes, 96 intervals): [homes] count must be 2 to 1000" in result.output
        assert "Traceback" not in result.output
    assert built == []
