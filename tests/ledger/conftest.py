"""Every block a ledger test adds to a chain keeps the chain's coin accounted for.

After each block that moves a chain's head, the coin its state holds (accounts and every
escrow) plus what its rules destroyed must equal what the chain created
(``ledger/supply.py``): a rule that made or lost coin fails the test that ran it, whatever
that test checks itself. A test marked ``coin_unchecked`` (one that breaks a rule on purpose
to see the audit find it) goes without."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gridnet.ledger import supply
from gridnet.ledger.chain import AddResult, Chain


@pytest.fixture(autouse=True)
def coin_accounted_for(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("coin_unchecked") is not None:
        yield
        return
    add_block = Chain.add_block

    def checked(self: Chain, *args: Any, **kwargs: Any) -> AddResult:
        head = self.head.hash
        result = add_block(self, *args, **kwargs)
        if self.head.hash != head:
            supply.check(self.params, self.head.height, self.values)
        return result

    monkeypatch.setattr(Chain, "add_block", checked)
    yield
