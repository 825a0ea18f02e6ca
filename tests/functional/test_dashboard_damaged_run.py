"""``gridnet dashboard OUT`` on a run directory damaged after the run: a real run (simulated
once for the module) is copied and its files edited, replaced by a pipe or a link, or grown
past any report gridnet writes. The command answers one line naming the file and what is
wrong with it, and exits 1, at once (never a traceback, never a read that does not end); the
app itself answers every page with a page saying so."""

from __future__ import annotations

import json
import os
import random
import shutil
import string
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gridnet.crypto.address import address_to_text
from gridnet.dashboard.app import create_dashboard
from gridnet.dashboard.run import (
    MAX_REPORT_BYTES,
    MAX_SERIES_ROW_BYTES,
    SERIES_FILE_BYTES,
    SHOWN_SERIES,
    RunResults,
)
from gridnet.errors import RunDamaged, shown
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.meter import METERS
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import MAX_HOMES, MAX_INTERVALS, scenario_from_dict
from gridnet.sim.series import SCHEMAS, write_series
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
    report = json.loads((run_out / "report.json").read_text())
    whole = len(json.dumps(report, indent=2))
    per_home = len(json.dumps(report["homes"], indent=4)) / len(report["homes"])
    per_interval = len(json.dumps(report["clearing_price"]["per_interval"], indent=4)) / len(
        report["clearing_price"]["per_interval"]
    )
    largest = whole + MAX_HOMES * per_home + MAX_INTERVALS * per_interval
    assert 3 * largest < MAX_REPORT_BYTES, (largest, per_home, per_interval)


def refused_in_process(out: Path) -> str:
    """What opening the run in ``out`` is refused with (``RunDamaged``), as one line."""
    with pytest.raises(RunDamaged) as refused:
        RunResults.open(out).close()
    message = str(refused.value)
    assert "\n" not in message and message.endswith("; run the scenario again"), message
    return message


def put(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit of a report: ``value`` at dotted ``path`` (a list's entry by its index)."""

    def edit(report: dict[str, Any]) -> None:
        *way, last = path.split(".")
        here: Any = report
        for part in way:
            here = here[int(part)] if isinstance(here, list) else here[part]
        if isinstance(here, list):
            here[int(last)] = value
        else:
            here[last] = value

    return edit


def test_a_report_whose_fields_are_not_as_written_is_one_line_naming_the_field(
    run_out: Path, tmp_path: Path
) -> None:
    """Every field the dashboard reads is checked once, when the run is opened: the series it
    lists ("series": [1] was an AttributeError traceback), the figures it shows (a 400-digit
    number was an OverflowError on the overview), each home and line owner, the authorities'
    addresses. Refused in one line naming report.json and the field."""
    report = run_out / "report.json"
    home = json.loads(report.read_text())["homes"][0]["name"]
    cases = [
        ("series", [1], "series is a list [1], not an object"),
        ("series.tables", [1], "series.tables is a list [1], not an object"),
        ("series.tables.market", "x", "series.tables.market is 'x', not an object"),
        ("series.tables.market", {"rows": 4}, "series.tables.market.file is missing"),
        ("series.tables.homes.file", 5, "series.tables.homes.file is 5, not text"),
        ("energy.pv_wh", int("9" * 400), "energy.pv_wh is 9999999999"),
        ("energy.load_wh", "x", "energy.load_wh is 'x', not a number below 9,007,199,254,740,992 in size"),
        ("energy", "mangled", "energy is 'mangled', not an object"),
        ("dso.commands", 2.5, "dso.commands is 2.5, not a whole number from 0 below"),
        ("homes.0.pv_wh", None, "homes[0].pv_wh is None, not a number"),
        ("homes.0", home, f"homes[0] is '{home}', not an object"),
        ("grid.line_owners.0.v_max_pu", "high", "grid.line_owners[0].v_max_pu is 'high', not a number"),
        ("revenue_gnc.dso", [], "revenue_gnc['dso'] is a list [], not a number"),
        (
            "participants.authorities",
            {"gnnotanaddress": "dso"},
            "participants.authorities names 'gnnotanaddress'",
        ),
        ("verify", {}, "verify.ok is missing"),
        ("converged", 1, "converged is 1, not true or false"),
    ]
    for k, (path, value, expected) in enumerate(cases):
        out = damaged(run_out, tmp_path / f"case-{k}", put(path, value))
        message = refused_in_process(out)
        assert message.startswith(f"{out / 'report.json'}: {expected}"), (path, message)
    for k in (0, 5):  # the command: one line, exit 1, nothing served
        out = tmp_path / f"case-{k}"
        assert refusal(out).startswith(f"error: {out / 'report.json'}: {cases[k][2]}")


def test_the_app_on_a_damaged_report_has_every_page_say_what_is_damaged(
    run_out: Path, tmp_path: Path
) -> None:
    """The app itself (the report changed between the command's check and its start): every
    page is a 500 page naming the field, never "Internal Server Error" (a 400-digit figure
    was one on the overview)."""
    from fastapi.testclient import TestClient

    out = damaged(run_out, tmp_path / "over", put("energy.pv_wh", int("9" * 400)))
    with TestClient(create_dashboard(out)) as client:
        for path in ("/", "/market", "/homes", "/grid", "/chain", "/chain/block/1"):
            answer = client.get(path)
            assert answer.status_code == 500, path
            assert (
                f"this page cannot be drawn from the run in {out} ({out / 'report.json'}: energy.pv_wh is 99"
                in (answer.text)
            ), path
            assert "run the scenario again" in answer.text and "Internal Server Error" not in answer.text


def test_a_report_sized_beyond_any_scenario_is_refused_before_anything_is_drawn(
    run_out: Path, tmp_path: Path
) -> None:
    """What sizes a loop or a chart is held to the bounds a scenario is: scenario.intervals =
    10^12 had a meter's page look up readings for ever (memory 1.1 to 3.3 GB in 15 s); its first
    interval, the homes and the line owners too. One line from the command; the damaged page
    from the app, for the meter's page too."""
    from fastapi.testclient import TestClient

    report = json.loads((run_out / "report.json").read_text())
    homes, owners = report["homes"], report["grid"]["line_owners"]
    beyond = f"not a whole number from 1 to {MAX_INTERVALS:,} (31 days: the longest scenario)"
    cases = [
        ("scenario.intervals", 10**12, f"scenario.intervals is 1000000000000, {beyond}"),
        ("scenario.intervals", MAX_INTERVALS + 1, f"scenario.intervals is {MAX_INTERVALS + 1}, {beyond}"),
        ("scenario.intervals", 0, f"scenario.intervals is 0, {beyond}"),
        ("scenario.first_interval", -1, "scenario.first_interval is -1, not an interval from 35,040 to "),
        ("scenario.first_interval", 10**15, "scenario.first_interval is 1000000000000000, not an interval"),
        (
            "homes",
            [homes[0]] * (MAX_HOMES + 1),
            f"homes is a list of {MAX_HOMES + 1:,}, not a list of at most ",
        ),
        ("grid.line_owners", [owners[0]] * (MAX_HOMES + 1), "grid.line_owners is a list of "),
    ]
    for k, (path, value, expected) in enumerate(cases):
        out = damaged(run_out, tmp_path / f"case-{k}", put(path, value))
        message = refused_in_process(out)
        assert message.startswith(f"{out / 'report.json'}: {expected}"), (path, message)
    out = tmp_path / "case-0"
    assert refusal(out).startswith(f"error: {out / 'report.json'}: scenario.intervals is 1000000000000, ")
    chain = Chain.open(run_out / "chain", readonly=True)
    try:
        n = len(METERS.prefix)
        meter = next(address_to_text(key[n:]) for key in chain.values if key[:n] == METERS.prefix)
    finally:
        chain.close()
    out = tmp_path / "case-1"
    with TestClient(create_dashboard(out)) as client:
        answer = client.get(f"/chain/meter/{meter}")
        assert answer.status_code == 500
        assert (
            f"({out / 'report.json'}: scenario.intervals is {MAX_INTERVALS + 1}, not a whole" in answer.text
        )
    with TestClient(create_dashboard(run_out)) as client:  # (the run as written: its readings listed)
        answer = client.get(f"/chain/meter/{meter}")
        assert answer.status_code == 200 and f"Meter {meter[:14]}" in answer.text


def test_a_series_file_that_is_no_regular_file_says_what_it_is(run_out: Path, tmp_path: Path) -> None:
    """A pipe, a link to /dev/zero or a directory in place of a series file was "it is missing":
    it is said what it is (and the pipe is not waited on); a time no calendar holds (year
    146,140,482 in market.parquet) was an OverflowError traceback."""
    cases: list[tuple[str, Callable[[Path], object], str]] = [
        ("pipe", os.mkfifo, "it is a pipe, not a regular file"),
        (
            "zero",
            lambda p: p.symlink_to("/dev/zero"),
            "it is a link to /dev/zero, a device, not a regular file",
        ),
        ("folder", lambda p: p.mkdir(), "it is a directory, not a regular file"),
    ]
    for label, make, expected in cases:
        out = damaged(run_out, tmp_path / label)
        market = out / "series" / "market.parquet"
        market.unlink()
        make(market)
        message = refused_in_process(out)
        assert message.startswith(f"cannot read the run's series 'market', {market}: {expected}"), message
    out = tmp_path / "pipe"
    assert refusal(out).startswith(
        f"error: cannot read the run's series 'market', {out}/series/market.parquet: "
    )
    out = damaged(run_out, tmp_path / "far")
    market = out / "series" / "market.parquet"
    table = pq.read_table(market)
    far = pa.array([2**62] * table.num_rows, table.schema.field("time").type)
    pq.write_table(table.set_column(table.schema.get_field_index("time"), "time", far), market)
    line = refusal(out)
    assert line.startswith(
        f"error: cannot read the run's series 'market', {market}: it is not a time series as "
    ), line


def test_a_series_named_outside_the_run_directory_is_not_read(run_out: Path, tmp_path: Path) -> None:
    """report.json names the series files: one named by an absolute path ("/etc/passwd" was
    opened) or through "..", or a link that leads out of the run's directory, is refused
    naming the series and is not read, though a real series file is there; a link that stays
    inside the directory is followed."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = elsewhere / "market.parquet"
    shutil.copy(run_out / "series" / "market.parquet", outside)
    for k, file in enumerate(("/etc/passwd", str(outside), "../elsewhere/market.parquet", "series/../../x")):
        out = damaged(run_out, tmp_path / f"named-{k}", put("series.tables.market.file", file))
        message = refused_in_process(out)
        expected = f"the run's series 'market' is {shown(file)} in {out / 'report.json'}: not a file inside "
        assert message.startswith(expected), message
    assert refusal(tmp_path / "named-0").startswith("error: the run's series 'market' is '/etc/passwd' in ")
    linked = damaged(run_out, tmp_path / "linked")
    market = linked / "series" / "market.parquet"
    market.unlink()
    market.symlink_to(Path("..", "..", "elsewhere", "market.parquet"))
    message = refused_in_process(linked)
    expected = (
        f"cannot read the run's series 'market', {market}: it is a link to {outside}, outside the run's "
    )
    assert message.startswith(expected), message
    inside = damaged(run_out, tmp_path / "inside")
    (inside / "series" / "market.parquet").rename(inside / "market-kept.parquet")
    (inside / "series" / "market.parquet").symlink_to(Path("..", "market-kept.parquet"))
    results = RunResults.open(inside)
    try:
        assert len(results.series["market"]) == len(pq.read_table(run_out / "series" / "market.parquet"))
    finally:
        results.close()


MEMORY = """
import sys
from pathlib import Path
from gridnet.dashboard.run import RunResults
from gridnet.errors import RunDamaged

try:
    RunResults.open(Path(sys.argv[1])).close()
except RunDamaged as exc:
    print(exc)
status = Path("/proc/self/status").read_text()  # (VmHWM: its peak; ru_maxrss keeps the forking one's)
print(next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) // 1024)
"""


def test_a_series_with_rows_the_report_does_not_say_is_refused_before_it_is_read(
    run_out: Path, tmp_path: Path
) -> None:
    """An orders.parquet of 29 kB holding 1,000,000 rows, where report.json said 20, was read
    whole, every row a dict: 783 MB. The Parquet footer's rows are compared with the report's
    before anything is read; a process that opens the run stays at what it takes to start."""
    out = damaged(run_out, tmp_path / "rows")
    orders = out / "series" / "orders.parquet"
    table = pq.read_table(orders)
    pq.write_table(table.take(pa.array([0] * 1_000_000, pa.int32())), orders, compression="zstd")
    said = json.loads((out / "report.json").read_text())["series"]["tables"]["orders"]["rows"]
    expected = f"cannot read the run's series 'orders', {orders}: it holds 1,000,000 rows, "
    expected += f"report.json says {said:,}"
    assert refused_in_process(out) == f"{expected}; run the scenario again"
    result = subprocess.run(
        [sys.executable, "-c", MEMORY, str(out)], capture_output=True, text=True, timeout=CLI_S, check=True
    )
    message, megabytes = result.stdout.splitlines()
    assert message.startswith(expected) and int(megabytes) < 400, result.stdout
    assert refusal(out) == f"error: {expected}; run the scenario again"


def test_a_series_larger_than_its_rows_take_is_refused_before_it_is_read(
    run_out: Path, tmp_path: Path
) -> None:
    """The rows as the report says, but more bytes than so many rows of a series take: a file
    that large is not read, and a row of 10 MB, squeezed into a few kB, is not unpacked."""
    said = json.loads((run_out / "report.json").read_text())["series"]["tables"]["orders"]["rows"]
    most = SERIES_FILE_BYTES + said * MAX_SERIES_ROW_BYTES
    for label, compression, expected in (
        ("plain", "none", "it is 10,"),
        ("squeezed", "zstd", "its rows are 10,"),
    ):
        out = damaged(run_out, tmp_path / label)
        orders = out / "series" / "orders.parquet"
        table = pq.read_table(orders)
        owners = pa.array(["x" * 10_000_000, *table["owner"].to_pylist()[1:]])
        wide = table.set_column(table.schema.get_field_index("owner"), "owner", owners)
        pq.write_table(wide, orders, compression=compression)
        message = refused_in_process(out)
        assert message.startswith(f"cannot read the run's series 'orders', {orders}: {expected}"), message
        assert f"more than {said:,} rows of a series take (at most {most:,})" in message


def test_a_report_saying_more_rows_than_its_run_makes_is_refused(run_out: Path, tmp_path: Path) -> None:
    """What report.json says a series holds is within what the run's homes, line owners and
    intervals make (``SERIES_ROWS``): a report and a series grown together are refused too."""
    report = json.loads((run_out / "report.json").read_text())
    homes, owners = len(report["homes"]), len(report["grid"]["line_owners"])
    intervals = report["scenario"]["intervals"]
    for name, most in (
        ("homes", homes * intervals),
        ("lines", owners * intervals),
        ("market", intervals),
        ("orders", (3 * homes + 2) * intervals),
    ):
        assert report["series"]["tables"][name]["rows"] <= most  # (as the run wrote it)
        out = damaged(run_out, tmp_path / name, put(f"series.tables.{name}.rows", most + 1))
        sizes = f"{homes:,} homes, {owners:,} line owners and {intervals:,} intervals"
        assert refused_in_process(out).startswith(
            f"{out / 'report.json'}: series.tables.{name}.rows is {most + 1}, not a whole number from 0 to "
            f"{most:,} (the most rows {sizes} make)"
        )
    out = damaged(run_out, tmp_path / "none", put("series.tables.orders", {"file": "series/orders.parquet"}))
    assert refused_in_process(out).startswith(f"{out / 'report.json'}: series.tables.orders.rows is missing")


def test_the_widest_rows_a_run_writes_fit_the_bounds(tmp_path: Path) -> None:
    """Each series the dashboard reads, written as a run writes it, with every row as wide as a
    run's can be (names of 64 characters, numbers that do not compress), takes less than
    ``MAX_SERIES_ROW_BYTES`` a row beside ``SERIES_FILE_BYTES``, on disk and uncompressed."""
    draw = random.Random(7)
    values = {
        pa.string(): lambda: "".join(draw.choices(string.ascii_letters, k=64)),
        pa.int64(): lambda: draw.getrandbits(62),
        pa.float64(): draw.random,
        pa.bool_(): lambda: draw.random() < 0.5,
        pa.timestamp("ms", tz="UTC"): lambda: draw.getrandbits(40),
    }
    rows = 20_000
    built = {
        name: pa.table({f.name: pa.array([values[f.type]() for _ in range(rows)], f.type) for f in schema})
        for name, schema in SCHEMAS.items()
        if name in SHOWN_SERIES
    }
    written = write_series(tmp_path, built)
    for name in SHOWN_SERIES:
        path = tmp_path / written["tables"][name]["file"]
        meta = pq.read_metadata(path)
        unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        assert max(unpacked, path.stat().st_size) <= rows * MAX_SERIES_ROW_BYTES, name
        assert meta.serialized_size <= SERIES_FILE_BYTES // 16, name


THREADS = """
import os, sys
from pathlib import Path
import pyarrow, numpy  # (their own threads, started on import)
from gridnet.dashboard.run import RunResults

def threads() -> int:
    return len(os.listdir("/proc/self/task"))

before = threads()
RunResults.open(Path(sys.argv[1])).close()
print(before, threads())
"""


def test_reading_a_run_s_series_starts_no_native_thread(run_out: Path) -> None:
    """Reading the series starts no thread that outlives it: ``pq.read_table`` (through
    pyarrow's datasets) started two, even with ``use_threads=False``, and a dashboard process
    refusing a later series aborted at exit about once in six test runs ("terminate called
    without an active exception", exit -6: a native thread still joinable at exit)."""
    result = subprocess.run(
        [sys.executable, "-c", THREADS, str(run_out)],
        capture_output=True,
        text=True,
        timeout=CLI_S,
        check=True,
    )
    before, after = map(int, result.stdout.split())
    assert after == before, result.stdout
