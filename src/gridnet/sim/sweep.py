"""Sweeps: a grid of scenarios (scenario keys times seeds) run as Dask tasks (``gridnet sweep``).

A sweep file (TOML) names a base scenario, the scenario keys to vary and their values, the
seeds, and the figures of ``report.json`` to tabulate and plot::

    scenario = "../neighbourhood.toml"   # relative to this file; without it, the built-in defaults
    seeds = [1, 2]                       # or a count: seeds = 2 is [1, 2]
    figures = ["energy.p2p_wh", "clearing_price.mean_gnc_per_kwh"]
    plot = ["energy.p2p_wh"]             # figures drawn against each varied key

    [set]                                # every run: these keys take these values
    "simulation.intervals" = 32

    [vary]                               # the grid: every combination of these values
    "homes.pv_share" = [0.2, 0.5, 0.8]
    "homes.count" = [8, 16]

Everything is checked before anything runs: every run's Scenario is built (so checked) here,
and an error names the sweep file and the key. Each run has a stable id from what it runs
(the scenario values that differ from the built-in defaults), so a sweep resumes where it
stopped, also after its grid was extended, and writes its own directory ``OUT/runs/ID/``
(``gridnet simulate``'s output, ``scenario.toml`` and, last and atomically, ``run.json``).
A run whose ``run.json`` says it completed is not run again; a failed one is. The runs are
Dask tasks (:func:`run_one`: importable, plain data in and out) on a LocalCluster or on a
running scheduler; a failed run records its error and the others go on. At the end, and
when interrupted for what finished: ``OUT/sweep.parquet`` (a row per run) and
``OUT/plots/FIGURE--by--KEY.png``.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import difflib
import functools
import ipaddress
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from gridnet.crypto.hashing import sha256_hex
from gridnet.crypto.keys import CORES_ENV
from gridnet.errors import ECHO_CHARS, ConfigError, GridnetError, describe, shown
from gridnet.files import path_problem, read_toml, replace_file
from gridnet.ledger.lock import LOCK_NAME, DataDirLock, acquire
from gridnet.node.config import format_host_port
from gridnet.sim.output import refuse_inputs_inside, unwritable
from gridnet.sim.report import resolved_scenario
from gridnet.sim.scenario import Scenario, data_path, input_files, scenario_from_dict
from gridnet.system import usable_cores
from gridnet.units import is_decimal

if TYPE_CHECKING:
    from distributed import Client, Future

MARKER = ".gridnet-sweep"
"""Marks a directory a sweep wrote: it may be resumed (and its run directories replaced)."""
RUN_FILE = "run.json"
"""Written last in a run's directory, atomically: the run is complete when it says so."""
DONE: Final = ("ok", "unverified")
"""Statuses of a run that completed (one that failed, or has no such record, runs again)."""
TABLE = "sweep.parquet"
LOCAL = "127.0.0.1"
CONNECT_TIMEOUT_S = 10.0
"""How long ``--scheduler`` may take to answer."""
WORKERS_TIMEOUT_S = 30.0
"""How long a running scheduler may take to have a worker."""
WORKERS_PER_CORE: Final = 2
"""A local cluster has at most this many workers per core the sweep may use (a run keeps its
core busy: further workers only share the cores, each with its own memory)."""
SERIES_PER_PLOT = 6
"""At most this many lines per plot (one per combination of the other keys); beyond, one."""
KNOWN_KEYS = ("scenario", "seeds", "figures", "plot", "out", "name", "set", "vary")

DEFAULT_FIGURES = (
    "timing.simulation_s",
    "chain.height",
    "verify.transactions",
    "energy.p2p_wh",
    "energy.bought_from_dso_wh",
    "clearing_price.mean_gnc_per_kwh",
    "revenue_gnc.prosumers",
    "economy.homes_paid_gnc",
)
DEFAULT_PLOT = "energy.p2p_wh"

FIGURES: dict[str, str] = {
    "energy": "pv_wh load_wh battery_losses_wh exported_wh unsold_export_wh p2p_wh bought_from_dso_wh "
    "sold_to_dso_wh contracted_p2p_wh curtailed_wh contracts contracts_refused unpaid_wh "
    "paid_not_imported_wh imported_unsold_wh",
    "forecast": "error net_energy_abs_error_wh net_energy_abs_error_percent",
    "contracts": "opened settled_in_full delivered_short closed_with_remainder open_at_end "
    "remainder_refunded_gnc disputes_raised disputes_resolved imbalance.price_gnc_per_kwh "
    "imbalance.balancing_contracts imbalance.shortfall_wh imbalance.bought_wh imbalance.paid_gnc "
    "imbalance.closed",
    "clearing_price": "mean_gnc_per_kwh traded_weighted_gnc_per_kwh mean_per_mwh_in_currency",
    "revenue_gnc": "prosumers consumers line_owners dso government miners",
    "subsidies": "readings_subsidised paid_gnc",
    "security": "flagged_meters trusting_homes flags_on_chain",
    "dso": "commands homes_commanded overrides_recorded homes_following_commands",
    "chain": "height blocks bytes",
    "transactions": "abandoned resubmitted",
    "timing": "simulation_s verifying_s power_flow_s audit_s",
    "grid": "congested_intervals",
    "economy": "homes_paid_gnc homes_earned_gnc block_subsidy_gnc block_subsidy_per_block_gnc "
    "transaction_fees_gnc",
    "participants": "homes prosumers with_battery line_owners meters_registered",
    "verify": "ok blocks transactions seconds tx_per_s supply.height supply.created supply.allocated "
    "supply.rewarded supply.held_total supply.destroyed supply.unaccounted",
}
"""The numbers every ``report.json`` holds, by section (``tests/sim/test_sweep.py`` checks
them against a real report)."""
KNOWN_FIGURES = frozenset({"converged"} | {f"{s}.{k}" for s, keys in FIGURES.items() for k in keys.split()})
OPEN_FIGURES = (
    "roles.",
    "relay.",
    "chain.transactions_by_type.",
    "transactions.submitted.",
    "nodes.",
    "grid.line_owners.",
    "homes.",
    "scenario.resolved.",
    "verify.supply.held.",
)
"""Parts of the report whose keys depend on the scenario or on what happened (a role's
figures, the relays when enabled, a transaction type, a node, a feeder or a home by index):
any path under them is accepted, and a run whose report lacks it has none in the table. (The
coin a table holds, ``verify.supply.held.<table>``, depends on the tables the code has.)"""


Progress = Callable[[int, int], None]
"""Called with (runs done, runs in all): (0, n) before the first, then after each run (run,
or checked while the sweep file loads)."""


class SweepFileError(ConfigError):
    """A sweep file is missing or invalid, or one of its runs' scenarios is refused."""


class SchedulerUnavailable(GridnetError):
    """The Dask scheduler given with ``--scheduler`` does not answer, or has no workers."""


@dataclass(frozen=True)
class Run:
    """One point of the grid with one seed."""

    id: str
    """Stable: readable values, then a digest of every scenario value that differs from the
    built-in defaults (the same scenario has the same id in any sweep)."""
    values: dict[str, Any]
    """Each varied key's value, in the order of ``[vary]``."""
    seed: int
    document: dict[str, Any]
    """The scenario document it runs (base, ``[set]``, values, seed; its files' paths absolute)."""

    @property
    def label(self) -> str:
        return ", ".join([*(f"{k} = {_show(v)}" for k, v in self.values.items()), f"seed {self.seed}"])


@dataclass(frozen=True)
class Sweep:
    path: Path
    """The sweep file."""
    name: str
    scenario: Path | None
    """The base scenario file (None: the built-in defaults)."""
    fixed: dict[str, Any]
    """``[set]``: dotted scenario key -> value, in every run."""
    vary: dict[str, list[Any]]
    """``[vary]``: dotted scenario key -> its values."""
    seeds: tuple[int, ...]
    figures: tuple[str, ...]
    plot: tuple[str, ...]
    out: Path
    runs: tuple[Run, ...]

    def run_dir(self, run: Run) -> Path:
        return self.out / "runs" / run.id


@dataclass(frozen=True)
class RunResult:
    run: Run
    status: str
    """"ok"; "unverified" (it ran, but its nodes did not converge or its chain does not
    verify); "failed" (it raised: ``error`` says what)."""
    error: str | None
    wall_s: float | None
    """How long the task took [s]."""
    figures: dict[str, Any]
    resumed: bool
    """Completed by an earlier ``gridnet sweep`` (not run again)."""


@dataclass
class SweepResult:
    sweep: Sweep
    results: list[RunResult]
    """Every run that finished (now or earlier), in the grid's order."""
    pending: int
    """Runs not finished (the sweep was interrupted)."""
    interrupted: bool
    seconds: float
    table: Path
    plots: list[Path] = field(default_factory=list)
    plots_failed: list[str] = field(default_factory=list)
    """Each plot that could not be drawn, as one line: its file's name and why."""

    def count(self, status: str, resumed: bool | None = None) -> int:
        return sum(
            1 for r in self.results if r.status == status and (resumed is None or r.resumed == resumed)
        )

    def summary(self) -> dict[str, Any]:
        """What ``gridnet sweep --json`` prints."""
        ok = [r for r in self.results if r.status != "failed"]
        absent = [f for f in self.sweep.figures if ok and all(r.figures.get(f) is None for r in ok)]
        return {
            "sweep": self.sweep.name,
            "file": str(self.sweep.path),
            "out": str(self.sweep.out),
            "runs": len(self.sweep.runs),
            "ran": sum(1 for r in self.results if not r.resumed),
            "ok": self.count("ok"),
            "unverified": self.count("unverified"),
            "failed": self.count("failed"),
            "ran_now": {
                status: self.count(status, resumed=False) for status in ("ok", "unverified", "failed")
            },
            "resumed": sum(1 for r in self.results if r.resumed),
            "pending": self.pending,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 1),
            "table": str(self.table),
            "plots": [str(p) for p in self.plots],
            "plots_failed": self.plots_failed,
            "failures": [{"id": r.run.id, "error": r.error} for r in self.results if r.status == "failed"],
            "figures_in_no_run": absent,
        }


# --- the sweep file ----------------------------------------------------------------------


def load_sweep(path: Path, out: Path | None = None, progress: Progress | None = None) -> Sweep:
    """The sweep in ``path``, every run's scenario built and checked; ``out`` replaces the
    file's ``out`` (default ``out/NAME``); ``progress`` is told (runs checked, runs in the
    grid) as they are (10,000 take seconds)."""
    return sweep_from_dict(read_toml(path, "sweep file", SweepFileError), path, out, progress)


def sweep_from_dict(
    doc: dict[str, Any], path: Path, out: Path | None = None, progress: Progress | None = None
) -> Sweep:
    where = str(path)
    unknown = sorted(set(doc) - set(KNOWN_KEYS))
    if unknown:
        named = "[" + ", ".join(map(shown, unknown)) + "]"
        raise SweepFileError(f"{where}: unknown key(s) {named}; known: {sorted(KNOWN_KEYS)}")
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise SweepFileError(f"{where}: name must be 1 to 64 letters, digits, '.', '_' or '-' (a directory)")
    if out is None:
        given = doc.get("out")
        if given is not None and (not isinstance(given, str) or not given):
            raise SweepFileError(f"{where}: out must be a directory (relative to the sweep file)")
        out = _file_path(given, path.parent, f"{where}: out") if given else Path("out") / name
    base_path, base = _base_scenario(doc.get("scenario"), path)
    base_label = str(base_path) if base_path is not None else "defaults"
    here = path.parent.resolve()
    fixed = _dotted(doc.get("set", {}), f"{where}: [set]", leaf_lists=False)
    vary = _dotted(doc.get("vary", {}), f"{where}: [vary]", leaf_lists=True)
    # Counted before any value is looked at: a grid too large is refused at once.
    count = math.prod(len(values) for values in vary.values()) * _seed_count(doc.get("seeds"))
    if count > MAX_RUNS:
        raise SweepFileError(
            f"{where}: the grid has {count:,} runs (the [vary] values times the seeds); at most "
            f"{MAX_RUNS:,}: split it into several sweeps"
        )
    for key, value in fixed.items():
        _refuse_dates(value, f"{where}: [set]", key)
    for key, values in vary.items():
        for value in values:
            _refuse_dates(value, f"{where}: [vary]", key)
    fixed = _sweep_paths(fixed, here, False, f"{where}: [set]")
    vary = _sweep_paths(vary, here, True, f"{where}: [vary]")
    if not vary:
        raise SweepFileError(
            f'{where}: [vary] is empty: give at least one key, e.g. "homes.count" = [10, 20]'
        )
    for key in (*fixed, *vary):
        if key == "simulation.seed":
            raise SweepFileError(f"{where}: simulation.seed: give the seeds with seeds = [1, 2] (or a count)")
    for key, values in vary.items():
        _check_values(key, values, where)
    both = sorted(set(fixed) & set(vary))
    if both:
        raise SweepFileError(f"{where}: {both[0]} is in both [set] and [vary]; keep it in one")

    document = _with(base, fixed, where, "[set]")
    # Each key of the base and [set] known, of its type and in its range, now; what they say
    # together is checked in each run, with its [vary] values ([set] weather.sky = "file" takes
    # the weather file a run varies).
    alone = _build(document, base_label, f"{where}: [set]", check=False)
    seeds = _seeds(doc.get("seeds"), alone.simulation.seed, where)
    figures, plot = _figures(doc.get("figures"), doc.get("plot"), where)
    clash = next((f for f in figures if f in vary), None)
    if clash is not None:
        raise SweepFileError(f"{where}: figures: {clash} is a varied key (the table has it already)")
    base_dir = base_path.parent.resolve() if base_path is not None else None

    runs: list[Run] = []
    seen: dict[str, Run] = {}
    digests: dict[Path, str] = {}  # (each file the runs read, hashed once)
    if progress is not None:
        progress(0, count)
    for combination in itertools.product(*vary.values()):
        values = dict(zip(vary, combination, strict=True))
        for seed in seeds:
            run_doc = _with(document, {**values, "simulation.seed": seed}, where, "[vary]")
            label = ", ".join([*(f"{k} = {_show(v)}" for k, v in values.items()), f"seed {seed}"])
            try:
                scenario = scenario_from_dict(run_doc, base_label)
            except ConfigError as exc:
                _refuse_alone(document, values, base_label, where, str(exc))  # ([set] or a key, if the cause)
                raise SweepFileError(f"{where}: [vary] the run with {label}: {exc}") from None
            run = Run(_run_id(scenario, values, seed, digests), values, seed, _portable(run_doc, base_dir))
            if run.id in seen:
                raise SweepFileError(
                    f"{where}: [vary] the runs with {seen[run.id].label} and {label} are the same scenario; "
                    "list each value once"
                )
            seen[run.id] = run
            runs.append(run)
            if progress is not None:
                progress(len(runs), count)
    return Sweep(path, name, base_path, fixed, vary, seeds, figures, plot, out, tuple(runs))


def _refuse_alone(
    document: dict[str, Any], values: dict[str, Any], source: str, where: str, problem: str
) -> None:
    """``SweepFileError`` naming the cause of a refused run's ``problem`` when it is ``[set]``
    (the base and ``[set]`` alone are refused for it) or one of its values (the base and
    ``[set]`` with that value alone are); nothing when the run's values together are (its own
    line says so). Each run's scenario is built once: building every value alone first too
    doubled the time a large grid took to load; and a part refused for another reason than the
    run's (``[set] "weather.sky" = "file"`` without the weather file a run varies) is not
    blamed for it."""
    if _problem(document, source) == problem:
        raise SweepFileError(f"{where}: [set]: {problem}")
    for key, value in values.items():
        if _problem(_with(document, {key: value}, where, "[vary]"), source) == problem:
            raise SweepFileError(f"{where}: [vary] {key} = {_echo(value)}: {problem}")


def _problem(document: dict[str, Any], source: str) -> str | None:
    """Why ``document`` is refused as a run's scenario (None: it is not)."""
    try:
        scenario_from_dict(document, source)
    except ConfigError as exc:
        return str(exc)
    return None


def _base_scenario(value: Any, path: Path) -> tuple[Path | None, dict[str, Any]]:
    if value is None:
        return None, {}
    if not isinstance(value, str) or not value:
        raise SweepFileError(f"{path}: scenario must be a scenario file's path, relative to the sweep file")
    base = Path(os.path.normpath(_file_path(value, path.parent, f"{path}: scenario")))
    try:
        found = base.is_file()
    except OSError as exc:  # (a name too long for the file system, say)
        raise SweepFileError(f"{path}: scenario {shown(value)}: {exc.strerror}") from None
    if not found:
        raise SweepFileError(
            f"{path}: scenario {shown(value)}: no file {shown(str(base))} "
            "(the path is relative to the sweep file)"
        )
    document = read_toml(base, f"{path}: scenario file", SweepFileError)
    _refuse_dates(document, f"{path}: scenario file {base}:", "")
    return base, document


def _file_path(value: str, here: Path, where: str) -> Path:
    """The path a path-valued key of the sweep file gives (``where`` names the key), relative
    to ``here``; a ``SweepFileError`` for one that no file can have, at once (``path_problem``)."""
    full = here / value
    problem = path_problem(full)
    if problem is None:
        return full
    raise SweepFileError(f"{where} {shown(value)} is not a file's path: {problem}")


def _refuse_dates(value: Any, where: str, key: str) -> None:
    """``SweepFileError`` naming ``key`` (dotted; ``[i]`` an array's item) when ``value`` is or
    holds a TOML date or time: a scenario takes its dates as strings, and the sweep copies and
    compares its values as JSON (which has no dates)."""
    if isinstance(value, dt.date | dt.time):
        kind = "date-time" if isinstance(value, dt.datetime) else type(value).__name__
        raise SweepFileError(
            f"{where} {key} is a TOML {kind}; a scenario takes dates and times as strings: put it in "
            f'quotes ("{value.isoformat()}")'
        )
    if isinstance(value, dict):
        for k, v in value.items():
            _refuse_dates(v, where, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_dates(v, where, f"{key}[{i}]")


def _dotted(table: Any, where: str, *, leaf_lists: bool) -> dict[str, Any]:
    """A table's leaves by dotted key: ``"homes.count" = ...`` and ``homes.count = ...`` (a
    nested table) alike. In ``[vary]`` every leaf is a list of values."""
    if not isinstance(table, dict):
        raise SweepFileError(f"{where} must be a table of dotted scenario keys")
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
            return
        if leaf_lists and not isinstance(value, list):
            raise SweepFileError(f"{where} {prefix} must be a list of values, e.g. [10, 20]")
        if prefix in out:
            raise SweepFileError(f"{where} {prefix} is given twice")
        out[prefix] = value

    for key, value in table.items():
        walk(key, value)
    return out


def _sweep_paths(values: dict[str, Any], here: Path, lists: bool, where: str) -> dict[str, Any]:
    """``values`` with the files they name (a home's policy, the weather file: relative to the
    sweep file, as the sweep's other paths) made absolute, however the key is written
    (``"policies.home-0"``, or a whole ``policies`` or ``weather`` table as a value), each
    checked as a path (``_file_path``); a base scenario's own files stay relative to it."""

    def path(key: str, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value  # (the scenario's check says what it should be)
        return os.path.normpath(_file_path(value, here, f"{where} {key}"))

    def files(key: str, value: Any) -> Any:
        if key.startswith("policies.") or key == "weather.weather_file":
            return path(key, value)
        if key == "policies" and isinstance(value, dict):
            return {home: path(f"policies.{home}", v) for home, v in value.items()}
        if key == "weather" and isinstance(value, dict) and "weather_file" in value:
            return {**value, "weather_file": path("weather.weather_file", value["weather_file"])}
        return value

    return {k: [files(k, x) for x in v] if lists else files(k, v) for k, v in values.items()}


def _check_values(key: str, values: list[Any], where: str) -> None:
    if not values:
        raise SweepFileError(f"{where}: [vary] {key} has no values; give at least one, e.g. [10, 20]")
    as_json = [json.dumps(v, sort_keys=True) for v in values]  # (hashable, the same for equal values)
    times = collections.Counter(as_json)
    repeated = next((v for v, n in zip(values, as_json, strict=True) if times[n] > 1), None)
    if repeated is not None:
        raise SweepFileError(f"{where}: [vary] {key} lists {_echo(repeated)} more than once")


def _with(document: dict[str, Any], values: dict[str, Any], where: str, table: str) -> dict[str, Any]:
    """A copy of ``document`` with each dotted key set to its value."""
    out: dict[str, Any] = json.loads(json.dumps(document))
    for key, value in values.items():
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                above = ".".join(parts[: i + 1])
                raise SweepFileError(f"{where}: {table} {key}: {above} is not a table; set {above} whole")
        node[parts[-1]] = value
    return out


def _build(document: dict[str, Any], source: str, where: str, *, check: bool = True) -> Scenario:
    try:
        return scenario_from_dict(document, source, check=check)
    except ConfigError as exc:
        raise SweepFileError(f"{where}: {exc}") from None


MAX_SEEDS: Final = 10_000
MAX_RUNS: Final = 10_000
"""Runs in one sweep, at most (counted before any is built)."""


def _seed_count(value: Any) -> int:
    """How many seeds ``seeds`` gives (1 when it is no count or list of them within the bound:
    ``_seeds`` says why)."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SEEDS:
        return value
    return len(value) if isinstance(value, list) and 1 <= len(value) <= MAX_SEEDS else 1


"""Seeds a sweep runs each point of its grid with, at most."""


def _seeds(value: Any, default: int, where: str) -> tuple[int, ...]:
    if value is None:
        return (default,)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SEEDS:
        return tuple(range(1, value + 1))
    ok = (
        isinstance(value, list)
        and 1 <= len(value) <= MAX_SEEDS
        and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in value)
    )
    if not ok or len(set(value)) != len(value):
        raise SweepFileError(
            f"{where}: seeds must be a list of distinct integers from 0 to 2**63 - 1 (e.g. [1, 2]) or a "
            f"count (e.g. 3), at most {MAX_SEEDS:,} of them"
        )
    return tuple(value)


def _figures(figures: Any, plot: Any, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``figures`` and ``plot`` checked (each a list of known report paths; ``plot`` may be
    one path) before either is used; the default plot is the default figure, else the first."""
    tabled = list(DEFAULT_FIGURES) if figures is None else _figure_paths(figures, "figures", where)
    if plot is None:
        drawn = [DEFAULT_PLOT if DEFAULT_PLOT in tabled else tabled[0]]
    else:
        drawn = _figure_paths([plot] if isinstance(plot, str) else plot, "plot", where)
    listed = list(dict.fromkeys([*tabled, *drawn]))  # a plotted figure is in the table too
    return tuple(listed), tuple(dict.fromkeys(drawn))


def _figure_paths(paths: Any, key: str, where: str) -> list[str]:
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise SweepFileError(f'{where}: {key} must be a list of report.json paths, e.g. ["energy.p2p_wh"]')
    for p in paths:
        _check_figure(p, f"{where}: {key}")
    return paths


def _check_figure(path: str, where: str) -> None:
    if path in KNOWN_FIGURES or path.startswith(OPEN_FIGURES):
        return
    close = difflib.get_close_matches(path, sorted(KNOWN_FIGURES), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    section = path.split(".")[0]
    known = (
        f"known in {section}: {', '.join(FIGURES[section].split())}"
        if section in FIGURES
        else f"known sections: {', '.join(FIGURES)}, converged; or a path under {', '.join(OPEN_FIGURES)}"
    )
    raise SweepFileError(f"{where}: {shown(path)} is no figure of report.json; {hint}{known}")


def _portable(document: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """``document`` with the files it names (policies, a weather file) as absolute paths, so
    that it runs the same from any directory (its ``scenario.toml`` too)."""
    if base_dir is None:
        return document
    out: dict[str, Any] = json.loads(json.dumps(document))
    policies = out.get("policies")
    if isinstance(policies, dict):
        out["policies"] = {k: str(base_dir / v) for k, v in policies.items()}
    weather = out.get("weather")
    if isinstance(weather, dict) and weather.get("weather_file"):
        weather["weather_file"] = str(base_dir / weather["weather_file"])
    return out


@functools.cache
def _defaults() -> dict[str, Any]:
    return _flat(resolved_scenario(scenario_from_dict({}, "defaults")))


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _file_digests(scenario: Scenario, digests: dict[Path, str]) -> dict[str, str]:
    """The SHA-256 of each file ``scenario`` reads (its policies, its weather file), by key;
    "unreadable" for one that cannot be read (its run fails, and runs again once it can).
    ``digests``: the files hashed already (by path), added to."""
    named = {f"policies.{home}": name for home, name in scenario.policies.items()}
    if scenario.weather.sky == "file":
        named["weather.weather_file"] = scenario.weather.weather_file
    out: dict[str, str] = {}
    for key, name in sorted(named.items()):
        path = data_path(scenario.source, name)
        if path not in digests:
            try:
                digests[path] = sha256_hex(path.read_bytes())
            except OSError:
                digests[path] = "unreadable"
        out[key] = digests[path]
    return out


def _run_id(scenario: Scenario, values: dict[str, Any], seed: int, digests: dict[Path, str]) -> str:
    """Readable values, then a digest of every value that differs from the defaults and of
    the contents of the files the scenario reads: the same scenario (however it was written)
    has the same id, and one whose policy or weather file was edited has another."""
    defaults = _defaults()
    own = {k: v for k, v in _flat(resolved_scenario(scenario)).items() if defaults.get(k, ...) != v}
    files = _file_digests(scenario, digests)
    if files:  # (absent otherwise: the ids of sweeps that read no file stay as they were)
        own["files"] = files
    digest = sha256_hex(json.dumps(own, sort_keys=True, default=list).encode())[:10]
    words = [  # (by key: the same runs whatever order [vary] lists its keys in)
        f"{k.rsplit('.', 1)[-1]}={v if isinstance(v, str) else _show(v)}" for k, v in sorted(values.items())
    ]
    words.append(f"seed={seed}")
    readable = re.sub(r"[^A-Za-z0-9.=_-]+", "-", "_".join(words))[:80].strip("-")
    return f"{readable}-{digest}"


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | list | dict | bool) else str(value)


def _echo(value: Any) -> str:
    """``_show``, cut to ``ECHO_CHARS`` characters for a message (a 10,000-character value in
    the sweep file keeps it one short line)."""
    text = _show(value)
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 3] + "..."


# --- one run (a Dask task) ---------------------------------------------------------------

_ONE_AT_A_TIME = threading.Lock()
"""A worker with several threads still runs one simulation at a time (pyplot and the
simulator's caches are per process)."""


def run_one(
    run_id: str, document: dict[str, Any], run_dir: str, figures: list[str], header: str
) -> dict[str, Any]:
    """Run one scenario into ``run_dir`` (``gridnet simulate``'s output), then write its
    ``scenario.toml`` and, last and atomically, ``run.json``; return its status, error and
    ``figures``. A Dask task: plain data in and out, on whichever worker the scheduler picks.
    An error is recorded (one line here, the traceback in ``error.txt``), never raised."""
    from gridnet.sim.neighbourhood import simulate

    out = Path(run_dir)
    source = str(out / "scenario.toml")
    with _ONE_AT_A_TIME:
        if out.exists():
            shutil.rmtree(out)  # an earlier try that did not complete
        started = time.perf_counter()
        status, error, found = "failed", None, {}
        try:
            scenario = scenario_from_dict(document, source)
            # (its scenario.toml is what this run writes, not a file it reads)
            report = simulate(scenario, out, reads=input_files(scenario, own=False))
            status = "ok" if report["converged"] and report["verify"]["ok"] else "unverified"
            found = {f: figure_value(report, f) for f in figures}
        except Exception as exc:  # recorded in the table; the other runs go on
            error = describe(exc)
            out.mkdir(parents=True, exist_ok=True)
            (out / "error.txt").write_text(traceback.format_exc())
        wall_s = round(time.perf_counter() - started, 3)
        (out / "scenario.toml").write_text(scenario_toml(document, header), encoding="utf-8")
        record = {"id": run_id, "status": status, "error": error, "wall_s": wall_s}
        replace_file(out / RUN_FILE, f"{json.dumps(record, indent=2)}\n".encode())
    return {**record, "figures": found}


def figure_value(report: dict[str, Any], path: str) -> Any:
    """The number at ``path`` (dotted; a digit indexes a list) in a report; None where the
    report has none (or no single value there)."""
    node: Any = report
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and is_decimal(part) and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node if isinstance(node, bool | int | float | str) else None


def scenario_toml(document: dict[str, Any], header: str = "") -> str:
    """A scenario document (tables of values, ``line_owner`` an array of tables) as TOML that
    ``gridnet simulate`` reads back to the same scenario (``tomllib.loads`` gives ``document``
    again), ``header`` as comments above it. UTF-8: write it as such."""
    lines = [f"# {_toml_comment(line)}".rstrip() for line in header.splitlines()]
    for name, section in document.items():
        entries = section if isinstance(section, list) else [section]
        for entry in entries:
            if not isinstance(entry, dict):  # (a built scenario has only tables)
                raise TypeError(f"scenario section {name!r} is not a table")
            lines += ["", f"[[{_toml_key(name)}]]" if isinstance(section, list) else f"[{_toml_key(name)}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


_TOML_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string: a quote, a backslash and every control character
    escaped (what TOML requires), every other character as itself (JSON's escapes wrote one
    outside the BMP, an emoji, as a surrogate pair, which TOML refuses)."""
    return (
        '"' + "".join(_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if _control(c) else c) for c in text) + '"'
    )


def _control(c: str) -> bool:
    """A control character, which TOML takes in neither a string nor a comment (a tab only)."""
    return c < " " or c == "\x7f"


def _toml_comment(text: str) -> str:
    """``text`` in a TOML comment: each control character but a tab as its escape, as text."""
    return "".join(f"\\x{ord(c):02x}" if _control(c) and c != "\t" else c for c in text)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else f"{value:+}")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


# --- the cluster --------------------------------------------------------------------------


class _SyncCancelFailure(logging.Filter):
    """distributed's ``sync`` (2026.8) cancels the call it waits for when Ctrl-C (or SIGTERM,
    gridnet.interrupts) interrupts the wait, with a callback that fails (NameError) when the
    call has not started yet; tornado logs that failure with its traceback. It changes nothing
    (the call is abandoned either way), so the record is dropped: an interrupted sweep says one
    line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, NameError) and "sync.<locals>.cancel" in record.getMessage())


def quiet_dask_interrupts() -> None:
    """Drop tornado's record of that failure (once per process)."""
    log = logging.getLogger("tornado.application")
    if not any(isinstance(f, _SyncCancelFailure) for f in log.filters):
        log.addFilter(_SyncCancelFailure())


def most_workers() -> int:
    """The most workers a local cluster may have: ``WORKERS_PER_CORE`` per core this process
    may use."""
    return WORKERS_PER_CORE * usable_cores()


def check_workers(workers: int) -> None:
    """``ValueError`` unless a local cluster may have ``workers`` workers."""
    most = most_workers()
    if not 1 <= workers <= most:
        raise ValueError(
            f"{workers} workers: a local cluster has 1 to {most} ({WORKERS_PER_CORE} for each of the "
            f"{usable_cores()} core(s) this process may use); leave --workers out for one per core"
        )


def scheduler_address(text: str) -> str:
    """A Dask scheduler's address, ``tcp://HOST:PORT`` (or ``HOST:PORT``), in its one form;
    ``ValueError`` for anything else (checked before a sweep does anything, whether or not it
    has runs left for the scheduler)."""
    try:
        parts = urlsplit(text if "://" in text else f"tcp://{text}")
        scheme, host, port = parts.scheme, parts.hostname, parts.port
        rest = parts.path or parts.query or parts.fragment or parts.username or parts.password
    except ValueError:  # (a port that is not a number or is out of range, an unclosed bracket)
        scheme, host, port, rest = "", None, None, None
    if scheme != "tcp" or host is None or not _is_host(host) or not port or rest:
        raise ValueError(
            f"{shown(text)} is no scheduler address: give tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786"
        )
    return f"tcp://{format_host_port(host, port)}"


def _is_host(host: str) -> bool:
    """An IP address or a host name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return re.fullmatch(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?", host) is not None
    return True


@contextlib.contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Client]:
    """A Dask client: on a LocalCluster of ``workers`` processes (default: one per core, one
    thread each) on 127.0.0.1, closed at the end; or on the running scheduler at
    ``scheduler`` (``tcp://HOST:PORT``). ``ValueError`` for more workers than
    ``most_workers()`` or an address of another form, before anything starts."""
    from distributed import Client, LocalCluster

    if workers is not None:
        check_workers(workers)
    if scheduler is not None:
        scheduler = scheduler_address(scheduler)
    quiet_dask_interrupts()

    if scheduler is None:
        with _ctrl_c_ignored():  # by the worker processes: it stops the sweep, which stops them
            n_workers = workers or usable_cores()
            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                # Each run checks its signatures on its share of the cores (crypto/checkers.py).
                env={CORES_ENV: str(max(1, usable_cores() // n_workers))},
                host=LOCAL,
                dashboard_address=f"{LOCAL}:0",
                silence_logs=logging.ERROR,
            )
        with cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
            yield client
        return
    _check_reachable(scheduler)
    try:
        _probe(scheduler)  # (a Client waits without end on a server that accepts but never answers)
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as exc:
        raise SchedulerUnavailable(
            f"no Dask scheduler answers at {scheduler} ({' '.join(str(exc).split())}): start one with "
            "'dask scheduler' (and workers with 'dask worker tcp://HOST:8786'), or leave out --scheduler "
            "to run on this machine"
        ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except TimeoutError:
            raise SchedulerUnavailable(
                f"the Dask scheduler at {scheduler} has no worker after {WORKERS_TIMEOUT_S:.0f} s: "
                f"start one with 'dask worker {scheduler} --nthreads 1'"
            ) from None
        yield client


def _check_reachable(scheduler: str) -> None:
    """``SchedulerUnavailable`` at once when nothing listens at ``scheduler`` (a refused
    connection: Dask's client tries again until its timeout, then says "Timed out") or its
    host has no address; a connection that does not open within ``CONNECT_TIMEOUT_S`` is
    a timeout, said as Dask says it."""
    import socket

    parts = urlsplit(scheduler)
    host, port = parts.hostname, parts.port
    assert host is not None and port is not None  # (scheduler_address made sure)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except ConnectionRefusedError:
        raise SchedulerUnavailable(
            f"no Dask scheduler at {scheduler}: connection refused (nothing listens on port {port} there): "
            "start one with 'dask scheduler' (and workers with 'dask worker tcp://HOST:8786'), check the "
            "address, or leave out --scheduler to run on this machine"
        ) from None
    except socket.gaierror as exc:
        raise SchedulerUnavailable(
            f"no Dask scheduler at {scheduler}: the host {host} has no address ({exc.strerror}): check "
            "the address, or leave out --scheduler to run on this machine"
        ) from None
    except TimeoutError:
        raise SchedulerUnavailable(
            f"no Dask scheduler answers at {scheduler} (Timed out trying to connect to {scheduler} after "
            f"{CONNECT_TIMEOUT_S:.0f} s): start one with 'dask scheduler' (and workers with 'dask worker "
            "tcp://HOST:8786'), or leave out --scheduler to run on this machine"
        ) from None
    except OSError:
        return  # (unreachable network and the like: the probe says it as Dask does)


def _probe(scheduler: str) -> None:
    """Ask the Dask scheduler at ``scheduler`` who it is, within ``CONNECT_TIMEOUT_S``; an
    ``OSError`` (a ``TimeoutError`` when nothing answers, or something that is no Dask
    scheduler) or a ``ValueError`` (no address) if it does not answer."""
    import asyncio
    import concurrent.futures

    from distributed.core import rpc

    async def identity() -> object:
        remote = rpc(scheduler, timeout=CONNECT_TIMEOUT_S)  # type: ignore[no-untyped-call]
        try:
            return await remote.identity()
        finally:
            await remote.close_rpc()  # type: ignore[no-untyped-call]

    try:
        # On a thread of its own: its own event loop, even where one runs already (a notebook).
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            who = pool.submit(asyncio.run, asyncio.wait_for(identity(), CONNECT_TIMEOUT_S)).result()
    except TimeoutError as exc:
        raise TimeoutError(str(exc) or f"no answer within {CONNECT_TIMEOUT_S:.0f} s") from None
    except (OSError, ValueError):
        raise
    except Exception as exc:  # what a server that is no Dask scheduler says, however it says it
        raise OSError(f"{type(exc).__name__}: {exc}") from None
    kind = who.get("type") if isinstance(who, dict) else None
    if kind != "Scheduler":
        raise OSError(f"it is {'a Dask ' + str(kind) if kind else 'no Dask scheduler'}")


@contextlib.contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    """Processes started meanwhile ignore SIGINT (a terminal's Ctrl-C goes to all of them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# --- the sweep ------------------------------------------------------------------------------


def sweep_inputs(sweep: Sweep) -> list[tuple[str, Path]]:
    """The files a sweep reads, each with what it is: the sweep file, its base scenario and
    every file a run names (its policies, its weather file: absolute in each run's document)."""
    files = [("the sweep file", sweep.path)]
    if sweep.scenario is not None:
        files.append(("the base scenario", sweep.scenario))
    named: dict[str, str] = {}
    for run in sweep.runs:
        policies = run.document.get("policies")
        for home, name in policies.items() if isinstance(policies, dict) else ():
            named.setdefault(str(name), f"[policies] {home}'s file")
        weather = run.document.get("weather")
        if isinstance(weather, dict) and weather.get("weather_file"):
            named.setdefault(str(weather["weather_file"]), "[weather] weather_file")
    return files + [(what, Path(name)) for name, what in named.items()]


def prepare_sweep_dir(sweep: Sweep) -> DataDirLock:
    """Create ``sweep.out`` or check that a sweep wrote it (then it resumes), and lock it as a
    data directory is (``DataDirLocked`` while another sweep runs there: the two would run
    the same runs into the same directories); the caller holds the lock to the end."""
    out = sweep.out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; choose a directory for the sweep")
    refuse_inputs_inside(out, sweep_inputs(sweep), "sweep")
    if out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()) and not (out / MARKER).exists():
        raise ConfigError(f"{out} is not empty and was not written by 'gridnet sweep'; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(out, exc) from None
    lock = acquire(out, "output directory")
    try:
        (out / "runs").mkdir(exist_ok=True)
        (out / MARKER).write_text("written by gridnet sweep; it resumes from the runs/ it finds\n")
        shutil.copyfile(sweep.path, out / "sweep.toml")
    except BaseException as exc:
        lock.release()
        if isinstance(exc, OSError):
            raise unwritable(out, exc) from None
        raise
    return lock


def completed(sweep: Sweep, run: Run, damaged: Callable[[str], None] | None = None) -> RunResult | None:
    """The run's result when an earlier sweep completed it (its ``run.json`` says so and the
    files its report names are there and readable), else None; ``damaged`` is told, in one
    line, of a run recorded complete whose files are not (it runs again)."""
    run_dir = sweep.run_dir(run)
    try:
        record = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("id") != run.id or record.get("status") not in DONE:
        return None  # (failed, or a record no sweep wrote whole: run again)
    wall = record.get("wall_s")
    if not isinstance(wall, (int, float)) or isinstance(wall, bool):
        return None
    if not (isinstance(wall, int) or math.isfinite(wall)) or not 0 <= wall < 2**53:  # (an int of 400
        return None  # digits converts to no float)
    report, problem = _check_run_files(run_dir)
    if problem is not None:
        if damaged is not None:
            damaged(f"{run_dir}: recorded complete, but {problem}: it runs again")
        return None
    figures = {f: figure_value(report, f) for f in sweep.figures}
    return RunResult(run, str(record["status"]), None, float(wall), figures, resumed=True)


SQLITE_MAGIC: Final = b"SQLite format 3\x00"
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"


def _check_run_files(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """A completed run's report and what is wrong with the files a complete run holds (None:
    nothing): ``report.json`` (JSON), each series table it names (its Parquet metadata read,
    its rows as many as the report says), each plot (a PNG) and the chain (an SQLite file).
    Cheap: no table or chain is read whole (a run cut short by a full disk or a killed worker
    left a truncated Parquet file, and the dashboard failed on it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        report = json.loads((run_dir / "report.json").read_text())
    except (OSError, ValueError) as exc:
        return {}, f"its report.json cannot be read ({_reason(exc)})"
    if not isinstance(report, dict):
        return {}, "its report.json is no report"
    tables = report.get("series", {}).get("tables") if isinstance(report.get("series"), dict) else None
    if not isinstance(tables, dict) or not tables:
        return report, "its report.json names no series tables"
    for entry in tables.values():
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            return report, "its report.json names a series table without its file"
        try:
            rows = pq.read_metadata(run_dir / name).num_rows
        except (OSError, pa.ArrowException) as exc:
            return report, f"its {name} cannot be read ({_reason(exc)})"
        if rows != entry.get("rows"):
            return report, f"its {name} holds {rows} rows, its report says {entry.get('rows')}"
    plots = report.get("plots", [])
    for name in plots if isinstance(plots, list) else []:
        if isinstance(name, str) and _head(run_dir / name, len(PNG_MAGIC)) != PNG_MAGIC:
            return report, f"its {name} is missing or no PNG image"
    if _head(run_dir / "chain" / "chain.sqlite", len(SQLITE_MAGIC)) != SQLITE_MAGIC:
        return report, "its chain/chain.sqlite is missing or no SQLite database"
    return report, None


def _head(path: Path, n: int) -> bytes:
    """The first ``n`` bytes of ``path`` (empty when it cannot be read)."""
    try:
        with path.open("rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "it is missing"
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split())[:200] or type(exc).__name__


def run_sweep(
    sweep: Sweep,
    connect: Callable[[], AbstractContextManager[Client]],
    progress: Progress | None = None,
    damaged: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every run of ``sweep`` not completed before, as Dask tasks on the client that
    ``connect()`` opens (only when there is something to run), then write the table and the
    plots. Ctrl-C stops it: the table and plots then hold what finished. ``damaged`` is told
    of each run recorded complete whose files are not (it runs again), one line each."""
    started = time.perf_counter()
    lock = prepare_sweep_dir(sweep)
    try:
        return _run_sweep(sweep, connect, progress, damaged, started)
    finally:
        lock.release()


def _run_sweep(
    sweep: Sweep,
    connect: Callable[[], AbstractContextManager[Client]],
    progress: Progress | None,
    damaged: Callable[[str], None] | None,
    started: float,
) -> SweepResult:
    done: dict[str, RunResult] = {}
    for run in sweep.runs:
        earlier = completed(sweep, run, damaged)
        if earlier is not None:
            done[run.id] = earlier
    todo = [run for run in sweep.runs if run.id not in done]
    if progress is not None:
        progress(0, len(todo))
    interrupted = False
    if todo:
        try:
            with connect() as client:
                _run_on(client, sweep, todo, done, progress)
        except KeyboardInterrupt:
            interrupted = True
            for run in todo:  # what a worker completed before the sweep heard of it
                finished = None if run.id in done else completed(sweep, run)
                if finished is not None:
                    done[run.id] = replace(finished, resumed=False)
    results = [done[run.id] for run in sweep.runs if run.id in done]
    table = write_table(sweep, results)
    plots, plots_failed = write_plots(sweep, results)
    pending = len(sweep.runs) - len(results)
    seconds = time.perf_counter() - started
    return SweepResult(sweep, results, pending, interrupted, seconds, table, plots, plots_failed)


def _run_on(
    client: Client, sweep: Sweep, todo: list[Run], done: dict[str, RunResult], progress: Progress | None
) -> None:
    from distributed import as_completed

    base = str(sweep.scenario) if sweep.scenario is not None else "the built-in defaults"
    futures: dict[Future[dict[str, Any]], Run] = {}
    for run in todo:
        header = (
            f"Run {run.id} of sweep {sweep.name} ({sweep.path}):\n{base} with {run.label}.\n"
            f"Run it again: gridnet simulate {sweep.run_dir(run) / 'scenario.toml'} --out DIR"
        )
        future = client.submit(
            run_one,
            run.id,
            run.document,
            str(sweep.run_dir(run).resolve()),
            list(sweep.figures),
            header,
            pure=False,
        )
        futures[future] = run
    finished = 0
    try:
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            run = futures[future]
            try:
                got = future.result()
                result = RunResult(run, got["status"], got["error"], got["wall_s"], got["figures"], False)
            except Exception as exc:  # the worker died, or lost the task: recorded, the others go on
                result = RunResult(run, "failed", describe(exc), None, {}, resumed=False)
            done[run.id] = result
            finished += 1
            if progress is not None:
                progress(finished, len(todo))
    except BaseException:
        client.cancel([f for f, run in futures.items() if run.id not in done])  # type: ignore[no-untyped-call]
        raise


# --- the table and the plots ----------------------------------------------------------------


def write_table(sweep: Sweep, results: list[RunResult]) -> Path:
    """``OUT/sweep.parquet``: a row per finished run (run_id, each varied key, seed, status,
    resumed, wall_s, error, each figure); the sweep's description in its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list[Any]] = {"run_id": [r.run.id for r in results]}
    for key in sweep.vary:
        columns[key] = [r.run.values[key] for r in results]
    columns["seed"] = [r.run.seed for r in results]
    columns["status"] = [r.status for r in results]
    columns["resumed"] = [r.resumed for r in results]
    columns["wall_s"] = [r.wall_s for r in results]
    columns["error"] = [r.error for r in results]
    for f in sweep.figures:
        columns[f] = [r.figures.get(f) for r in results]
    about = {
        "name": sweep.name,
        "file": str(sweep.path),
        "scenario": str(sweep.scenario) if sweep.scenario is not None else None,
        "set": sweep.fixed,
        "vary": sweep.vary,
        "seeds": list(sweep.seeds),
        "figures": list(sweep.figures),
    }
    fixed = {"run_id": pa.string(), "seed": pa.int64(), "status": pa.string(), "resumed": pa.bool_()}
    fixed |= {"wall_s": pa.float64(), "error": pa.string()}
    table = pa.table(
        {
            name: pa.array(values, fixed[name]) if name in fixed else _array(values)
            for name, values in columns.items()
        }
    )
    table = table.replace_schema_metadata({"gridnet_sweep": json.dumps(about)})
    path = sweep.out / TABLE
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    replace_file(path, sink.getvalue().to_pybytes())
    return path


def _array(values: list[Any]) -> Any:
    """One column: integers, numbers, booleans or text (a list value as JSON); None is null."""
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if not present:
        return pa.array(values, pa.null())
    if all(isinstance(v, bool) for v in present):
        return pa.array(values, pa.bool_())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, pa.int64())
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values])


def write_plots(sweep: Sweep, results: list[RunResult]) -> tuple[list[Path], list[str]]:
    """``OUT/plots/FIGURE--by--KEY.png`` for each plotted figure and varied key: each run
    as a dot, the mean over the seeds as a line with their range (one line per combination
    of the other keys, or one for all when there are many). The plots written, and each that
    could not be (matplotlib refused it, the disk is full) as one line: it is left out, and
    the others are drawn all the same."""
    from gridnet.sim import plots  # (matplotlib: its Agg backend, files only)

    folder = sweep.out / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    written, failed = [], []
    for figure in sweep.plot:
        for key in sweep.vary:
            path = folder / f"{_file_name(figure)}--by--{_file_name(key)}.png"
            try:
                _plot(plots, path, sweep, results, figure, key)
            except Exception as exc:  # (said in the summary: the table and the runs are whole)
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)  # (no part of a PNG left as if it were one)
                failed.append(f"{path.name}: {describe(exc)}")
            else:
                written.append(path)
    return written, failed


def _plot(plots: Any, path: Path, sweep: Sweep, results: list[RunResult], figure: str, key: str) -> None:
    plt = plots.plt
    xs = sweep.vary[key]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs)
    position = {_show(v): (float(v) if numeric else float(i)) for i, v in enumerate(xs)}
    others = [k for k in sweep.vary if k != key]
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        if r.status == "failed" or not isinstance(r.figures.get(figure), int | float):
            continue
        name = _label(", ".join(f"{k} = {_show(r.run.values[k])}" for k in others))
        groups.setdefault(name, []).append(r)
    if len(groups) > SERIES_PER_PLOT:
        groups = {"all runs": [r for rs in groups.values() for r in rs]}
    fig, ax = plt.subplots(figsize=plots.SIZE, layout="constrained")  # (fits what tight_layout could not)
    try:
        for i, (name, runs) in enumerate(groups.items()):  # (in the grid's order)
            color = f"C{i % 10}"
            by_x: dict[float, list[float]] = {}
            for r in runs:
                by_x.setdefault(position[_show(r.run.values[key])], []).append(float(r.figures[figure]))
            points = sorted(by_x.items())
            ax.scatter(
                [x for x, ys in points for _ in ys],
                [y for _, ys in points for y in ys],
                s=14,
                alpha=0.45,
                color=color,
            )
            means = [sum(ys) / len(ys) for _, ys in points]
            spread = [
                [m - min(ys) for m, (_, ys) in zip(means, points, strict=True)],
                [max(ys) - m for m, (_, ys) in zip(means, points, strict=True)],
            ]
            ax.errorbar(
                [x for x, _ in points],
                means,
                yerr=spread,
                color=color,
                marker="o",
                capsize=3,
                label=name or "all runs",
            )
        if not numeric:
            ax.set_xticks(list(position.values()), [_label(x, LABEL_CHARS // 2) for x in position])
        if not groups:
            ax.text(
                0.5, 0.5, _label(f"no run has {figure}", 2 * LABEL_CHARS), transform=ax.transAxes, ha="center"
            )
        else:
            ax.legend(fontsize=8, title=f"mean and range over {_seeds_text(sweep.seeds)}", title_fontsize=8)
        ax.set_xlabel(key)
        ax.set_ylabel(figure)
        ax.grid(alpha=0.3)
        ax.set_title(_label(f"{sweep.name}: {figure} by {key}", 2 * LABEL_CHARS), loc="left", fontsize=11)
        fig.savefig(path, dpi=plots.DPI)
    finally:
        plt.close(fig)  # (drawn or not: a sweep draws many)


LABEL_CHARS: Final = 48
"""The most characters of a legend's label (a tick's: half): longer ones are cut with "..." so
that the figure has room for the axes (tight_layout gave up with a warning on wider ones)."""


def _label(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _seeds_text(seeds: tuple[int, ...]) -> str:
    """The seeds as a legend's title names them: each of a few, a count and the range of many
    (10,000 seeds listed made a title wider than the figure)."""
    if len(seeds) <= 5:
        return f"seeds {list(seeds)}"
    return f"{len(seeds):,} seeds ({min(seeds)} to {max(seeds)})"


FILE_PART_CHARS: Final = 100
"""The most characters of a figure's or a key's part of a plot's file name: FIGURE--by--KEY.png
has at most 210, within the 255 bytes a file system takes."""


def _file_name(text: str) -> str:
    """``text`` as its part of a plot's file name: itself when it is letters, digits, ".", "_"
    and "-", at most ``FILE_PART_CHARS`` of them; else those of it (any other run of characters
    a "-"), cut, and a digest of the whole, so that two figures never share a file and a name
    of any length has one (a 306-character figure's failed, "File name too long", after every
    run had finished)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", text)
    if safe == text and len(text) <= FILE_PART_CHARS:
        return text
    return f"{safe[: FILE_PART_CHARS - 11]}-{sha256_hex(text.encode())[:10]}"
