"""What a scenario file may say, at its limits: every message one short line, every key's
value bounded, and a file refused before a run starts rather than failing in it."""

from __future__ import annotations

from typing import Any

import pytest

from gridnet.errors import ConfigError
from gridnet.sim.scenario import scenario_from_dict


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
