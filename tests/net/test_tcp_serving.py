"""Sync requests (blocks and headers) over real links on 127.0.0.1 are answered within one
budget per host (``node/serving.py``): two keys that dial from the same address and ask for
the same blocks, or the same headers, in a loop are sent no more together than one host's
rate allows, while an honest node syncing a chain over that budget from the same address
(headers first, then blocks) gets every block without waiting out its request timeout.

The nodes run on a counting clock (each reading moves it on), so what is measured — bytes
sent against the time the node saw pass — does not depend on how busy the machine is."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.ledger.chain import Chain
from gridnet.net.tcp import TcpTransport, dial, frame, read_frame
from gridnet.node.messages import (
    BlocksMsg,
    GetBlocksMsg,
    GetHeadersMsg,
    HeadersMsg,
    Message,
    decode_message,
    encode_message,
)
from gridnet.node.node import Node, NodeConfig, Outgoing
from tests.helpers import GENESIS_TIME, INTERVAL, served_chain, wait_until

LOCAL = "127.0.0.1"
WAIT_S = 120.0
"""Ceiling for a condition to hold [s] (far above a busy machine's need)."""
RATE = 20_000
"""Block bytes one host may be sent per second of the node's clock, in these tests."""
BURST = 1_000


class CountingClock:
    """The node's clock: each reading moves it on by ``step_ms``."""

    def __init__(self, start_ms: int, step_ms: int) -> None:
        self._ticks = itertools.count(start_ms, step_ms)
        self.last = start_ms

    def __call__(self) -> int:
        self.last = next(self._ticks)
        return self.last


def spied(node: Node) -> Counter[str]:
    """Block and header bytes the node sends each peer in answers (what its ``handle`` and
    ``tick`` return: sent at once or after a wait)."""
    sent: Counter[str] = Counter()
    handle, tick = node.handle, node.tick

    def count(out: list[Outgoing]) -> list[Outgoing]:
        for peer, msg in out:
            if isinstance(msg, BlocksMsg):
                sent[peer] += sum(len(encode(b)) for b in msg.blocks)
            elif isinstance(msg, HeadersMsg):
                sent[peer] += sum(len(encode(h)) for h in msg.headers)
        return out

    node.handle = lambda peer, msg, now: count(handle(peer, msg, now))  # type: ignore[method-assign]
    node.tick = lambda now: count(tick(now))  # type: ignore[method-assign]
    return sent


def largest_answer(chain: Chain) -> int:
    """An upper bound of one answer's block bytes (four blocks, as ``limited`` sends)."""
    return 4 * max(len(encode(chain.block_at(h))) for h in range(1, chain.height + 1))


def limited(chain: Chain, clock: Callable[[], int], label: str) -> TcpTransport:
    config = NodeConfig(serve_bytes_per_s=RATE, serve_burst_bytes=BURST, blocks_per_request=4)
    return TcpTransport(
        Node(label, chain, config),
        PrivateKey.from_label(f"serving-{label}"),
        (LOCAL, 0),
        [],
        tick_ms=20,
        clock=clock,
    )


async def until(condition: Callable[[], bool]) -> bool:
    return await wait_until(condition, WAIT_S)


@pytest.mark.parametrize("kind", ["blocks", "headers"])
def test_two_keys_of_one_host_asking_in_a_loop_share_one_budget(tmp_path: Path, kind: str) -> None:
    """Two keys dial from 127.0.0.1 and each asks for the same blocks (or headers) again and
    again as fast as the link takes it: together they are sent at most the burst, the rate
    over the time the node's clock shows and one answer (two budgets, or none, would send far
    more), each in its turn."""

    async def scenario() -> None:
        chain = served_chain(tmp_path / "a", 8)
        start = GENESIS_TIME + 20 * INTERVAL
        clock = CountingClock(start, 10)
        a = limited(chain, clock, "a")
        sent = spied(a.node)
        await a.start()
        locator = (chain.main[0].hash,)
        ask = encode_message(GetBlocksMsg(locator, 64) if kind == "blocks" else GetHeadersMsg(locator, 2_000))
        stop = asyncio.Event()
        received: Counter[str] = Counter()

        async def looper(label: str) -> None:
            reader, writer, session = await dial(LOCAL, a.port, PrivateKey.from_label(label), chain.chain_id)

            async def read() -> None:
                while True:
                    msg: Message = decode_message(session.decrypt(await read_frame(reader)))
                    if isinstance(msg, BlocksMsg | HeadersMsg):
                        received[label] += 1

            reading = asyncio.create_task(read())
            try:
                while not stop.is_set():
                    writer.write(frame(session.encrypt(ask)))
                    await writer.drain()
                    await asyncio.sleep(0.002)
            finally:
                reading.cancel()
                writer.close()

        loops = [asyncio.create_task(looper(label)) for label in ("looper-1", "looper-2")]
        try:
            span = 20_000  # of the node's clock [ms]
            assert await until(lambda: clock.last >= start + span)
            assert await until(lambda: min(received.values(), default=0) >= 2)  # each was answered
            assert len(a.links) == 2  # (over budget is not a fault: both still linked while they ask)
            stop.set()
            await asyncio.gather(*loops)
            elapsed = clock.last - start
            served = sum(sent.values())
            assert len(sent) == 2
            assert served <= BURST + RATE * elapsed // 1000 + largest_answer(chain), (served, elapsed)
            assert served >= RATE * elapsed // 1000 // 4, (served, elapsed)  # (waiting, not starved)
            stats = a.node.stats
            assert stats.block_requests_delayed > 0 and stats.block_requests_refused["RequestSuperseded"] > 0
            assert stats.peer_faults == {}
        finally:
            stop.set()
            for loop in loops:
                loop.cancel()
            await a.stop()
            a.node.close()

    asyncio.run(scenario())


def test_an_honest_node_of_that_host_syncs_over_the_budget_without_a_timeout(tmp_path: Path) -> None:
    """An honest node on 127.0.0.1 syncs a chain many times the burst from a limited node
    (both on one counting clock, so waits and request timeouts are measured alike): it gets
    every block, none of its requests is refused, and it never flags the server
    ``RequestUnanswered`` — while the server sent no more than its rate."""

    async def scenario() -> None:
        blocks = 40
        chain = served_chain(tmp_path / "a", blocks)
        total = sum(len(encode(chain.block_at(h))) for h in range(1, blocks + 1))
        start = GENESIS_TIME + (blocks + 10) * INTERVAL
        clock = CountingClock(start, 5)
        a = limited(chain, clock, "a")
        sent = spied(a.node)
        await a.start()
        asker = Node("b", Chain.create(tmp_path / "b", chain.params))
        b = TcpTransport(
            asker, PrivateKey.from_label("serving-b"), (LOCAL, 0), [(LOCAL, a.port)], tick_ms=20, clock=clock
        )
        await b.start()
        try:
            assert await until(lambda: asker.chain.height == blocks)
            elapsed = clock.last - start
            assert asker.chain.head.hash == chain.head.hash
            served = sum(sent.values())  # (each block once, and the headers)
            assert served >= total + blocks * len(encode(chain.main[1].header))
            assert total > 10 * BURST
            stats = a.node.stats
            assert stats.block_requests_delayed > 0  # (over the budget)
            assert sum(stats.block_requests_refused.values()) == 0
            assert asker.stats.declined["RequestUnanswered"] == 0
            assert served <= BURST + RATE * elapsed // 1000 + largest_answer(chain)
        finally:
            await b.stop()
            await a.stop()
            asker.close()
            a.node.close()

    asyncio.run(scenario())
