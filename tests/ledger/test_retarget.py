"""Retargeting towards the configured block interval, clamped, never above the limit."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from gridnet.ledger.params import default_params
from gridnet.ledger.pow import is_retarget_height, median_time, retarget
from gridnet.work import target_from_bits, target_to_bytes

PARAMS = msgspec.structs.replace(
    default_params(),
    block_interval_ms=10_000,
    retarget_window=10,
    max_retarget_factor=4,
    pow_limit=target_to_bytes(target_from_bits(2)),
)
EXPECTED = 10 * 10_000
START = target_from_bits(20)


def test_on_schedule_keeps_the_target() -> None:
    assert retarget(PARAMS, START, 0, EXPECTED) == START


def test_fast_blocks_make_it_harder_and_slow_blocks_easier() -> None:
    assert retarget(PARAMS, START, 0, EXPECTED // 2) == START // 2
    assert retarget(PARAMS, START, 0, EXPECTED * 2) == START * 2


@given(st.integers(min_value=-(10**9), max_value=10**10))
def test_change_is_clamped_to_the_factor_and_the_limit(actual: int) -> None:
    new = retarget(PARAMS, START, 0, actual)
    assert START // 4 <= new <= START * 4
    assert new <= PARAMS.pow_limit_int


def test_limit_caps_an_easy_target() -> None:
    easy = PARAMS.pow_limit_int
    assert retarget(PARAMS, easy, 0, EXPECTED * 4) == easy


def test_retarget_heights_are_multiples_of_the_window() -> None:
    assert [h for h in range(0, 31) if is_retarget_height(PARAMS, h)] == [10, 20, 30]


def test_median_time() -> None:
    assert median_time([5, 1, 9]) == 5
    assert median_time([3]) == 3
