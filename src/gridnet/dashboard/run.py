"""One run's results, as the dashboard reads them: its report, its time series and its chain
(opened read-only: the explorer reads blocks, transactions and state records from it)."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from gridnet.crypto.address import address_from_public_key, address_from_text, address_to_text
from gridnet.errors import ConfigError, InvalidAddress, RunDamaged, shown
from gridnet.files import read_bounded, read_capped
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import Chain
from gridnet.ledger.transactions import Transaction, tx_id
from gridnet.ledger.txs.contract import SettleContract
from gridnet.sim.scenario import FIRST_START_MS, LAST_START_MS, MAX_HOMES, MAX_INT, MAX_INTERVALS
from gridnet.units import Hash32, interval_of


def when(ms: int) -> str:
    """A timestamp [ms] as UTC ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


MAX_REPORT_BYTES: Final = 8 << 20
"""A run's report.json is read when it is at most this large (8 MiB). The largest a scenario
can make is about 1.5 MB: 1,000 homes (``MAX_HOMES``) at 0.73 kB each in ``homes`` and 2,976
intervals (``MAX_INTERVALS``, 31 days) at 0.24 kB each in ``clearing_price``, beside 17 kB
that do not grow (measured on runs of 3, 40 and 200 homes and of 4 and 40 intervals). The
rest is room for what grows with a run's troubles (``transactions.refused_by``: a count per
rule and participant) and a devnet's nodes; a larger file is no report gridnet wrote, and
parsing it would take ten times its size in memory."""


def read_report(path: Path) -> Any:
    """The JSON in a run's ``report.json`` at ``path``: a regular file of at most
    ``MAX_REPORT_BYTES`` (opened without blocking: a FIFO is refused, not waited on), else a
    ConfigError in one line naming it."""
    data = read_capped(path, "the run's report", MAX_REPORT_BYTES, hint="; run the scenario again")
    try:
        return json.loads(data.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # (ValueError: a 5,000-digit number too)
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(
            f"{path} is not a run's report (not JSON: {reason}); run the scenario again"
        ) from None


@dataclass(frozen=True, slots=True)
class Kind:
    """What a field of report.json must be for the dashboard to draw it."""

    what: str
    """As a message says it: "a number", "text", ..."""
    test: Callable[[Any], bool]


def is_number(value: Any) -> bool:
    """A finite int or float below the scenario's ``MAX_INT`` in size (a bool is no number).
    (Compared, never converted: a 400-digit integer does not fit a float.)"""
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < MAX_INT


def is_whole(value: Any) -> bool:
    return isinstance(value, int) and is_number(value)


def is_count(value: Any) -> bool:
    return is_whole(value) and value >= 0


def or_null(kind: Kind) -> Kind:
    return Kind(f"{kind.what} or null", lambda v: v is None or kind.test(v))


TEXT: Final = Kind("text", lambda v: isinstance(v, str))
FLAG: Final = Kind("true or false", lambda v: isinstance(v, bool))
NUMBER: Final = Kind(f"a number below {MAX_INT:,} in size", is_number)
COUNT: Final = Kind(f"a whole number from 0 below {MAX_INT:,}", is_count)
WHOLE: Final = Kind(f"a whole number below {MAX_INT:,} in size", is_whole)
SEED: Final = Kind("a whole number from 0 below 2**63", lambda v: type(v) is int and 0 <= v < 2**63)
OBJECT: Final = Kind("an object", lambda v: isinstance(v, dict))
INTERVALS: Final = Kind(
    f"a whole number from 1 to {MAX_INTERVALS:,} (31 days: the longest scenario)",
    lambda v: is_whole(v) and 1 <= v <= MAX_INTERVALS,
)
FIRST_INTERVALS: Final = range(interval_of(FIRST_START_MS), interval_of(LAST_START_MS - 1) + 1)
"""The first interval of a scenario: it starts in the years 1971 to 2199."""
FIRST_INTERVAL: Final = Kind(
    f"an interval from {FIRST_INTERVALS[0]:,} to {FIRST_INTERVALS[-1]:,} (a scenario starts in 1971 to 2199)",
    lambda v: is_whole(v) and v in FIRST_INTERVALS,
)
ENTRIES: Final = Kind(
    f"a list of at most {MAX_HOMES:,} (the most homes, or line owners, a scenario has)",
    lambda v: isinstance(v, list) and len(v) <= MAX_HOMES,
)
MISSING: Final = object()
"""A field that is not there (``_field``, ``_check``)."""

REPORT_FIELDS: Final[tuple[tuple[str, Kind], ...]] = (
    ("scenario.name", TEXT),
    ("scenario.seed", SEED),
    ("scenario.first_interval", FIRST_INTERVAL),
    ("scenario.intervals", INTERVALS),
    ("scenario.start_utc", TEXT),
    ("scenario.end_utc", TEXT),
    ("scenario.resolved.grid.max_loading_percent", NUMBER),
    ("scenario.resolved.grid.v_min_pu", NUMBER),
    ("scenario.resolved.grid.v_max_pu", NUMBER),
    ("energy.pv_wh", NUMBER),
    ("energy.load_wh", NUMBER),
    ("energy.p2p_wh", NUMBER),
    ("energy.bought_from_dso_wh", NUMBER),
    ("energy.contracts", COUNT),
    ("contracts.delivered_short", COUNT),
    ("contracts.disputes_resolved", COUNT),
    ("clearing_price.mean_gnc_per_kwh", or_null(NUMBER)),
    ("dso.commands", COUNT),
    ("dso.first_command_utc", or_null(TEXT)),
    ("dso.homes_commanded", COUNT),
    ("dso.homes_following_commands", COUNT),
    ("dso.overrides_recorded", COUNT),
    ("chain.height", COUNT),
    ("economy.block_subsidy_gnc", NUMBER),
    ("economy.note", TEXT),
    ("converged", FLAG),
    ("verify.ok", FLAG),
    ("participants.homes", COUNT),
    ("participants.prosumers", COUNT),
    ("participants.with_battery", COUNT),
    ("participants.line_owners", COUNT),
    ("grid.congested_intervals", COUNT),
)
"""Every field of report.json the dashboard's pages read (beside the lists and tables below),
and what it must be: checked once, when the run is opened (``check_report``). What sizes a
loop or a chart (the intervals a meter's readings are looked up in, the homes, the line
owners) is held to the bounds a scenario is (``sim/scenario.py``): 10^12 intervals would
look up readings for ever."""
HOME_FIELDS: Final[tuple[tuple[str, Kind], ...]] = (
    ("name", TEXT),
    ("business", FLAG),
    *((key, NUMBER) for key in ("pv_kw", "battery_kwh", "annual_kwh", "load_wh", "pv_wh")),
    *((key, NUMBER) for key in ("bought_p2p_wh", "bought_dso_wh", "imbalance_wh", "sold_p2p_wh")),
    *((key, NUMBER) for key in ("sold_dso_wh", "bill_gnc", "all_from_dso_gnc", "savings_gnc", "subsidy_gnc")),
    ("self_consumption_percent", or_null(NUMBER)),
)
"""What the homes page reads of each entry of ``homes``."""
LINE_OWNER_FIELDS: Final[tuple[tuple[str, Kind], ...]] = (
    ("name", TEXT),
    ("homes", COUNT),
    *((key, NUMBER) for key in ("losses_wh", "max_loading_percent", "fee_gnc_per_kwh")),
    *((key, NUMBER) for key in ("fees_earned_gnc", "losses_cost_gnc")),
    ("v_min_pu", or_null(NUMBER)),
    ("v_max_pu", or_null(NUMBER)),
)
"""What the grid page reads of each entry of ``grid.line_owners``."""
SHOWN_SERIES: Final = ("homes", "lines", "market", "orders")
"""The time series the dashboard draws (``series.tables`` in report.json lists more: those
are not read)."""
SERIES_ROWS: Final[dict[str, Callable[[int, int, int], int]]] = {
    "homes": lambda homes, owners, intervals: homes * intervals,
    "lines": lambda homes, owners, intervals: owners * intervals,
    "market": lambda homes, owners, intervals: intervals,
    "orders": lambda homes, owners, intervals: (3 * homes + 2) * intervals,
}
"""The most rows each series the dashboard reads has (``sim/series.py``), from the run's homes,
line owners and intervals: a row per home and interval; per feeder (one a line owner) and
interval; per interval cleared; per order cleared, at most 3 of a home's (an offer, a bid and
its policy's check bid) and the DSO's bid and offer in each interval. report.json's count of a
series' rows is held to it, and the file to that count (``read_series``): a series of 29 kB
with 1,000,000 rows, where the report said 20, took 783 MB to read."""
MAX_SERIES_ROW_BYTES: Final = 512
"""A row of a series takes at most this many bytes in its Parquet file, uncompressed: 8 a
number, a name's characters and 4 more (a row of homes.parquet, the widest, about 200: 22
columns)."""
SERIES_FILE_BYTES: Final = 1 << 20
"""What a series' Parquet file holds beside its rows, at most: its schema, footer, pages'
headers and statistics (5 kB in a run's homes.parquet)."""


def check_report(report: dict[str, Any], path: Path) -> None:
    """``RunDamaged`` naming ``path`` and the first field the dashboard reads that is missing
    or not what ``gridnet simulate`` writes there (one line: "report.json: energy.pv_wh is
    'x', not a number")."""
    for name, kind in REPORT_FIELDS:
        _check(path, name, _field(report, name, path), kind)
    for name, fields in (("homes", HOME_FIELDS), ("grid.line_owners", LINE_OWNER_FIELDS)):
        entries = _field(report, name, path)
        _check(path, name, entries, ENTRIES)
        for i, entry in enumerate(entries):
            _check(path, f"{name}[{i}]", entry, OBJECT)
            for key, kind in fields:
                _check(path, f"{name}[{i}].{key}", entry.get(key, MISSING), kind)
    for name, kind in (("revenue_gnc", NUMBER), ("participants.authorities", TEXT)):
        table = _field(report, name, path)
        _check(path, name, table, OBJECT)
        for key, value in table.items():
            _check(path, f"{name}[{key!r}]", value, kind)
    for key in _field(report, "participants.authorities", path):
        try:
            address_from_text(key)
        except InvalidAddress as exc:
            raise RunDamaged(
                f"{path}: participants.authorities names {shown(key)}, not an address ({exc})"
            ) from None
    tables = _field(report, "series.tables", path)
    _check(path, "series.tables", tables, OBJECT)
    sizes = len(report["homes"]), len(report["grid"]["line_owners"]), report["scenario"]["intervals"]
    for name in SHOWN_SERIES:
        if name in tables:
            _check(path, f"series.tables.{name}", tables[name], OBJECT)
            _check(path, f"series.tables.{name}.file", tables[name].get("file", MISSING), TEXT)
            _check(path, f"series.tables.{name}.rows", tables[name].get("rows", MISSING), _rows(*sizes, name))


def _rows(homes: int, owners: int, intervals: int, name: str) -> Kind:
    """What report.json may say the series ``name`` of a run of these sizes holds (``SERIES_ROWS``)."""
    most = SERIES_ROWS[name](homes, owners, intervals)
    return Kind(
        f"a whole number from 0 to {most:,} (the most rows {homes:,} homes, {owners:,} line owners and "
        f"{intervals:,} intervals make)",
        lambda v: is_count(v) and v <= most,
    )


def _field(report: dict[str, Any], name: str, path: Path) -> Any:
    """The field of ``report`` at dotted ``name`` (``MISSING`` when it is not there); a part of
    the way that is no object is ``RunDamaged``."""
    value: Any = report
    parts = name.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(value, dict):
            _check(path, ".".join(parts[:depth]), value, OBJECT)
        value = value.get(part, MISSING)
    return value


def _check(path: Path, name: str, value: Any, kind: Kind) -> None:
    if value is MISSING:
        raise RunDamaged(f"{path}: {name} is missing")
    if not kind.test(value):
        raise RunDamaged(f"{path}: {name} is {_shown(value)}, not {kind.what}")


def _shown(value: Any) -> str:
    """``value`` as a message echoes it (a long number cut, as ``errors.shown`` cuts text)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        text = shown(value)
        return f"a list {text}" if not text.endswith("...") else f"a list of {len(value):,}"
    return shown(value)


def read_series(out: Path, name: str, file: str, rows: int) -> list[dict[str, Any]]:
    """The ``rows`` rows of the run's series ``name``, which report.json says is in ``file``
    (relative to the run's directory ``out``): a regular file inside ``out`` (a name such as
    /etc/passwd or ../x, or a link that leads out of it, is refused, not opened), opened without
    blocking (a pipe would be waited on for ever, /dev/zero read for ever) and read from the
    descriptor checked; its size, and its Parquet footer's rows and their uncompressed bytes,
    are checked before it is read (``SERIES_ROWS``). Else ``RunDamaged`` naming the series and
    saying what the file is."""
    given = PurePosixPath(file)
    if given.is_absolute() or ".." in given.parts:
        raise RunDamaged(
            f"the run's series {name!r} is {shown(file)} in {out / 'report.json'}: not a file inside the "
            f"run's directory {out}"
        )
    path = out / file
    where = f"cannot read the run's series {name!r}, {path}"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise RunDamaged(f"{where}: it is missing") from None
    except OSError as exc:
        raise RunDamaged(f"{where}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise RunDamaged(f"{where}: it is {_what_file(path, info)}, not a regular file")
    target = path.resolve()
    if not target.is_relative_to(out.resolve()):
        raise RunDamaged(f"{where}: it is a link to {target}, outside the run's directory {out}")
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise RunDamaged(f"{where}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # (replaced since it was looked at)
            raise RunDamaged(f"{where}: it is {_what_file(path, info)}, not a regular file")
        most = SERIES_FILE_BYTES + rows * MAX_SERIES_ROW_BYTES
        if info.st_size > most:
            raise RunDamaged(f"{where}: it is {info.st_size:,} bytes, {_more(rows, most)}")
        os.set_blocking(fd, True)
        data = read_bounded(fd, info.st_size)  # (whole: pyarrow reading a Python file aborted at exit)
        # (one file, no pre-buffering, no threads: ``pq.read_table`` goes through pyarrow's
        # datasets, which start native threads even with ``use_threads=False``, and a process
        # refusing a later series after reading one aborted at exit now and then, "terminate
        # called without an active exception", a thread still joinable at exit)
        parquet = pq.ParquetFile(pa.BufferReader(data), pre_buffer=False)
        meta = parquet.metadata
        if meta.num_rows != rows:
            raise RunDamaged(f"{where}: it holds {meta.num_rows:,} rows, report.json says {rows:,}")
        unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if unpacked > most:
            raise RunDamaged(f"{where}: its rows are {unpacked:,} bytes uncompressed, {_more(rows, most)}")
        table: list[dict[str, Any]] = parquet.read(use_threads=False).to_pylist()
    except (OSError, ValueError, OverflowError, pa.ArrowException) as exc:  # (Overflow: a time past 9999)
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise RunDamaged(f"{where}: it is not a time series as the run wrote it ({reason})") from None
    finally:
        os.close(fd)
    return table


def _more(rows: int, most: int) -> str:
    return f"more than {rows:,} rows of a series take (at most {most:,})"


_FILE_KINDS: Final = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a pipe",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
    stat.S_IFSOCK: "a socket",
}


def _what_file(path: Path, info: os.stat_result) -> str:
    """What a file that is not a regular file is, as a message says it ("a pipe", "a link to
    /dev/zero, a device")."""
    kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "no regular file")
    return f"a link to {path.resolve()}, {kind}" if path.is_symlink() else kind


@dataclass
class Located:
    tx: Transaction
    height: int
    position: int


@dataclass
class RunResults:
    out: Path
    report: dict[str, Any]
    series: dict[str, list[dict[str, Any]]]
    chain: Chain
    txs: dict[Hash32, Located] = field(default_factory=dict)
    by_sender: dict[bytes, list[Hash32]] = field(default_factory=lambda: defaultdict(list))
    settlements: dict[bytes, list[Hash32]] = field(default_factory=lambda: defaultdict(list))
    """Contract id -> the SettleContract transactions that name it (its states on chain)."""
    kinds: Counter[str] = field(default_factory=Counter)

    @classmethod
    def open(cls, out: Path) -> RunResults:
        """The run written to ``out`` by ``gridnet simulate`` (or ``gridnet devnet --scenario``)."""
        report_path = out / "report.json"
        if not os.path.lexists(report_path):
            raise ConfigError(
                f"{out} holds no run: {report_path} is missing (run gridnet simulate --out {out})"
            )
        report = read_report(report_path)
        if not isinstance(report, dict) or not isinstance(report.get("schema_version", 1), int):
            raise ConfigError(f"{report_path} is not a run's report; run the scenario again")
        if "scenario" not in report:
            raise ConfigError(
                f"{report_path} is not a scenario's run (a ledger demo's?): the dashboard shows what "
                f"'gridnet simulate --out {out}' writes"
            )
        if report.get("schema_version", 1) < 2:
            raise ConfigError(f"{report_path} is from an older gridnet (no series): run the scenario again")
        check_report(report, report_path)
        tables = report["series"]["tables"]
        series = {
            name: read_series(out, name, tables[name]["file"], tables[name]["rows"])
            for name in SHOWN_SERIES
            if name in tables
        }
        chain_dir = out / "chain" if (out / "chain").is_dir() else out / "n0"
        if not chain_dir.is_dir():
            raise ConfigError(f"{out} holds no chain (chain/ or n0/): run the scenario again")
        results = cls(out, report, series, Chain.open(chain_dir, readonly=True))
        results._index()
        return results

    def _index(self) -> None:
        for height in range(1, self.chain.height + 1):
            block = self.chain.block_at(height)
            assert block is not None
            for position, tx in enumerate(block.txs):
                tid = tx_id(tx)
                self.txs[tid] = Located(tx, height, position)
                self.kinds[type(tx.payload).__name__] += 1
                if position:  # (the coinbase has no sender)
                    self.by_sender[address_from_public_key(tx.sender)].append(tid)
                if isinstance(tx.payload, SettleContract):
                    self.settlements[tx.payload.signed.state.contract].append(tid)

    def block(self, height: int) -> Block | None:
        return self.chain.block_at(height) if 0 <= height <= self.chain.height else None

    def sender_text(self, tx: Transaction) -> str:
        return address_to_text(address_from_public_key(tx.sender))

    def close(self) -> None:
        self.chain.close()
