"""Fixtures for tests on real node processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gridnet.node.devnet import DevNode, stop_all


@pytest.fixture
def nodes() -> Iterator[list[DevNode]]:
    """Node processes a test starts (append them): all stopped, by PID, when it ends."""
    started: list[DevNode] = []
    try:
        yield started
    finally:
        stop_all(started)
