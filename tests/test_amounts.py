"""Amounts of GNC as the command line reads them: digits, at most 8 decimals."""

from __future__ import annotations

import pytest

from gridnet.cli.common import parse_gnc
from gridnet.errors import ConfigError


@pytest.mark.parametrize(("text", "units"), [("1", 100_000_000), ("2.5", 250_000_000), ("0.00000001", 1)])
def test_an_amount_in_digits_is_read_exactly(text: str, units: int) -> None:
    assert parse_gnc(text) == units


@pytest.mark.parametrize("text", ["1_000", "1e3", ".5", "2.", "\uff11", "-1", " 1", "+1", "NaN", "Infinity"])
def test_what_decimal_reads_but_nobody_writes_as_an_amount_is_refused(text: str) -> None:
    """'1_000' was mined as 1,000 GNC, and a full-width digit was taken for 1."""
    with pytest.raises(ConfigError, match=r"is not a number of GNC \(digits, e\.g\. 12\.5\)"):
        parse_gnc(text)


@pytest.mark.parametrize(
    ("text", "message"), [("0", "must be positive"), ("1.000000001", "at most 8 decimals")]
)
def test_zero_and_dust_below_a_base_unit_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_gnc(text)
