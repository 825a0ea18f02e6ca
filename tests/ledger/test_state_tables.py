"""State tables share decoded values between views: safe only while every value is immutable."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest

import gridnet.ledger.chain  # noqa: F401  (registers every table: the transactions' and PoA's)
from gridnet.encoding import U63, Wire, encode
from gridnet.errors import StateOutOfRange
from gridnet.ledger import state as state_module
from gridnet.ledger.state import _TABLES, ACCOUNTS, Account, StateView


def mutable_part(tp: Any, seen: set[type]) -> str | None:
    """Where a value of type ``tp`` could be changed in place (None: nowhere)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return mutable_part(typing.get_args(tp)[0], seen)
    if origin in (list, dict, set) or tp in (list, dict, set, bytearray):
        return str(tp)
    if origin is not None:
        return next(
            (m for a in typing.get_args(tp) if a is not Ellipsis if (m := mutable_part(a, seen))), None
        )
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if tp in seen:
            return None
        seen.add(tp)
        if not tp.__struct_config__.frozen:
            return f"{tp.__name__} (not frozen)"
        hints = typing.get_type_hints(tp, include_extras=True)
        return next(
            (f"{tp.__name__}.{n}: {m}" for n, h in hints.items() if (m := mutable_part(h, seen))), None
        )
    return None


class Listed(Wire, frozen=True):
    values: list[U63]


class Holder(Wire, frozen=True):
    inner: tuple[Listed, ...]


def test_the_check_finds_a_list_however_deep() -> None:
    assert mutable_part(Account, set()) is None
    found = mutable_part(Holder, set())
    assert found is not None and found.startswith("Holder.inner: Listed.values: list[")


@pytest.mark.parametrize("name", sorted(t.name for t in _TABLES.values()))
def test_every_table_value_is_deeply_immutable(name: str) -> None:
    table = next(t for t in _TABLES.values() if t.name == name)
    assert mutable_part(table.value_type, set()) is None


def test_views_over_different_states_share_one_decoded_value() -> None:
    raw = encode(Account(balance=7, nonce=3))
    a = StateView({ACCOUNTS.key(b"a" * 20): raw})
    b = StateView({ACCOUNTS.key(b"b" * 20): bytes(raw)})  # equal bytes, another object
    first, second = a.get(ACCOUNTS, b"a" * 20), b.get(ACCOUNTS, b"b" * 20)
    assert first == Account(balance=7, nonce=3)
    assert first is second


def test_a_full_table_starts_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "DECODED_MAX", 3)
    ACCOUNTS.decoded.clear()
    ACCOUNTS.decoded_bytes = 0
    for n in range(3):
        ACCOUNTS.decode(encode(Account(balance=n)))
    assert len(ACCOUNTS.decoded) == 3
    assert ACCOUNTS.decode(encode(Account(balance=9))) == Account(balance=9)
    assert len(ACCOUNTS.decoded) == 1


def test_a_table_of_large_values_starts_over_by_their_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    size = len(encode(Account(balance=0)))
    monkeypatch.setattr(state_module, "DECODED_MAX_BYTES", 2 * size)
    ACCOUNTS.decoded.clear()
    ACCOUNTS.decoded_bytes = 0
    ACCOUNTS.decode(encode(Account(balance=0)))
    ACCOUNTS.decode(encode(Account(balance=1)))
    assert (len(ACCOUNTS.decoded), ACCOUNTS.decoded_bytes) == (2, 2 * size)
    ACCOUNTS.decode(encode(Account(balance=2)))
    assert (len(ACCOUNTS.decoded), ACCOUNTS.decoded_bytes) == (1, size)


@pytest.mark.parametrize(
    ("balance", "reason"),
    [(2**63, "balance: Expected `int` <= 9223372036854775807"), (-1, "balance: Expected `int` >= 0")],
)
def test_a_number_its_table_cannot_hold_is_refused_by_name(balance: int, reason: str) -> None:
    view = StateView({})
    view.put(ACCOUNTS, b"a" * 20, Account(balance=balance))
    with pytest.raises(StateOutOfRange) as refused:
        view.check_written()
    assert refused.value.rule == "StateOutOfRange" and reason in str(refused.value)
    assert "accounts entry out of range" in str(refused.value)
    view.check_written()  # each entry is checked once: after a refusal the builder rolls it back


def test_past_two_to_the_64_is_refused_too_and_a_deleted_entry_needs_no_check() -> None:
    view = StateView({})
    view.put(ACCOUNTS, b"a" * 20, Account(balance=2**64))  # (msgspec cannot even encode it)
    with pytest.raises(StateOutOfRange):
        view.check_written()
    view.put(ACCOUNTS, b"a" * 20, Account(balance=2**64))
    view.put(ACCOUNTS, b"a" * 20, None)
    view.check_written()
    view.put(ACCOUNTS, b"b" * 20, Account(balance=2**63 - 1))
    view.check_written()
