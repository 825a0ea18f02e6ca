"""A node whose own work fails on an error that waiting will not cure stops, in one line
(``NodeFailed``), rather than keep answering with a head that no longer moves. (A store
that cannot be written for now — a full disk — is retried instead:
tests/functional/test_disk_full.py.)"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import NodeFailed
from gridnet.ledger.chain import Chain
from gridnet.node.client import INFO_NAME
from gridnet.node.config import NodeSettings
from gridnet.node.node import Node, NodeConfig
from gridnet.node.process import NodeOptions, serve
from tests.helpers import extend, test_params

WAIT_S = 60.0
"""Ceiling for the node to start, and to stop once its store is gone [s]."""


def test_a_tick_that_fails_for_good_stops_the_node_with_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "n"
    chain = Chain.create(data_dir, test_params([], genesis_time=int(time.time() * 1000) - 60_000))
    settings = NodeSettings(listen="127.0.0.1:0", api="off", mine=True, hashes_per_tick=300)
    options = NodeOptions(data_dir, settings, console_log=False)

    async def scenario() -> None:
        stop = asyncio.Event()
        node = asyncio.create_task(serve(options, chain, PrivateKey.from_label("tick-faults"), stop))
        async with asyncio.timeout(WAIT_S):
            while not (data_dir / INFO_NAME).exists():
                await asyncio.sleep(0.05)
        chain.store.db.close()  # the store is gone under the running node: the next write fails
        async with asyncio.timeout(WAIT_S):
            await node

    with pytest.raises(NodeFailed, match=r"^the node stopped: its tick failed with ProgrammingError: "):
        asyncio.run(scenario())
    chain.close()


def test_a_clock_stepped_back_behind_the_chain_pauses_mining_not_the_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A node that mined with its clock an hour ahead, then had it corrected: a block on its
    head must be stamped after the chain's median time, more than the 120 s any node takes
    ahead of the clock. Its own block was refused (TimestampTooFarInFuture) and the tick's
    failure stopped the node at every start; now mining waits, said once, and resumes."""
    chain = Chain.create(tmp_path / "n", test_params([]))
    for _ in range(12):
        extend(chain, timestamp=chain.head.header.timestamp + 300_000)  # (five minutes apart)
    head_time = chain.head.header.timestamp
    node = Node("n", chain, NodeConfig(miner=PrivateKey.from_label("clock").address, hashes_per_tick=5_000))
    stepped_back = head_time - 3_600_000
    with caplog.at_level(logging.INFO, logger="gridnet.mine"):
        for k in range(50):
            node.tick(stepped_back + k * 100)
        assert chain.height == 12
        assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
        assert caplog.records[0].message.startswith("mining paused: a block on the head must be stamped")
        caught_up = head_time
        assert wait_until_mined(node, chain, caught_up)
    assert any(r.message == "mining resumed: the clock caught up with the chain" for r in caplog.records)
    chain.close()


def wait_until_mined(node: Node, chain: Chain, now: int) -> bool:
    """Tick (a bounded number of times) until the node mines a block on the head."""
    for k in range(10_000):
        node.tick(now + k)
        if chain.height > 12:
            return True
    return False
