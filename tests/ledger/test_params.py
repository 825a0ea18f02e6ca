"""Genesis files: every out-of-range value is a named ConfigError; files round-trip exactly."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from gridnet.crypto.address import address_to_text
from gridnet.errors import ConfigError
from gridnet.ledger.params import (
    MAX_BLOCK_BYTES_LIMIT,
    Allocation,
    default_params,
    load_genesis_file,
    params_from_dict,
    params_to_toml,
)
from tests.helpers import test_keys

ADDR = address_to_text(test_keys(1)[0].address)


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"staking": {"unbonding_delay_blocks": 0}}, "unbonding_delay_blocks must be at least 1"),
        ({"staking": {"unbonding_delay_blocks": -3}}, "out of range"),
        ({"fees": {"min_fee_per_byte": -1}}, "out of range"),
        ({"chain": {"max_future_s": -5}}, "out of range"),
        ({"chain": {"max_block_bytes": MAX_BLOCK_BYTES_LIMIT + 1}}, "max_block_bytes must be between"),
        (
            {"reward": {"initial_gnc": "100000000000"}},
            "out of range (ChainParams: Expected `int` <= 9223372036854775807 - at `initial_reward`)",
        ),
        ({"reward": {"initial_gnc": "80000000000"}}, "exceed"),
        ({"allocation": [{"address": ADDR, "gnc": "92233720368"}]}, "exceed"),
        ({"reward": {"initial_gnc": "1.000000001"}}, "more than 8 decimals"),
        ({"chain": {"block_interval_s": "fast"}}, "must be a number"),
        ({"pow": {"retarget_window": 1.5}}, "must be an integer"),
        ({"pow": {"initial_difficulty_bits": 2, "min_difficulty_bits": 4}}, "at least min_difficulty_bits"),
        ({"chain": {"genesis_time": "yesterday"}}, "[chain] genesis_time"),
        ({"chain": {"colour": "blue"}}, "unknown key"),
        ({"extras": {}}, "unknown section"),
        ({"security": {"advisory_authorities": ["gn1nonsense"]}}, "[security] advisory_authorities[0]"),
        ({"security": {"advisory_authorities": ADDR}}, "advisory_authorities must be a list"),
        ({"security": {"advisory_authorities": [ADDR, ADDR]}}, "lists an address twice"),
        ({"security": {"min_severity": "apocalyptic"}}, "one of low, medium, high, critical"),
        ({"market": {"mode": "barter"}}, "[market] mode 'barter' is not one of offchain, onchain"),
        ({"market": {"auction_close_s": 0}}, "auction_close_s must be more than 0"),
    ],
)
def test_bad_values_are_named(doc: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        params_from_dict(doc, "g.toml")
    assert fragment in str(info.value)
    assert str(info.value).startswith("g.toml")


def test_genesis_file_round_trips_exactly(tmp_path: Path) -> None:
    params = default_params((Allocation(test_keys(1)[0].address, 12_345_678_987_654_321),))
    params = replace(
        params,
        advisory_authorities=(test_keys(2)[1].address,),
        advisory_min_severity=3,
        market_mode=1,
        auction_close_ms=600_000,
    )
    path = tmp_path / "g.toml"
    path.write_text(params_to_toml(params))
    assert load_genesis_file(path) == params
    assert tomllib.loads(path.read_text())["allocation"][0]["gnc"] == "123456789.87654321"


def test_block_interval_is_rounded_not_truncated() -> None:
    assert params_from_dict({"chain": {"block_interval_s": 1.005}}).block_interval_ms == 1005
