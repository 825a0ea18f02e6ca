"""``gridnet sweep``: a grid of tiny scenarios run as Dask tasks on a real LocalCluster of two
worker processes (no mocks); resumed without running anything again, extended with only the
new points run; a failed run recorded while the others go on; bad sweep files refused up front
with one line naming the file and the key."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.errors import ConfigError, DataDirLocked, shown
from gridnet.sim.report import resolved_scenario
from gridnet.sim.scenario import load_scenario, scenario_from_dict
from gridnet.sim.sweep import FIGURES as FIGURES_BY_SECTION
from gridnet.sim.sweep import (
    KNOWN_FIGURES,
    OPEN_FIGURES,
    RUN_FILE,
    TABLE,
    RunResult,
    SchedulerUnavailable,
    Sweep,
    SweepFileError,
    SweepResult,
    _check_values,
    completed,
    figure_value,
    load_sweep,
    open_client,
    prepare_sweep_dir,
    run_sweep,
    scenario_toml,
    scheduler_address,
    write_plots,
)
from gridnet.system import usable_cores
from tests.helpers import wait_for
from tests.world.test_solar import write_epw

pytestmark = pytest.mark.timeout(240)

# Two intervals around midday, four homes, one node, no relays: a run takes a second or two
# once a worker has imported the simulator.
TINY = """\
[simulation]
start = "2026-06-21T11:00:00Z"
intervals = 2
[homes]
count = 4
[relay]
enabled = false
[network]
nodes = 1
"""
FIGURES = ["energy.p2p_wh", "chain.height", "clearing_price.mean_gnc_per_kwh", "roles.meters.devices"]
PNG = b"\x89PNG\r\n\x1a\n"
FIXED_COLUMNS = ["run_id", "homes.pv_share", "seed", "status", "resumed", "wall_s", "error"]


def write_sweep(folder: Path, vary: dict[str, list[Any]], **more: Any) -> Path:
    """``folder/tiny.toml`` (the base) and ``folder/sweep.toml`` naming it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.toml").write_text(TINY)
    doc: dict[str, Any] = {"scenario": "tiny.toml", "figures": FIGURES, **more}
    lines = [f"{k} = {json.dumps(v)}" for k, v in doc.items()]
    lines += ["[vary]", *(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in vary.items())]
    path = folder / "sweep.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def no_cluster() -> AbstractContextManager[Any]:
    raise AssertionError("nothing was left to run, yet the sweep asked for a cluster")


def sweep_command(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``gridnet sweep ARGS`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "gridnet", "sweep", *map(str, args)],
        cwd=cwd,
        env=dict(os.environ, COLUMNS="300", NO_COLOR="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A LocalCluster of two worker processes (one thread each) on 127.0.0.1, closed at the end."""
    with open_client(workers=2) as c:
        assert len(c.scheduler_info()["workers"]) == 2
        yield c


@pytest.fixture(scope="module")
def first(client: Any, tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    """Two PV shares x one seed, run on the two workers."""
    folder = tmp_path_factory.mktemp("sweep")
    sweep = load_sweep(write_sweep(folder, {"homes.pv_share": [0.25, 0.5]}, seeds=[3]), folder / "out")
    calls: list[tuple[int, int]] = []
    result = run_sweep(sweep, lambda: nullcontext(client), lambda done, total: calls.append((done, total)))
    assert calls == [(0, 2), (1, 2), (2, 2)]
    return result


def copy_out(result: SweepResult, folder: Path) -> Path:
    """The first sweep's file and output in ``folder`` (times kept), so a test may resume it."""
    shutil.copytree(result.sweep.path.parent, folder, copy_function=shutil.copy2, dirs_exist_ok=True)
    return folder / "sweep.toml"


def report_times(sweep: Sweep) -> dict[str, int]:
    return {
        run.id: (sweep.run_dir(run) / "report.json").stat().st_mtime_ns
        for run in sweep.runs
        if (sweep.run_dir(run) / "report.json").exists()
    }


def test_every_run_is_a_task_with_its_own_directory_and_a_row_in_the_table(first: SweepResult) -> None:
    sweep = first.sweep
    assert [r.status for r in first.results] == ["ok", "ok"] and not first.interrupted
    table = pq.read_table(first.table)
    assert table.column_names == FIXED_COLUMNS + FIGURES
    rows = table.to_pylist()
    assert [r["homes.pv_share"] for r in rows] == [0.25, 0.5]
    assert [r["seed"] for r in rows] == [3, 3]
    assert [r["status"] for r in rows] == ["ok", "ok"] and not any(r["resumed"] for r in rows)
    assert all(r["error"] is None and r["wall_s"] > 0 for r in rows)
    assert all(r["roles.meters.devices"] == "model" and r["chain.height"] > 0 for r in rows)
    assert json.loads(table.schema.metadata[b"gridnet_sweep"])["vary"] == {"homes.pv_share": [0.25, 0.5]}
    assert len({r["run_id"] for r in rows}) == 2
    for run, row in zip(sweep.runs, rows, strict=True):
        run_dir = sweep.run_dir(run)
        assert row["run_id"] == run.id and run_dir.parent == sweep.out / "runs"
        report = json.loads((run_dir / "report.json").read_text())
        assert row["energy.p2p_wh"] == report["energy"]["p2p_wh"]
        assert (
            report["scenario"]["seed"] == 3
            and report["scenario"]["resolved"]["homes"]["pv_share"] == (run.values["homes.pv_share"])
        )
        assert (run_dir / "series" / "homes.parquet").exists() and (run_dir / "chain").is_dir()
        assert json.loads((run_dir / RUN_FILE).read_text())["status"] == "ok"
        # The scenario it ran, as TOML that `gridnet simulate` reads back to the same scenario.
        again = scenario_from_dict(tomllib.loads((run_dir / "scenario.toml").read_text()), "again")
        assert json.loads(json.dumps(resolved_scenario(again))) == report["scenario"]["resolved"]
    names = sorted(p.name for p in (sweep.out / "plots").iterdir())
    assert names == ["energy.p2p_wh--by--homes.pv_share.png"]
    assert first.plots == [sweep.out / "plots" / names[0]]
    assert first.plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_catalogued_figure_is_in_a_real_report(first: SweepResult) -> None:
    """``sweep.FIGURES`` names numbers every report holds: it must follow report.py."""
    report = json.loads((first.sweep.run_dir(first.sweep.runs[1]) / "report.json").read_text())
    missing = sorted(f for f in KNOWN_FIGURES if figure_value(report, f) is None)
    assert missing == []


def test_every_number_of_a_catalogued_section_is_a_figure(first: SweepResult) -> None:
    """The other way round: a number report.py adds to a section ``sweep.FIGURES`` lists
    must be catalogued too (``contracts.open_at_end``, ``energy.unpaid_wh`` and
    ``energy.contracts_refused`` were refused as "no figure of report.json")."""
    report = json.loads((first.sweep.run_dir(first.sweep.runs[1]) / "report.json").read_text())

    def numbers(node: Any, path: str) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from numbers(value, f"{path}.{key}")
        elif isinstance(node, bool | int | float):
            yield path

    found = [p for section in FIGURES_BY_SECTION for p in numbers(report[section], section)]
    assert len(found) > 80
    assert sorted(p for p in found if p not in KNOWN_FIGURES and not p.startswith(OPEN_FIGURES)) == []


def test_a_sweep_run_again_runs_nothing(first: SweepResult, tmp_path: Path) -> None:
    sweep = load_sweep(copy_out(first, tmp_path), tmp_path / "out")
    before = report_times(sweep)
    result = run_sweep(sweep, no_cluster)
    assert [r.resumed for r in result.results] == [True, True]
    assert report_times(sweep) == before
    rows = pq.read_table(result.table).to_pylist()
    assert [r["resumed"] for r in rows] == [True, True] and [r["status"] for r in rows] == ["ok", "ok"]
    assert [r["energy.p2p_wh"] for r in rows] == [r.figures["energy.p2p_wh"] for r in first.results]
    summary = result.summary()
    assert summary["ran"] == 0 and summary["resumed"] == 2
    assert summary["ok"] == 2 and summary["ran_now"] == {"ok": 0, "unverified": 0, "failed": 0}


def test_a_damaged_run_record_runs_again_rather_than_stopping_the_sweep(
    client: Any, first: SweepResult, tmp_path: Path
) -> None:
    """A run whose ``run.json`` no sweep wrote whole (edited by hand, damaged) runs again."""
    sweep = load_sweep(copy_out(first, tmp_path), tmp_path / "out")
    damaged = [
        {"id": sweep.runs[0].id, "wall_s": 1.0},
        {"id": sweep.runs[1].id, "status": "ok", "wall_s": "1"},
    ]
    for run, record in zip(sweep.runs, damaged, strict=True):
        (sweep.run_dir(run) / RUN_FILE).write_text(json.dumps(record))
    result = run_sweep(sweep, lambda: nullcontext(client))
    assert [(r.resumed, r.status) for r in result.results] == [(False, "ok"), (False, "ok")]


def test_a_run_recorded_complete_whose_series_is_truncated_runs_again(
    client: Any, first: SweepResult, tmp_path: Path
) -> None:
    """A run whose ``run.json`` says ok but whose ``series/homes.parquet`` was cut short (a
    full disk, a killed worker) counted as complete, and ``gridnet dashboard`` failed on it:
    it runs again, said in one line; the other run is resumed."""
    sweep = load_sweep(copy_out(first, tmp_path), tmp_path / "out")
    homes = sweep.run_dir(sweep.runs[0]) / "series" / "homes.parquet"
    homes.write_bytes(homes.read_bytes()[: homes.stat().st_size // 2])
    said: list[str] = []
    result = run_sweep(sweep, lambda: nullcontext(client), damaged=said.append)
    assert [(r.resumed, r.status) for r in result.results] == [(False, "ok"), (True, "ok")]
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith(
        f"{sweep.run_dir(sweep.runs[0])}: recorded complete, but its series/homes.parquet "
    )
    assert said[0].endswith(": it runs again")
    assert pq.read_table(homes).num_rows > 0


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("series/market.parquet", "its series/market.parquet cannot be read (it is missing)"),
        ("plots/energy.png", "its plots/energy.png is missing or no PNG image"),
        ("chain/chain.sqlite", "its chain/chain.sqlite is missing or no SQLite database"),
        ("report.json", "its report.json cannot be read ("),
    ],
)
def test_a_complete_run_holds_every_file_its_report_names(
    first: SweepResult, tmp_path: Path, damage: str, problem: str
) -> None:
    """What a resumed sweep checks of a run recorded complete, each file damaged in turn
    (emptied, or removed): the run is not counted complete, and the line says which file."""
    sweep = load_sweep(copy_out(first, tmp_path), tmp_path / "out")
    run = sweep.runs[1]
    said: list[str] = []
    assert completed(sweep, run, said.append) is not None and said == []
    target = sweep.run_dir(run) / damage
    if damage.endswith(".parquet"):
        target.unlink()
    else:
        target.write_bytes(b"")
    assert completed(sweep, run, said.append) is None
    assert len(said) == 1 and said[0].endswith(": it runs again")
    assert said[0].startswith(f"{sweep.run_dir(run)}: recorded complete, but {problem}")


@pytest.mark.parametrize("wall", ["1" * 400, "-1", "1e400", "true", '"5"'])
def test_a_run_record_whose_time_is_no_time_runs_again(first: SweepResult, tmp_path: Path, wall: str) -> None:
    """A run.json whose wall_s is an integer of 400 digits raised an OverflowError traceback
    (``math.isfinite`` of it); that, and any wall_s that is no time, is no complete record."""
    sweep = load_sweep(copy_out(first, tmp_path), tmp_path / "out")
    run = sweep.runs[1]
    path = sweep.run_dir(run) / RUN_FILE
    record = json.loads(path.read_text())
    assert completed(sweep, run, lambda _line: None) is not None
    path.write_text(json.dumps(record | {"wall_s": "WALL"}).replace('"WALL"', wall))
    assert completed(sweep, run, lambda _line: None) is None


def test_a_scheduler_address_is_checked_even_with_nothing_left_to_run(
    first: SweepResult, tmp_path: Path
) -> None:
    """Every run completed: the sweep needs no scheduler, yet --scheduler notaurl is refused
    at once (it exited 0 without looking at the address)."""
    path = copy_out(first, tmp_path)
    done = sweep_command(path, "--out", tmp_path / "out", "--scheduler", "notaurl", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: Invalid value for --scheduler: 'notaurl' is no scheduler address: give tcp://HOST:PORT, "
        "e.g. tcp://127.0.0.1:8786 (see 'gridnet sweep --help')"
    ]


@pytest.mark.parametrize(
    ("given", "address"),
    [
        ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
        ("127.0.0.1:8786", "tcp://127.0.0.1:8786"),
        ("tcp://[::1]:8786", "tcp://[::1]:8786"),
        ("tcp://scheduler.lab:8786", "tcp://scheduler.lab:8786"),
        ("notaurl", None),
        ("tcp://127.0.0.1", None),
        ("tcp://127.0.0.1:0", None),
        ("tcp://127.0.0.1:65536", None),
        ("tcp://127.0.0.1:port", None),
        ("http://127.0.0.1:8786", None),
        ("tcp://127.0.0.1:8786/path", None),
        ("tcp://bad host:8786", None),
        ("tcp://[::1:8786", None),
        ("", None),
    ],
)
def test_a_scheduler_address_has_one_form(given: str, address: str | None) -> None:
    if address is not None:
        assert scheduler_address(given) == address
    else:
        with pytest.raises(ValueError, match=r"is no scheduler address: give tcp://HOST:PORT"):
            scheduler_address(given)


def test_an_extended_grid_runs_only_its_new_points(client: Any, first: SweepResult, tmp_path: Path) -> None:
    copy_out(first, tmp_path)
    path = write_sweep(tmp_path, {"homes.pv_share": [0.25, 0.5, 0.75]}, seeds=[3])
    sweep = load_sweep(path, tmp_path / "out")
    before = report_times(sweep)
    assert len(before) == 2
    calls: list[tuple[int, int]] = []
    result = run_sweep(sweep, lambda: nullcontext(client), lambda done, total: calls.append((done, total)))
    assert calls == [(0, 1), (1, 1)]
    assert [(r.run.values["homes.pv_share"], r.resumed, r.status) for r in result.results] == [
        (0.25, True, "ok"),
        (0.5, True, "ok"),
        (0.75, False, "ok"),
    ]
    after = report_times(sweep)
    assert {k: after[k] for k in before} == before and len(after) == 3
    assert pq.read_table(result.table).num_rows == 3


def test_a_failed_run_is_recorded_and_the_others_go_on(client: Any, tmp_path: Path) -> None:
    """``[meters] devices`` is checked when the world is built, on the worker: the run fails,
    its error is one line in the table, the other run completes, and a resumed sweep tries
    the failed run again (only that one)."""
    path = write_sweep(tmp_path, {"meters.devices": ["bogus", "model"]})
    sweep = load_sweep(path, tmp_path / "out")
    result = run_sweep(sweep, lambda: nullcontext(client))
    failed, ok = result.results
    assert (failed.status, ok.status) == ("failed", "ok")
    assert failed.error is not None and "\n" not in failed.error
    assert failed.error.startswith("ConfigError: ") and '[meters] devices must be "model"' in failed.error
    assert "Traceback" in (sweep.run_dir(failed.run) / "error.txt").read_text()
    rows = pq.read_table(result.table).to_pylist()
    assert [r["status"] for r in rows] == ["failed", "ok"] and rows[0]["error"] == failed.error
    assert rows[0]["energy.p2p_wh"] is None and rows[1]["energy.p2p_wh"] is not None
    assert result.summary()["failures"] == [{"id": failed.run.id, "error": failed.error}]

    again = run_sweep(sweep, lambda: nullcontext(client))
    assert [(r.status, r.resumed) for r in again.results] == [("failed", False), ("ok", True)]


@pytest.mark.parametrize(
    ("vary", "more", "expected"),
    [
        ({"homes.cout": [4, 6]}, {}, "[vary] homes.cout = 4: "),
        ({"homes.count": [4, 6]}, {"figures": ["energy.p2p_kwh"]}, "did you mean 'energy.p2p_wh'?"),
        ({"homes.count": [4, 1]}, {}, "[vary] homes.count = 1: "),
        ({"homes.count": [4, "six"]}, {}, '[vary] homes.count = "six": '),
        ({"homes.count": []}, {}, "[vary] homes.count has no values"),
        ({}, {}, "[vary] is empty"),
        ({"homes.count": [4, 4]}, {}, "[vary] homes.count lists 4 more than once"),
        ({"homes.count": [4]}, {"seeds": [1, 1]}, "seeds must be a list of distinct integers"),
        ({"homes.count": [4]}, {"seeds": [2**64]}, "seeds must be a list of distinct integers from 0"),
        ({"homes.count": [4]}, {"seeds": 99_999_999_999}, "at most 10,000 of them"),
        ({"homes.count": list(range(2, 103))}, {"seeds": 100}, "the grid has 10,100 runs"),
        ({"homes.count": [4]}, {"plot": ["nothing.here"]}, "plot: 'nothing.here' is no figure"),
        ({"homes.count": [4]}, {"scenario": "missing.toml"}, "scenario 'missing.toml': no file"),
        ({"homes.count": [4]}, {"sedes": 2}, "unknown key(s) ['sedes']"),
        ({"simulation.seed": [1, 2]}, {}, "simulation.seed: give the seeds with seeds = [1, 2]"),
        # Each value alone is fine; together the homes without PV cannot hold the business.
        (
            {"homes.count": [4, 2], "security.flagged_meters": [0, 2]},
            {},
            "[vary] the run with homes.count = 2, security.flagged_meters = 2, seed 1: ",
        ),
    ],
)
def test_a_bad_sweep_file_is_refused_before_anything_runs(
    tmp_path: Path, vary: dict[str, list[Any]], more: dict[str, Any], expected: str
) -> None:
    path = write_sweep(tmp_path, vary, **more)
    with pytest.raises(SweepFileError) as caught:
        load_sweep(path, tmp_path / "out")
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message
    assert not (tmp_path / "out").exists()


NO_PATHS = [
    ("x\0y", "it holds a NUL character"),
    ("n" * 256, "a name in it is 256 bytes long (at most 255)"),
    ("/".join(["d" * 200] * 21), "bytes long (at most 4,095)"),
]
"""Paths no file can have: a NUL character, a name or a whole path longer than a file system takes."""


@pytest.mark.parametrize(("value", "problem"), NO_PATHS, ids=["nul", "long name", "long path"])
@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("out", 'out = {v}\n[vary]\n"homes.count" = [4]\n'),
        ("scenario", 'scenario = {v}\n[vary]\n"homes.count" = [4]\n'),
        ("[set] policies.home-0", '[set]\n"policies.home-0" = {v}\n[vary]\n"homes.count" = [4]\n'),
        ("[vary] weather.weather_file", '[vary]\n"weather.weather_file" = [{v}]\n'),
        ("[vary] policies.home-1", "[vary]\npolicies = [{{home-1 = {v}}}]\n"),
    ],
)
def test_a_path_no_file_can_have_is_one_line_naming_its_key(
    tmp_path: Path, key: str, text: str, value: str, problem: str
) -> None:
    """Every path-valued key of a sweep file is checked as a path as the file loads: an ``out``
    with a NUL character stopped the sweep with a traceback (ValueError: embedded null byte),
    a name too long failed late ("File name too long")."""
    path = tmp_path / "sweep.toml"
    path.write_text(text.format(v=json.dumps(value)))
    with pytest.raises(SweepFileError) as caught:
        load_sweep(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key} {shown(value)} is not a file's path: ") and problem in message
    assert not (tmp_path / "out").exists()


def test_the_command_prints_one_line_for_an_out_with_a_nul_character(tmp_path: Path) -> None:
    (tmp_path / "sweep.toml").write_text('out = "x\\u0000y"\n[vary]\n"homes.count" = [4]\n')
    done = sweep_command("sweep.toml", "--workers", "1", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "error: sweep.toml: out 'x\\x00y' is not a file's path: it holds a NUL character"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml"]


def test_set_is_checked_with_each_runs_values(tmp_path: Path) -> None:
    """``[set] "weather.sky" = "file"`` with the weather files in ``[vary]`` was refused (the
    base and ``[set]`` were built alone, as if a run): each run is checked whole, the base and
    ``[set]`` alone only key by key (known, of its type, in range), and a run refused for what
    ``[set]`` says alone, or one value alone, names it."""
    folder = tmp_path / "sweeps"
    folder.mkdir()
    (tmp_path / "tiny.toml").write_text(TINY)
    write_epw(folder / "a.epw", 800.0)
    write_epw(folder / "b.epw", 400.0)
    path = folder / "s1.toml"
    head = 'scenario = "../tiny.toml"\n[set]\n'
    path.write_text(head + '"weather.sky" = "file"\n[vary]\n"weather.weather_file" = ["a.epw", "b.epw"]\n')
    sweep = load_sweep(path, tmp_path / "out")
    assert [r.document["weather"] for r in sweep.runs] == [
        {"sky": "file", "weather_file": str(folder / name)} for name in ("a.epw", "b.epw")
    ]
    base = tmp_path / "tiny.toml"
    for fixed, vary, expected in (
        ('"homes.cont" = 4', '"homes.pv_share" = [0.5]', f"[set]: {base}: [homes]: unknown key(s) ['cont']"),
        (
            '"homes.count" = "four"',
            '"homes.pv_share" = [0.5]',
            f"[set]: {base}: [homes] count must be an integer",
        ),
        ('"homes.count" = 1', '"homes.pv_share" = [0.5]', f"[set]: {base}: [homes] count must be 2 to 1000"),
        (
            '"weather.sky" = "file"',
            '"homes.pv_share" = [0.5]',
            f'[set]: {base}: [weather] sky = "file" needs weather_file',
        ),
    ):
        path.write_text(f"{head}{fixed}\n[vary]\n{vary}\n")
        with pytest.raises(SweepFileError) as caught:
            load_sweep(path, tmp_path / "out")
        message = str(caught.value)
        assert message.startswith(f"{path}: {expected}") and "\n" not in message, message
    # A weather file a run varies, missing, is named alone (its path echoed cut).
    path.write_text(f'{head}"weather.sky" = "file"\n[vary]\n"weather.weather_file" = ["a.epw", "none.epw"]\n')
    with pytest.raises(SweepFileError) as caught:
        load_sweep(path, tmp_path / "out")
    message = str(caught.value)
    assert message.startswith(f'{path}: [vary] weather.weather_file = "/') and "\n" not in message
    assert message.endswith(
        f"{base}: [weather] weather_file: cannot read the weather file {folder / 'none.epw'}: No such file "
        "or directory; give a TMY3 (.csv) or EPW (.epw) file"
    )


@pytest.mark.parametrize(
    ("vary", "more"),
    [
        ({"simulation.name": ["x" * 10_000]}, {}),  # (refused: a name is at most 64 characters)
        ({"homes.count": ["9" * 10_000]}, {}),
        ({"homes.count": ["y" * 10_000, "y" * 10_000]}, {}),
        ({"homes.count": [4]}, {"z" * 10_000: 1}),
        ({"homes.count": [4]}, {"scenario": "w" * 10_000 + ".toml"}),
        ({"homes.count": [4]}, {"figures": ["energy." + "v" * 10_000]}),
    ],
)
def test_a_long_value_in_a_sweep_file_is_echoed_cut(
    tmp_path: Path, vary: dict[str, list[Any]], more: dict[str, Any]
) -> None:
    path = write_sweep(tmp_path, vary, **more)
    with pytest.raises(SweepFileError) as caught:
        load_sweep(path, tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message and len(message) < len(str(path)) + 600, message[:300]


def test_a_grid_too_large_is_refused_before_any_value_is_looked_at(tmp_path: Path) -> None:
    """The runs are counted first: 10,001 values, a TOML date and a repeated value among them,
    say the count (the dates and duplicates were looked for first, the duplicates in quadratic
    time: 100,000 values took two minutes to be refused)."""
    (tmp_path / "tiny.toml").write_text(TINY)
    values = ", ".join(["4", "4", "2026-06-21", *map(str, range(5, 10_003))])
    path = tmp_path / "sweep.toml"
    path.write_text(f'scenario = "tiny.toml"\n[vary]\n"homes.count" = [{values}]\n')
    with pytest.raises(SweepFileError) as caught:
        load_sweep(path, tmp_path / "out")
    assert str(caught.value) == (
        f"{path}: the grid has 10,001 runs (the [vary] values times the seeds); at most 10,000: split it "
        "into several sweeps"
    )


def test_repeated_values_are_found_in_linear_time() -> None:
    """A repeated value is found with a set, not by counting each value in the list: 200,000
    values (quadratic: hours) within a ceiling far above what it takes (a tenth of a second)."""
    values: list[Any] = [{"v": i} for i in range(200_000)] + [{"v": 199_999}]
    started = time.perf_counter()
    repeated = r'^sweep.toml: \[vary\] k lists \{"v": 199999\} more than once$'
    with pytest.raises(SweepFileError, match=repeated):
        _check_values("k", values, "sweep.toml")
    assert time.perf_counter() - started < 60


def test_a_grid_of_10000_runs_loads_in_seconds_and_says_how_far_it_is(tmp_path: Path) -> None:
    """Every run's scenario is built and checked, once, each cheaply (the type hints of every
    table were read for every scenario, every scenario deep-copied to make its id, every value
    built alone and again in its run): 10,000 runs loaded in 55 to 95 s, in silence; now in
    seconds (the ceiling is far above), telling ``progress`` as they are checked. The CPU time
    this process spends is what is bounded: the wall clock also counts what the machine's other
    processes take (4 s here alone; on two cores busy with node processes, several times more)."""
    path = write_sweep(tmp_path, {"network.latency_ms": list(range(10_000))})
    calls: list[tuple[int, int]] = []
    started = time.process_time()
    sweep = load_sweep(path, tmp_path / "out", lambda done, total: calls.append((done, total)))
    assert time.process_time() - started < 40
    assert len(sweep.runs) == len({r.id for r in sweep.runs}) == 10_000
    assert calls == [(done, 10_000) for done in range(10_001)]


def test_a_resolved_scenario_is_what_asdict_gives(tmp_path: Path) -> None:
    """``resolved_scenario`` (a run's id is a digest of it) walks the dataclasses itself
    (asdict's deep copies were most of a large sweep's loading): the same values, so that the
    ids of runs a sweep completed stay theirs."""
    library = sorted((Path(__file__).parents[2] / "scenarios").glob("*.toml"))
    assert len(library) > 10
    for path in library:
        scenario = load_scenario(path)
        expected = dataclasses.asdict(scenario)
        expected.pop("source")
        expected["line_owner"] = expected.pop("line_owners")
        expected.update(expected.pop("tables"))
        assert resolved_scenario(scenario) == expected, path


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("figures = 5", "figures"),
        ("figures = true", "figures"),
        ("figures = {a = 1}", "figures"),
        ('figures = "energy.p2p_wh"', "figures"),
        ('figures = ["energy.p2p_wh", 3]', "figures"),
        ("plot = 5", "plot"),
        ("plot = {a = 1}", "plot"),
        ("plot = []", "plot"),
    ],
)
def test_figures_and_plot_of_another_type_are_one_line(tmp_path: Path, line: str, key: str) -> None:
    """figures = 5 (or true) raised "argument of type 'int' is not iterable", figures = {a = 1}
    KeyError: 0: the value was used before its type was checked."""
    (tmp_path / "tiny.toml").write_text(TINY)
    path = tmp_path / "sweep.toml"
    path.write_text(f'scenario = "tiny.toml"\n{line}\n[vary]\n"homes.count" = [4, 6]\n')
    done = sweep_command(path, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f'error: {path}: {key} must be a list of report.json paths, e.g. ["energy.p2p_wh"]'
    ]
    assert not (tmp_path / "out").exists()


DATE = "put it in quotes"


@pytest.mark.parametrize(
    ("base", "sweep", "expected"),
    [
        (
            TINY.replace('"2026-06-21T11:00:00Z"', "2026-06-21T11:00:00Z"),
            '[vary]\n"homes.count" = [4, 6]\n',
            "scenario file {base}: simulation.start is a TOML date-time; a scenario takes dates and times as "
            'strings: put it in quotes ("2026-06-21T11:00:00+00:00")',
        ),
        (
            TINY,
            '[set]\n"simulation.start" = 2026-06-21\n[vary]\n"homes.count" = [4, 6]\n',
            "[set] simulation.start is a TOML date; a scenario takes dates and times as strings: put it in "
            'quotes ("2026-06-21")',
        ),
        (
            TINY,
            '[vary]\n"simulation.start" = ["2026-06-21T11:00:00Z", 2026-06-22T11:00:00Z]\n',
            "[vary] simulation.start is a TOML date-time; ",
        ),
        (
            TINY,
            '[vary]\npolicies = [{home-0 = "a.toml"}, {home-0 = 12:00:00}]\n',
            "[vary] policies.home-0 is",
        ),
        (
            TINY,
            '[set]\nsimulation = {start = 2026-06-21}\n[vary]\n"homes.count" = [4]\n',
            "[set] simulation.start is",
        ),
    ],
)
def test_a_toml_date_is_refused_naming_its_key(tmp_path: Path, base: str, sweep: str, expected: str) -> None:
    """A TOML date-time (not a string) in the base scenario, [set] or [vary] raised "Object of
    type datetime is not JSON serializable" with its traceback; it is one line naming the key,
    as `gridnet simulate` says of the base."""
    (tmp_path / "tiny.toml").write_text(base)
    path = tmp_path / "sweep.toml"
    path.write_text(f'scenario = "tiny.toml"\n{sweep}')
    with pytest.raises(SweepFileError) as caught:
        load_sweep(path, tmp_path / "out")
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert expected.format(base=tmp_path / "tiny.toml") in message and DATE in message
    done = sweep_command(path, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {message}"]
    assert not (tmp_path / "out").exists()


def test_the_command_prints_one_line_for_a_bad_file(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, {"homes.count": [4, 1]})
    done = sweep_command(path, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {path}: [vary] homes.count = 1: {tmp_path / 'tiny.toml'}: [homes] count must be 2 to 1000"
    ]


def test_the_command_prints_one_line_for_a_swept_weather_file_without_records(tmp_path: Path) -> None:
    """A weather file of its header alone stopped the sweep with a traceback (``IndexError``,
    pvlib reading it as an empty table)."""
    (tmp_path / "header.epw").write_text("LOCATION,Testville,-,XX,Test,000000,52.5,13.4,1.0,34.0\n")
    (tmp_path / "tiny.toml").write_text(TINY)
    path = tmp_path / "sweep.toml"
    path.write_text('scenario = "tiny.toml"\n[vary]\nweather = [{sky = "file", weather_file = "header.epw"}]')
    done = sweep_command(path, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()  # (the table echoed cut: shown)
    assert line.startswith(f"error: {path}: [vary] weather = ") and line.endswith(
        f": {tmp_path / 'tiny.toml'}: [weather] weather_file: the weather file {tmp_path / 'header.epw'} "
        "has no records (in an EPW file they follow 8 lines of header); give a TMY3 or EPW file"
    )


def test_more_workers_than_two_per_core_are_refused_at_once(tmp_path: Path) -> None:
    """--workers 40 on 2 cores started 41 processes: the most is two per core, refused before
    the sweep file is even read (this one has none)."""
    most = 2 * usable_cores()
    for workers in (most + 1, 100_000):
        done = sweep_command(tmp_path / "missing.toml", "--workers", str(workers), cwd=tmp_path)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines() == [
            f"error: Invalid value for --workers: {workers} workers: a local cluster has 1 to {most} "
            f"(2 for each of the {usable_cores()} core(s) this process may use); leave --workers out for "
            "one per core (see 'gridnet sweep --help')"
        ]
    with pytest.raises(ValueError, match=f"a local cluster has 1 to {most} "), open_client(workers=most + 1):
        pass


def test_an_output_directory_not_written_by_a_sweep_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    sweep = load_sweep(write_sweep(tmp_path, {"homes.count": [4]}), tmp_path / "out")
    with pytest.raises(ConfigError, match="not written by 'gridnet sweep'"):
        run_sweep(sweep, no_cluster)


def test_a_file_the_sweep_reads_inside_its_output_directory_is_refused(tmp_path: Path) -> None:
    """The sweep file, its base scenario or a file a run names inside ``--out`` (a sweep's
    directory, which it writes and whose runs it replaces) is refused in one line, before
    anything is written there."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".gridnet-sweep").write_text("written by gridnet sweep\n")
    path = write_sweep(out, {"homes.count": [4]})
    done = sweep_command(path, "--out", out, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        f"error: the sweep file {path} is inside --out {out}, where 'gridnet sweep' deletes what an earlier "
        "run wrote; choose another --out (or move the file out of it)"
    ]
    (tmp_path / "sweep.toml").write_text('scenario = "out/tiny.toml"\n[vary]\n"homes.count" = [4]\n')
    with pytest.raises(ConfigError, match=r"^the base scenario .*out/tiny.toml is inside --out "):
        run_sweep(load_sweep(tmp_path / "sweep.toml", out), no_cluster)
    (out / "quiet.toml").write_text("# neither buys nor sells\n")
    (tmp_path / "sweep.toml").write_text(
        'scenario = "out/tiny.toml"\n[vary]\n"policies.home-1" = ["out/quiet.toml"]\n'
    )
    with pytest.raises(ConfigError, match=r"^the base scenario "):
        run_sweep(load_sweep(tmp_path / "sweep.toml", out), no_cluster)
    shutil.move(out / "tiny.toml", tmp_path / "tiny.toml")
    (tmp_path / "sweep.toml").write_text(
        'scenario = "tiny.toml"\n[vary]\n"policies.home-1" = ["out/quiet.toml"]\n'
    )
    with pytest.raises(ConfigError) as info:
        run_sweep(load_sweep(tmp_path / "sweep.toml", out), no_cluster)
    assert str(info.value) == (
        f"[policies] home-1's file {out / 'quiet.toml'} is inside --out {out}, where 'gridnet sweep' "
        "deletes what an earlier run wrote; choose another --out (or move the file out of it)"
    )
    assert sorted(p.name for p in out.iterdir()) == [".gridnet-sweep", "quiet.toml", "sweep.toml"]


def test_a_runs_files_are_found_from_the_sweep_and_its_id_follows_their_contents(
    client: Any, tmp_path: Path
) -> None:
    """A policy the base scenario names is relative to the base scenario; one [set] names, to
    the sweep file (as its other paths). The run reads both wherever it runs, and its id
    changes when either file's contents do (a resumed sweep runs it again), not otherwise."""
    quiet = "# neither buys nor sells\n"
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "tiny.toml").write_text(TINY + '[policies]\nhome-0 = "quiet.toml"\n')
    (tmp_path / "base" / "quiet.toml").write_text(quiet)
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "mine.toml").write_text(quiet)
    path = tmp_path / "sweeps" / "sweep.toml"
    path.write_text(
        'scenario = "../base/tiny.toml"\nfigures = ["chain.height"]\n'
        '[set]\n"policies.home-1" = "mine.toml"\n[vary]\n"homes.pv_share" = [0.5]\n'
    )

    def run_id() -> str:
        (run,) = load_sweep(path, tmp_path / "out").runs
        return run.id

    sweep = load_sweep(path, tmp_path / "out")
    (run,) = sweep.runs
    assert run.document["policies"] == {
        "home-0": str(tmp_path / "base" / "quiet.toml"),
        "home-1": str(tmp_path / "sweeps" / "mine.toml"),
    }
    (result,) = run_sweep(sweep, lambda: nullcontext(client)).results
    assert (result.status, result.error) == ("ok", None)
    first = run_id()
    assert first == run.id
    (tmp_path / "sweeps" / "mine.toml").write_text(quiet + "# edited\n")
    edited = run_id()
    (tmp_path / "base" / "quiet.toml").write_text(quiet + "# edited\n")
    assert len({first, edited, run_id()}) == 3
    (tmp_path / "sweeps" / "mine.toml").write_text(quiet)
    (tmp_path / "base" / "quiet.toml").write_text(quiet)
    assert run_id() == first
    (tmp_path / "sweeps" / "mine.toml").unlink()
    assert run_id() != first  # (the run fails, and runs again once the file is back)


def test_a_sweep_directory_another_sweep_runs_in_is_refused(tmp_path: Path) -> None:
    sweep = load_sweep(write_sweep(tmp_path, {"homes.count": [4]}), tmp_path / "out")
    lock = prepare_sweep_dir(sweep)
    try:
        with pytest.raises(DataDirLocked, match=r"^output directory .* is in use by process \d+ "):
            run_sweep(sweep, no_cluster)
    finally:
        lock.release()
    prepare_sweep_dir(sweep).release()


def test_a_scheduler_that_never_answers_is_one_line_and_a_real_one_is_used(client: Any) -> None:
    """A server that accepts the connection and says nothing is no scheduler: refused within
    the deadline (a Dask client alone waits without end); the LocalCluster's scheduler,
    given by its address, is used with its workers."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(SchedulerUnavailable) as info, open_client(scheduler=address):
            pass
    assert str(info.value).startswith(f"no Dask scheduler answers at {address} (no answer within 10 s): ")
    with open_client(scheduler=client.scheduler.address) as remote:
        assert len(remote.scheduler_info()["workers"]) == 2


def test_a_scheduler_address_nothing_listens_at_is_said_so_at_once(tmp_path: Path) -> None:
    """A refused connection is "connection refused", one line, at once (Dask tried again for
    10 s and said "Timed out trying to connect"); a host with no address is said so too."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"  # (closed: nothing listens there now)
    with pytest.raises(SchedulerUnavailable) as info, open_client(scheduler=address):
        pass
    assert str(info.value).startswith(
        f"no Dask scheduler at {address}: connection refused (nothing listens on port {port} there): "
        "start one with 'dask scheduler'"
    )
    path = write_sweep(tmp_path, {"homes.count": [4]})
    done = sweep_command(path, "--out", tmp_path / "out", "--scheduler", address, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"error: {info.value}"
    unknown = "tcp://no-such-host.invalid:8786"
    no_host = r"the host no-such-host\.invalid has no address"
    with pytest.raises(SchedulerUnavailable, match=no_host), open_client(scheduler=unknown):
        pass


def test_sigterm_stops_a_sweep_as_ctrl_c_does(tmp_path: Path) -> None:
    """SIGTERM (a service manager, a batch system) stops the sweep as Ctrl-C does: the table
    of what finished is written, exit 130, and the same command resumes."""
    path = write_sweep(tmp_path, {"homes.pv_share": [0.25, 0.5, 0.75, 1.0]})
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridnet", "sweep", str(path), "--workers", "1"],
        cwd=tmp_path,
        env=dict(os.environ, COLUMNS="200", NO_COLOR="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: any((tmp_path / "out" / "sweep" / "runs").glob(f"*/{RUN_FILE}")), 180)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "the same command resumes the sweep" in stderr
    rows = pq.read_table(tmp_path / "out" / "sweep" / "sweep.parquet").to_pylist()
    assert 1 <= len(rows) < 4 and all(r["status"] == "ok" for r in rows)


INTERRUPTED_DASK_CALL = """
import asyncio, os, signal, sys, threading
from tornado.ioloop import IOLoop
from distributed.utils import sync
from gridnet.sim.sweep import quiet_dask_interrupts
signal.signal(signal.SIGINT, signal.default_int_handler)  # (Ctrl-C, even if the runner ignores it)
if sys.argv[1] == "quiet":
    quiet_dask_interrupts()
ready, release, done = threading.Event(), threading.Event(), threading.Event()
loops = []
def run():
    asyncio.set_event_loop(asyncio.new_event_loop())
    loops.append(IOLoop.current())
    ready.set()
    loops[0].start()
threading.Thread(target=run, daemon=True).start()
ready.wait()
loops[0].add_callback(release.wait, 60)  # the loop is busy when the call comes ...
threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()  # ... and Ctrl-C comes first
try:
    sync(loops[0], asyncio.sleep, 0)
except KeyboardInterrupt:
    print("interrupted")
release.set()
loops[0].add_callback(done.set)  # (after the cancel callback)
done.wait(60)
"""


def test_ctrl_c_while_the_sweep_waits_on_dask_prints_no_traceback() -> None:
    """distributed's ``sync`` cancels an interrupted call with a callback that fails when the
    call has not started (seen once in ``make test``: a traceback after SIGTERM); the sweep
    drops tornado's record of it (``quiet_dask_interrupts``)."""

    def run(mode: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", INTERRUPTED_DASK_CALL, mode], capture_output=True, text=True, timeout=120
        )

    plain = run("plain")
    assert "NameError" in plain.stderr, "distributed no longer fails this way: quiet_dask_interrupts can go"
    quiet = run("quiet")
    assert quiet.stdout.strip() == "interrupted" and quiet.stderr == ""


def test_the_order_of_the_varied_keys_does_not_change_the_runs(tmp_path: Path) -> None:
    """Listing [vary]'s keys in another order is the same grid: the same run ids (a resumed
    sweep runs nothing again)."""
    one = load_sweep(write_sweep(tmp_path / "a", {"homes.pv_share": [0.25, 0.5], "homes.count": [4, 6]}))
    other = load_sweep(write_sweep(tmp_path / "b", {"homes.count": [4, 6], "homes.pv_share": [0.25, 0.5]}))
    assert sorted(r.id for r in one.runs) == sorted(r.id for r in other.runs)
    assert len({r.id for r in one.runs}) == 4


def test_files_in_whole_tables_of_vary_are_found_from_the_sweep(tmp_path: Path) -> None:
    """[vary] may list whole tables: a policies table's files are relative to the sweep file
    too."""
    (tmp_path / "tiny.toml").write_text(TINY)
    path = tmp_path / "sweep.toml"
    path.write_text('scenario = "tiny.toml"\n[vary]\npolicies = [{home-0 = "a.toml"}, {home-0 = "b.toml"}]\n')
    runs = load_sweep(path, tmp_path / "out").runs
    assert [r.document["policies"] for r in runs] == [
        {"home-0": str(tmp_path / "a.toml")},
        {"home-0": str(tmp_path / "b.toml")},
    ]


def test_a_plot_of_many_seeds_and_long_values_lays_out_without_a_warning(tmp_path: Path) -> None:
    """A sweep of 10,000 seeds printed matplotlib's "UserWarning: Tight layout not applied":
    the legend's title listed every seed, wider than the figure. The seeds are now summed up,
    long labels cut, and the layout is constrained."""
    vary = {"simulation.name": ["x" * 64, "y" * 64], "homes.pv_share": [0.25, 0.5]}
    path = write_sweep(tmp_path, vary, seeds=[3], plot=["energy.p2p_wh"])
    sweep = replace(load_sweep(path, tmp_path / "out"), seeds=tuple(range(1, 10_001)))
    results = [RunResult(run, "ok", None, 1.0, {"energy.p2p_wh": 5.0}, False) for run in sweep.runs]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written, failed = write_plots(sweep, results)
    assert len(written) == 2 and all(p.stat().st_size > 0 for p in written) and failed == []


def test_a_swept_value_is_drawn_as_it_is_written(tmp_path: Path) -> None:
    """A swept name holding "$...$" is text on the plot's axis: matplotlib's mathtext failed
    the sweep's plots after every run had finished, and again on every resume."""
    path = write_sweep(tmp_path, {"simulation.name": ["a $\\frac$ b", "plain"]}, plot=["energy.p2p_wh"])
    sweep = load_sweep(path, tmp_path / "out")
    results = [RunResult(run, "ok", None, 1.0, {"energy.p2p_wh": 5.0}, False) for run in sweep.runs]
    (written,), failed = write_plots(sweep, results)
    assert written.read_bytes()[:8] == PNG and failed == []


def test_a_plots_file_name_is_bounded_and_its_own(tmp_path: Path) -> None:
    """A 306-character figure (any path under an open prefix is taken) had its plot fail, "File
    name too long", after every run had finished, and again on every resume; two figures that
    differ only in characters a file name does not take shared one file. A figure or key of
    such characters, or of more than 100, is cut and given a digest of the whole. The plot of a
    figure no run has says so, cut too (the whole name made matplotlib give up its layout, with
    a warning)."""
    long = "roles." + "a" * 300
    figures = [long, "roles.a b", "roles.a-b", "energy.p2p_wh"]
    path = write_sweep(tmp_path, {"homes.count": [4, 5]}, plot=figures)
    sweep = load_sweep(path, tmp_path / "out")
    results = [RunResult(run, "ok", None, 1.0, dict.fromkeys(figures[1:], 5.0), False) for run in sweep.runs]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written, failed = write_plots(sweep, results)
    assert failed == []
    names = [p.name for p in written]
    assert len(set(names)) == len(figures) and all(p.read_bytes()[:8] == PNG for p in written)
    assert re.fullmatch(rf"{re.escape(long[:89])}-[0-9a-f]{{10}}--by--homes\.count\.png", names[0])
    assert max(len(n.encode()) for n in names) <= 255
    assert names[1:3] != ["roles.a-b--by--homes.count.png"] * 2 and "roles.a-b--by--homes.count.png" in names
    assert names[3] == "energy.p2p_wh--by--homes.count.png"


def test_a_plot_that_cannot_be_drawn_is_one_line_after_the_summary(
    first: SweepResult, tmp_path: Path
) -> None:
    """A plot that fails (here the process may write no file past 16 KiB: its PNG fails with
    EFBIG, as on a full disk) is left out and said in one line; the runs, the table and the
    summary are written all the same, and the command exits 1 (it printed a traceback, and no
    summary, on every resume)."""
    path = copy_out(first, tmp_path / "copy")
    out = path.parent / "out"
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    done = subprocess.run(
        [sys.executable, "-m", "gridnet", "sweep", str(path), "--out", str(out)],
        cwd=tmp_path,
        env=dict(os.environ, COLUMNS="300", NO_COLOR="1"),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, hard)),
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout, done.stderr
    name = "energy.p2p_wh--by--homes.pv_share.png"
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("plot")] == [
        f"plot not drawn: {name}: OSError: [Errno 27] File too large"
    ]
    assert any("2 completed by an earlier sweep" in line for line in lines)
    assert not (out / "plots" / name).exists() and pq.read_table(out / TABLE).num_rows == 2


KEYS = st.text(max_size=12)
SCALARS = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=24)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
TABLES = st.dictionaries(KEYS, VALUES, max_size=5)
DOCUMENTS = st.dictionaries(KEYS, st.one_of(TABLES, st.lists(TABLES, min_size=1, max_size=3)), max_size=4)
"""Scenario documents as ``scenario_toml`` takes them: tables, or arrays of tables, of any
values, every string and key any text (an emoji, a control character, a quote)."""


@settings(max_examples=300, deadline=None)
@given(DOCUMENTS, st.text(max_size=40))
def test_a_runs_scenario_toml_reads_back_as_its_document(document: dict[str, Any], header: str) -> None:
    """JSON's escapes wrote a character outside the BMP (an emoji) as a surrogate pair, which
    TOML refuses, and a control character in the header went into a comment as it was."""
    assert tomllib.loads(scenario_toml(document, header)) == document


def test_a_runs_scenario_toml_runs_again(client: Any, tmp_path: Path) -> None:
    """The "run it again" command a run's scenario.toml names failed on a name with an emoji
    (not valid TOML); it runs the same scenario."""
    name = 'Sun \U0001f600 "q" \\ \u00e9'
    (tmp_path / "tiny.toml").write_text(TINY)
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'scenario = "tiny.toml"\n[vary]\n"simulation.name" = [{json.dumps(name, ensure_ascii=False)}]\n',
        encoding="utf-8",
    )
    sweep = load_sweep(path, tmp_path / "out")
    (result,) = run_sweep(sweep, lambda: nullcontext(client)).results
    assert result.status == "ok", result.error
    again = tmp_path / "again"
    toml = sweep.run_dir(result.run) / "scenario.toml"
    done = subprocess.run(
        [sys.executable, "-m", "gridnet", "simulate", str(toml), "--out", str(again)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((again / "report.json").read_text())["scenario"]["name"] == name


def test_a_figure_path_indexes_a_list_with_ascii_digits_only() -> None:
    """A digit in a figure's path indexes a list: "²" passed str.isdigit and int() refused it,
    a ValueError traceback after every run; it names nothing now (None, as any path a report
    does not hold)."""
    report = {"line_owners": [{"fees_gnc": 1.5}, {"fees_gnc": 2.5}]}
    assert figure_value(report, "line_owners.1.fees_gnc") == 2.5
    assert figure_value(report, "line_owners.².fees_gnc") is None
    assert figure_value(report, "line_owners.9.fees_gnc") is None
