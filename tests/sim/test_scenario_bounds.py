"""What a scenario file may say, at its limits: every message one short line, every key's
value bounded, and a file refused before a run starts rather than failing in it."""

from __future__ import annotations

import contextlib
import copy
import tomllib
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Final, NoReturn

import pytest

from gridnet.agents.world import World
from gridnet.errors import ConfigError
from gridnet.sim.neighbourhood import Neighbourhood, simulate
from gridnet.sim.scenario import (
    _SECTIONS,
    BOUNDS,
    MAX_INTERVALS,
    MIN_RUN_BLOCKS,
    OTHER_IDENTITIES,
    POW_BUDGET,
    TEXT,
    _role_tables,
    block_seconds,
    identity_work,
    mining_work,
    run_seconds,
    scenario_from_dict,
)

LIBRARY = Path(__file__).parents[2] / "scenarios"
HUGE = 2**52
"""Above every bound, below the 2^53 every number of a scenario is below (``MAX_INT``)."""


def refusal(doc: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(doc, "s.toml")
    return str(info.value)


def test_a_long_value_is_echoed_cut_short() -> None:
    """A 10,000-character [simulation] start was echoed whole: a 10,000-character line."""
    message = refusal({"simulation": {"start": "x" * 10_000}})
    assert message == (
        "s.toml: [simulation] start: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... "
        "is not an ISO 8601 time (e.g. 2026-01-01T00:00:00Z)"
    )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"homes": {"count": 10**400}}, "s.toml: [homes] count must be an integer"),
        ({"homes": {"pv_share": -(10**400)}}, "s.toml: [homes] pv_share must be a number"),
    ],
)
def test_an_integer_of_400_digits_is_one_line_not_an_overflow(doc: dict[str, Any], message: str) -> None:
    """TOML integers have no size limit: one that converts to no float was an OverflowError
    traceback (``math.isfinite`` of it) before the size check could name it."""
    assert refusal(doc) == f"{message} (finite, and below 2**53 in size)"


def test_an_unknown_key_names_the_known_keys_it_may_have_meant() -> None:
    """An unknown key listed every known key of its section (about 1,000 characters for [ev])."""
    assert refusal({"ev": {"station_prize": 1}}) == (
        "s.toml: [ev]: unknown key(s) ['station_prize']; did you mean 'station_price'?"
    )
    assert refusal({"homes": {"zzz": 1}}) == (
        "s.toml: [homes]: unknown key(s) ['zzz']; see docs/scenarios.md for the 23 known ones"
    )
    known = "known: ['kind']"
    assert refusal({"telemetry": {"zzz": 1}}) == f"s.toml: [telemetry]: unknown key(s) ['zzz']; {known}"
    message = refusal({"homes": {"y" * 10_000: 1}})
    assert len(message) < 200 and "..." in message
    assert refusal({"credit_bnak": {}}).startswith(
        "s.toml: unknown section(s) ['credit_bnak']; did you mean 'credit_bank'?"
    )


@pytest.mark.parametrize("value", [[], ["07:00"], ["07:00", "08:00", "09:00"]])
def test_a_pair_of_times_is_two_times(value: list[str]) -> None:
    """[ev] arrive_utc = [] was an IndexError once the run built its vehicles: a list of any
    length passed for a pair."""
    for key in ("arrive_utc", "depart_utc"):
        assert refusal({"ev": {"enabled": True, key: value}}) == (
            f"s.toml: [ev] {key} must be a list of 2 strings, e.g. "
            + ('["07:00", "09:00"]' if key == "arrive_utc" else '["16:00", "18:00"]')
        )


def test_a_list_of_names_may_have_any_length() -> None:
    scenario_from_dict({"advisor": {"affected": []}, "manufacturer": {"outdated": []}}, "s.toml")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"ev": {"station_price": HUGE}}, "[ev] station_price must be 0 to 1,000 GNC/kWh"),
        ({"ev": {"fee_gnc": HUGE}}, "[ev] fee_gnc must be 0 to 1,000 GNC/kWh"),
        ({"ev": {"value_floor": [0.3, HUGE]}}, "[ev] value_floor must be within 0 to 1,000 GNC/kWh"),
        ({"ev": {"auction_every_intervals": 0}}, "[ev] auction_every_intervals must be 1 to 96 intervals"),
        ({"credit_bank": {"capital_gnc": HUGE}}, "[credit_bank] capital_gnc must be 0 to 10,000,000 GNC"),
        (
            {"credit_bank": {"borrower_start_gnc": HUGE}},
            "[credit_bank] borrower_start_gnc must be 0 to 10,000,000 GNC",
        ),
        ({"credit_bank": {"point_gnc": HUGE}}, "[credit_bank] point_gnc must be 0 to 10,000,000 GNC"),
        ({"credit_bank": {"max_loan_gnc": HUGE}}, "[credit_bank] max_loan_gnc must be 0 to 10,000,000 GNC"),
        ({"helios": {"min_wh": HUGE}}, "[helios] min_wh must be 1 to 1,000,000 Wh"),
        ({"maintenance": {"deposit_gnc": HUGE}}, "[maintenance] deposit_gnc must be 0 to 10,000,000 GNC"),
    ],
)
def test_a_tables_amounts_are_bounded_when_the_file_loads(table: dict[str, Any], message: str) -> None:
    """2^52 GNC passed every check: the run started (--out written) and the first auction
    (station_price, fee_gnc), the genesis (capital_gnc, borrower_start_gnc) or the bank's
    registration (point_gnc, max_loan_gnc) raised an OverflowError; a period of 0 intervals was
    a ZeroDivisionError while the vehicles were built. Now each is refused as the file loads,
    enabled or not."""
    assert refusal(table) == f"s.toml: {message}"


def test_every_numeric_key_of_a_roles_table_has_its_bounds() -> None:
    """What keeps a new key from the unbounded amounts above: each number or range of every
    role's table is ``bounded`` (the core sections' are checked in ``_bounds``)."""
    numeric = (int, float, tuple[float, float])
    unbounded = [
        f"[{name}] {key}"
        for name, table in _role_tables().items()
        for key, hint in typing.get_type_hints(table).items()
        if hint in numeric and BOUNDS not in table.__dataclass_fields__[key].metadata
    ]
    assert unbounded == []


@pytest.mark.parametrize(
    ("table", "key", "value", "message"),
    [
        (
            "manufacturer",
            "firmware",
            "",
            "firmware must be 1 to 64 characters, what the chain takes ('' has 0)",
        ),
        ("manufacturer", "old_firmware", "v" * 65, "old_firmware must be 1 to 64 characters"),
        ("aggregators", "name", "a" * 65, "name must be 1 to 64 characters"),
        ("ev", "hotspot", "", "hotspot must be 1 to 64 characters"),
        ("generation", "name", "", "name must be 1 to 64 characters"),
        ("helios", "name", "", "name must be 1 to 64 characters"),
        ("credit_bank", "name", "c" * 65, "name must be 1 to 64 characters"),
        ("advisor", "id", "", "id must be 1 to 64 characters"),
        (
            "advisor",
            "fixed_in",
            "f" * 65,
            "fixed_in must be at most 64 characters, what the chain takes ('ff",
        ),
        (
            "advisor",
            "affected",
            ["1.0", ""],
            "affected: each must be 1 to 64 characters, what the chain takes ('' has 0)",
        ),
    ],
)
def test_a_text_the_chain_would_refuse_is_refused_when_the_file_loads(
    table: str, key: str, value: Any, message: str
) -> None:
    """[manufacturer] firmware = "" was taken: every meter's registration was refused WrongType
    and a day ran with no meter on chain (exit 0 in a sweep); an [aggregators] name of 65
    characters ran without its consortium. Now each is refused as the file loads, enabled or not,
    with the chain's lengths (read from the ledger's type)."""
    assert refusal({table: {key: value}}).startswith(f"s.toml: [{table}] {message}")


NOT_ON_CHAIN: Final = {
    ("advisor", "severity"),
    ("ev", "arrive_utc"),
    ("ev", "depart_utc"),
    ("maintenance", "first_failure_utc"),
    ("manufacturer", "not_updatable"),
    ("manufacturer", "outdated"),
    ("meters", "devices"),
}
"""The text keys of roles' tables that no role puts on chain as they are: each is read as a
choice, a time of day or a participant's name (and refused as one)."""


def test_every_text_key_of_a_roles_table_is_held_to_the_chains_lengths() -> None:
    """What keeps a new text key from reaching the chain unchecked: each string (or list of
    them) of every role's table is ``on_chain`` with the ledger's type, unless it is one of the
    keys read as something else."""
    texts = (str, tuple[str, ...], tuple[str, str])
    unchecked = {
        (name, key)
        for name, table in _role_tables().items()
        for key, hint in typing.get_type_hints(table).items()
        if hint in texts and TEXT not in table.__dataclass_fields__[key].metadata
    }
    assert unchecked == NOT_ON_CHAIN


@pytest.mark.parametrize(
    ("file", "table", "key", "value", "shown"),
    [
        ("ev.toml", "ev", "arrive_utc", ["²:00", "09:00"], "'²:00'"),
        ("maintenance.toml", "maintenance", "first_failure_utc", "08:٣٠", "'08:٣٠'"),
    ],
)
def test_a_time_of_day_is_ascii_digits(
    file: str, table: str, key: str, value: Any, shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "²:00" passed ``str.isdigit`` and was a ValueError traceback (``int("²")``) as the run
    was built; "٣٠" would have been taken for 30. A time of day is ASCII digits."""
    path = LIBRARY / file
    doc = shrunk(tomllib.loads(path.read_text()))
    doc[table][key] = value
    monkeypatch.setattr(World, "build_grid", stop)
    with pytest.raises(ConfigError) as info:
        built(doc, str(path))
    assert str(info.value) == f'{path}: [{table}] {key}: {shown} is not a time of day as "HH:MM"'


def test_identity_proofs_are_bounded_by_the_work_they_take() -> None:
    """[chain] identity_difficulty_bits = 32 was within its range: an hour of a core for each
    identity's proof at the bootstrap. The expected hashes of all (2^bits for each of the homes
    and the 32 others a run may have) are at most ``POW_BUDGET``; the line says how far to go."""
    assert refusal({"chain": {"identity_difficulty_bits": 32}}) == (
        "s.toml: [chain] identity_difficulty_bits = 32 makes the identity proofs about 223,338,299,392 "
        "hashes (2^32 for each of up to 52 identities), more than the 1,073,741,824 a run may take: give "
        "it at most 24, or fewer homes"
    )
    assert "give it at most 19" in refusal(
        {"homes": {"count": 1_000}, "chain": {"identity_difficulty_bits": 20}}
    )
    for homes, bits in ((20, 24), (1_000, 19)):
        scenario = scenario_from_dict(
            {"homes": {"count": homes}, "chain": {"identity_difficulty_bits": bits}}
        )
        assert identity_work(scenario) <= POW_BUDGET


def test_mining_is_bounded_by_the_hashes_it_takes() -> None:
    """[network] hashes_per_tick = 1,000,000 was within its range: ten hours of a core's hashing
    a simulated day (20,000 on one node: 46 s for one interval). Each node's hashes every tick of
    the bootstrap and the intervals are at most ``POW_BUDGET`` in all, on a chain that mines."""
    day = {"simulation": {"intervals": 96}, "network": {"nodes": 1, "hashes_per_tick": 1_000_000}}
    assert refusal(day) == (
        "s.toml: [network] hashes_per_tick = 1,000,000 on 1 node(s) makes the mining about "
        "18,720,000,000 hashes over the bootstrap and the intervals, more than the 1,073,741,824 a run "
        "may take: give it at most 57,358, or fewer nodes or intervals, or a longer tick_s"
    )
    day["network"]["hashes_per_tick"] = 57_358
    assert mining_work(scenario_from_dict(day)) <= POW_BUDGET
    day["network"]["hashes_per_tick"] = 57_359
    assert "give it at most 57,358" in refusal(day)
    day["chain"] = {"consensus": "poa"}  # (validators seal blocks: nothing is mined)
    assert mining_work(scenario_from_dict(day)) == 0
    longest = {"simulation": {"intervals": MAX_INTERVALS}, "network": {"nodes": 16, "tick_s": 0.5}}
    assert mining_work(scenario_from_dict(longest)) <= POW_BUDGET  # (the default hash rate always fits)


def test_borrowers_start_with_what_a_home_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """[credit_bank] borrower_start_gnc = 0 was taken: the borrowers could pay no fee and the
    run never converged (6 simulated hours on). Now it needs what [homes] start_gnc does."""
    path = LIBRARY / "credit-bank.toml"
    doc = shrunk(tomllib.loads(path.read_text()))
    doc["credit_bank"]["borrower_start_gnc"] = 0
    monkeypatch.setattr(World, "build_grid", stop)
    with pytest.raises(ConfigError) as info:
        built(doc, str(path))
    assert str(info.value) == (
        f"{path}: [credit_bank] borrower_start_gnc must be at least 2.12504000 GNC, what a home locks "
        "and pays to take part (as [homes] start_gnc must)"
    )
    doc["credit_bank"]["borrower_start_gnc"] = 2.12504
    built(doc, str(path))


# --- every numeric key at its extremes ------------------------------------------------------


class Built(Exception):
    """The scenario built up to its genesis: what stops a walk before the grid and the nodes."""


def stop(*_: object) -> NoReturn:
    raise Built


def walked_table(doc: dict[str, Any], name: str) -> bool:
    """Whether a library file is a base to walk the role table ``name`` on: it enables it (or
    sets it, for a table with no ``enabled``)."""
    table = doc.get(name)
    return isinstance(table, dict) and table.get("enabled", True) is True


def shrunk(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` over two intervals from 11:00 UTC of its day on one node, with at most 16 homes."""
    doc = copy.deepcopy(doc)
    simulation = doc.setdefault("simulation", {})
    day = str(simulation.get("start", "2026-06-21T00:00:00Z"))[:10]
    simulation.update(start=f"{day}T11:00:00Z", intervals=2)
    homes = doc.setdefault("homes", {})
    homes["count"] = min(homes.get("count", 20), 16)
    homes["businesses"] = min(homes.get("businesses", 1), 1)
    security = doc.setdefault("security", {})
    security["flagged_meters"] = min(security.get("flagged_meters", 0), 1)
    doc.setdefault("network", {})["nodes"] = 1
    if doc.get("meters", {}).get("devices") == "process":
        doc["meters"]["devices"] = "memory"
    return doc


def bases() -> list[tuple[str, str, dict[str, Any]]]:
    """(base's source, section, base document): the core sections on the built-in defaults with
    two homes; each role's table on every library file that enables it (its source the file:
    its policy files are named relative to it)."""
    core = {"simulation": {"intervals": 2, "start": "2026-06-21T11:00:00Z"}, "homes": {"count": 2}}
    found = [("defaults", name, core) for name in _SECTIONS]
    for path in sorted(LIBRARY.glob("*.toml")):
        doc = tomllib.loads(path.read_text())
        found += [(str(path), name, shrunk(doc)) for name in _role_tables() if walked_table(doc, name)]
    return found


BASES = bases()


TEXTS: Final = ("", "x" * 1_000)
"""What a text key is walked to: empty, and longer than any text the chain takes."""


def extremes(value: Any, hint: Any) -> list[Any]:
    """What a key of type ``hint`` whose default (or base value) is ``value`` is walked to."""
    if hint is str:
        return list(TEXTS)
    if hint in (tuple[str, ...], tuple[str, str]):
        return [[], *([text] * max(len(value), 1) for text in TEXTS)]
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [HUGE, 0, -1]
    if isinstance(value, tuple | list):
        return [[HUGE, HUGE], [0, 0], [-1, -1], [0], []]
    return []


def built(doc: dict[str, Any], source: str) -> None:
    """Load ``doc`` and build its participants and genesis (what refuses a scenario before its
    run); the grid and the nodes are left out (``Built``)."""
    scenario = scenario_from_dict(doc, source)
    with contextlib.suppress(Built):
        Neighbourhood(scenario, stop)


def walk(base: dict[str, Any], section: str, source: str) -> tuple[list[tuple[str, Any]], list[str]]:
    """Each numeric key of ``section`` at each extreme on ``base``: (what was accepted, what
    failed otherwise than with one line)."""
    table = {**_SECTIONS, **_role_tables()}[section]
    hints = typing.get_type_hints(table)
    accepted: list[tuple[str, Any]] = []
    failures: list[str] = []
    for f in fields(table):
        value = base.get(section, {}).get(f.name, getattr(table(), f.name))
        for extreme in extremes(value, hints[f.name]):
            doc = copy.deepcopy(base)
            doc.setdefault(section, {})[f.name] = extreme
            try:
                built(doc, source)
            except ConfigError as exc:
                message = str(exc)
                if "\n" in message or len(message) > 300:
                    failures.append(f"[{section}] {f.name} = {extreme!r}: a long message: {message[:300]}")
            except Exception as exc:  # (what the test is for: none may be raised)
                failures.append(f"[{section}] {f.name} = {extreme!r}: {type(exc).__name__}: {exc}")
            else:
                accepted.append((f.name, extreme))
    return accepted, failures


@pytest.mark.parametrize(
    ("source", "section", "base"), BASES, ids=[f"{Path(n).stem}-{s}" for n, s, _ in BASES]
)
def test_every_numeric_key_at_its_extremes_is_taken_or_refused_in_one_line(
    source: str, section: str, base: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every numeric key of the section, set to 2^52, 0 and -1 (a range to each of them as a
    pair, to one number and to none; a list of names to none), is refused by one ConfigError
    line before anything runs, or is taken and runs to the end: here all the extremes the
    section takes at once, on two intervals. Without the bounds, [ev] station_price = 2^52 was
    an OverflowError at the first auction (--out half written), [credit_bank] capital_gnc =
    2^52 one while the genesis was encoded, [ev] auction_every_intervals = 0 a
    ZeroDivisionError, [ev] arrive_utc = [] an IndexError, [credit_bank] borrower_start_gnc
    = 0 a run that never converged."""
    with monkeypatch.context() as patch:
        patch.setattr(World, "build_grid", stop)
        built(base, source)
        accepted, failures = walk(base, section, source)
        combined = copy.deepcopy(base)
        for key, extreme in accepted:  # (those taken together too: one run covers them all)
            trial = copy.deepcopy(combined)
            trial.setdefault(section, {})[key] = extreme
            try:
                built(trial, source)
            except ConfigError:
                continue
            combined = trial
    assert failures == []
    if accepted:
        scenario = scenario_from_dict(combined, source)
        report = simulate(scenario, tmp_path / "out")
        assert report["converged"] and report["verify"]["ok"], combined[section]
        assert "WrongType" not in report["transactions"]["refused"], combined[section]
        identities = report["transactions"]["submitted"]["RegisterIdentity"]
        assert identities <= scenario.homes.count + OTHER_IDENTITIES  # (what identity_work counts)


def test_a_chain_that_mines_must_expect_blocks_in_its_run() -> None:
    """[chain] difficulty_bits = 32 was within its range and within the hashing budget: the
    nodes hashed for the whole run and mined no block (about 1.2 billion simulated seconds a
    block at 3 nodes x 6 hashes every 5 s), and the run ended unconverged with nothing
    recorded. A run that mines expects at least ``MIN_RUN_BLOCKS`` blocks at its starting
    difficulty; the line says how far to go."""
    assert refusal({"chain": {"difficulty_bits": 32}}) == (
        "s.toml: [chain] difficulty_bits = 32 takes 3 node(s) hashing 6 every 5 s about "
        "1,193,046,471 s a block, expected: fewer than 4 blocks in the run's 93,600 s (the bootstrap "
        "and the intervals), so it could not record what it simulates: give it at most 16, or more "
        "nodes or hashes_per_tick"
    )
    for bits in (16, 10):
        scenario = scenario_from_dict({"chain": {"difficulty_bits": bits}})
        assert block_seconds(scenario) * MIN_RUN_BLOCKS <= run_seconds(scenario)
    assert "give it at most 16" in refusal({"chain": {"difficulty_bits": 17}})
    scenario_from_dict({"chain": {"difficulty_bits": 32, "consensus": "poa"}})  # (nothing is mined)
