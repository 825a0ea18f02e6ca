"""Amounts of GNC as the command line reads them: digits, at most 8 decimals."""

from __future__ import annotations

import pytest

from gridnet.cli.common import parse_gnc
from gridnet.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "units"),
    [("1", 100_000_000), ("2.5", 250_000_000), ("0.00000001", 1), ("007.1000000000000", 710_000_000)],
)
def test_an_amount_in_digits_is_read_exactly(text: str, units: int) -> None:
    assert parse_gnc(text) == units


@pytest.mark.parametrize("text", ["1_000", "1e3", ".5", "2.", "\uff11", "-1", " 1", "+1", "NaN", "Infinity"])
def test_what_decimal_reads_but_nobody_writes_as_an_amount_is_refused(text: str) -> None:
    """'1_000' was mined as 1,000 GNC, and a full-width digit was taken for 1."""
    with pytest.raises(ConfigError, match=r"is not a number of GNC \(digits, e\.g\. 12\.5\)"):
        parse_gnc(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "must be positive"),
        ("0.000000000", "must be positive"),
        ("1.000000001", "at most 8 decimals"),
        # beyond the 28 digits of Decimal's context: rounded to a whole number of base units
        # before the check, and signed as 1 GNC or 1,234,567,890.12345680 GNC
        ("1." + "0" * 29 + "1", "at most 8 decimals"),
        ("1234567890.123456789999999999999", "at most 8 decimals"),
        ("0.00000000" + "9" * 29, "at most 8 decimals"),
    ],
)
def test_zero_and_dust_below_a_base_unit_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_gnc(text)


@pytest.mark.parametrize("text", ["92233720368.54775808", "1" * 5000])
def test_an_amount_beyond_what_a_transaction_carries_is_one_line(text: str) -> None:
    with pytest.raises(ConfigError, match=r"can carry \(at most 92,233,720,368 GNC\)"):
        parse_gnc(text)
    assert parse_gnc("92233720368.54775807") == 2**63 - 1
