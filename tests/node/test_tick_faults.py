"""A node whose own work fails on an error that waiting will not cure stops, in one line
(``NodeFailed``), rather than keep answering with a head that no longer moves. (A store
that cannot be written for now — a full disk — is retried instead:
tests/functional/test_disk_full.py.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import NodeFailed
from gridnet.ledger.chain import Chain
from gridnet.node.client import INFO_NAME
from gridnet.node.config import NodeSettings
from gridnet.node.process import NodeOptions, serve
from tests.helpers import test_params

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
