"""``free_port``: never the same port twice before a node binds it, in one process or two."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from gridnet.node import devnet
from gridnet.node.devnet import LOCAL, RESERVED_KEPT, free_port


def _draws(monkeypatch: pytest.MonkeyPatch, ports: list[int]) -> None:
    """Make the next random draws ``ports``, in order."""
    it: Iterator[int] = iter(ports)
    monkeypatch.setattr(devnet.random, "randrange", lambda _lo, _hi: next(it))


def _two_unused_ports() -> tuple[int, int]:
    """Two ports free now that no ``free_port`` hands out (the kernel's ephemeral range)."""
    with socket.socket() as s, socket.socket() as t:
        s.bind((LOCAL, 0))
        t.bind((LOCAL, 0))
        return int(s.getsockname()[1]), int(t.getsockname()[1])


def test_a_port_drawn_again_by_the_same_process_is_not_handed_out_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = _two_unused_ports()
    _draws(monkeypatch, [a, a, b])
    assert free_port() == a
    assert free_port() == b  # the second draw of a is passed over although a is not bound


def test_a_port_another_process_holds_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _two_unused_ports()
    _draws(monkeypatch, [a])
    assert free_port() == a  # this process reserves a (nothing binds it)
    child = (
        "import random\n"
        "from gridnet.node import devnet\n"
        f"draws = iter([{a}, {b}])\n"
        "random.randrange = lambda lo, hi: next(draws)\n"
        "print(devnet.free_port())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(out.stdout) == b


def test_a_bound_port_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _two_unused_ports()
    with socket.socket() as s:
        s.bind((LOCAL, a))
        _draws(monkeypatch, [a, b])
        assert free_port() == b


def test_a_process_holds_a_bounded_number_of_reservations() -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3 * RESERVED_KEPT):
        free_port()
    assert len(os.listdir("/proc/self/fd")) <= before + RESERVED_KEPT
