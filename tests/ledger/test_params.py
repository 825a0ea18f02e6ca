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
    FILE_KEYS,
    MAX_BLOCK_BYTES_LIMIT,
    Allocation,
    ChainParams,
    default_params,
    load_genesis_file,
    params_from_dict,
    params_to_toml,
    validate_params,
)
from tests.helpers import test_keys

ADDR = address_to_text(test_keys(1)[0].address)


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"staking": {"unbonding_delay_blocks": 0}}, "unbonding_delay_blocks must be at least 1"),
        ({"staking": {"unbonding_delay_blocks": -3}}, "out of range"),
        ({"fees": {"min_fee_per_byte": -1}}, "out of range"),
        ({"chain": {"max_future_s": -5}}, "[chain] max_future_s cannot be negative"),
        ({"chain": {"max_block_bytes": MAX_BLOCK_BYTES_LIMIT + 1}}, "max_block_bytes must be between"),
        (
            {"reward": {"initial_gnc": "100000000000"}},
            "[reward] initial_gnc: '100000000000' is more than the ledger holds",
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
        ({"chain": {"name": ""}}, "[chain] name must be 1 to 80 printable characters"),
        ({"chain": {"name": "x" * 81}}, "[chain] name must be 1 to 80 printable characters"),
        ({"chain": {"name": "two\nlines"}}, "[chain] name must be 1 to 80 printable characters"),
    ],
)
def test_bad_values_are_named(doc: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        params_from_dict(doc, "g.toml")
    assert fragment in str(info.value)
    assert str(info.value).startswith("g.toml")


MOST = "at most 92233720368.54775807 GNC (2^63 - 1 base units)"
IN_MS = "must be at most 9,223,372,036,854,775 s (the ledger holds it in ms, below 2^63)"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"reward": {"initial_gnc": "1e30"}},
            f"[reward] initial_gnc: '1e30' is more than the ledger holds: {MOST}",
        ),
        (
            {"allocation": [{"address": ADDR, "gnc": 1e300}]},
            f"allocation 1 gnc: 1e+300 is more than the ledger holds: {MOST}",
        ),
        (
            {"allocation": [{"address": ADDR, "gnc": "92233720368.54775808"}]},
            f"allocation 1 gnc: '92233720368.54775808' is more than the ledger holds: {MOST}",
        ),
        (
            {"reward": {"initial_gnc": "Infinity"}},
            "[reward] initial_gnc: 'Infinity' is not an amount of GNC (a finite number is)",
        ),
        (
            {"allocation": [{"address": ADDR, "gnc": float("inf")}]},
            "allocation 1 gnc: inf is not an amount of GNC (a finite number is)",
        ),
        (
            {"reward": {"initial_gnc": "NaN"}},
            "[reward] initial_gnc: 'NaN' is not an amount of GNC (a finite number is)",
        ),
        (
            {"reward": {"initial_gnc": "sNaN"}},
            "[reward] initial_gnc: 'sNaN' is not an amount of GNC (a finite number is)",
        ),
        (
            {"reward": {"initial_gnc": "1e1000000000"}},
            f"[reward] initial_gnc: '1e1000000000' is more than the ledger holds: {MOST}",
        ),
        (
            {"reward": {"initial_gnc": "1.0000000000000000000000000000001"}},
            "[reward] initial_gnc: '1.0000000000000000000000000000001' has more than 8 decimals",
        ),
        ({"chain": {"block_interval_s": -1.0}}, "[chain] block_interval_s cannot be negative"),
        (
            {"chain": {"block_interval_s": 1e18}},
            f"[chain] block_interval_s {IN_MS}",
        ),
        (
            {"market": {"auction_close_s": 1e17}},
            f"[market] auction_close_s {IN_MS}",
        ),
        (
            {"pow": {"retarget_window": 99_999_999_999}},
            "a value is out of range (ChainParams: Expected `int` <= 4294967295 - at "
            "`[pow] retarget_window`)",
        ),
    ],
)
def test_amounts_and_durations_are_bounded_and_named(doc: dict[str, Any], message: str) -> None:
    """What the ledger cannot hold (an amount beyond 2^63 - 1 base units, infinity, NaN, a
    duration whose ms overflow) is one line naming the file's key: it was an OverflowError,
    NaN 'had more than 8 decimals', and -1 s named the internal block_interval_ms."""
    with pytest.raises(ConfigError) as info:
        params_from_dict(doc, "g.toml")
    assert str(info.value) == f"g.toml: {message}"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"pow": {"retarget_window": 10**400}}, "[pow] retarget_window must be an integer"),
        ({"chain": {"block_interval_s": -(10**400)}}, "[chain] block_interval_s must be a number"),
    ],
)
def test_an_integer_of_400_digits_is_named_not_an_overflow(doc: dict[str, Any], message: str) -> None:
    """TOML integers have no size limit: one that converts to no float was an OverflowError
    traceback (``math.isfinite`` of it) before the size check could name it."""
    with pytest.raises(ConfigError) as info:
        params_from_dict(doc, "g.toml")
    assert str(info.value).startswith(f"g.toml: {message} (finite, and below 2**63 in size)")


def test_an_amount_beyond_64_bits_is_named_not_an_overflow() -> None:
    """An allocation of 2^64 base units does not encode: validate_params let msgspec's
    OverflowError through (a traceback from a scenario's credit bank of 2^52 GNC), as it
    caught only the DecodeError of a value that encodes but is out of a field's range."""
    huge = replace(default_params(), allocations=(Allocation(test_keys(1)[0].address, 2**64),))
    with pytest.raises(ConfigError) as info:
        validate_params(huge, "scenario x")
    assert str(info.value) == (
        "scenario x: a value is out of range ([[allocation]]: an integer beyond 64 bits)"
    )


def test_every_parameter_has_its_genesis_key() -> None:
    assert set(FILE_KEYS) == set(ChainParams.__struct_fields__)


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
