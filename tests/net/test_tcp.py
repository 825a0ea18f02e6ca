"""TCP links on 127.0.0.1: a Noise handshake authenticated by node keys, encrypted frames;
misbehaving peers are dropped while the others keep working."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import WrongChain
from gridnet.ledger.chain import Chain
from gridnet.net import tcp
from gridnet.net.tcp import BAN_S, MAX_FRAME, MAX_REFUSALS_KEPT, TcpTransport, dial, frame
from gridnet.node.messages import Message, encode_message
from gridnet.node.node import Node, NodeConfig, Outgoing
from tests.helpers import GENESIS_TIME, extend, new_chain, test_params, wait_until
from tests.net.rogue import closes, forged_identity

LOCAL = "127.0.0.1"
MINER = PrivateKey.from_label("tcp-miner")
WAIT_S = 60.0
"""Ceiling for the transport to close a bad link or sync [s] (far above a busy machine's need)."""


def _name(label: str) -> str:
    return address_to_text(PrivateKey.from_label(label).address)


def transport(chain: Chain, name: str, peers: list[tuple[str, int]], *, mine: bool = False) -> TcpTransport:
    key = PrivateKey.from_label(f"tcp-{name}")
    node = Node(name, chain, NodeConfig(miner=MINER.address if mine else None, hashes_per_tick=300))
    clock = iter(range(GENESIS_TIME + 1_000, GENESIS_TIME + 10**9, 50))
    return TcpTransport(node, key, (LOCAL, 0), peers, tick_ms=20, clock=lambda: next(clock))


async def closed(reader: asyncio.StreamReader) -> bool:
    return await closes(reader, WAIT_S)


def test_bad_peers_are_disconnected_while_good_links_keep_syncing(tmp_path: Path) -> None:
    async def scenario() -> None:
        params = test_params([])
        a = transport(new_chain(tmp_path / "a", params), "a", [], mine=True)
        await a.start()
        b = transport(new_chain(tmp_path / "b", params), "b", [(LOCAL, a.port)])
        await b.start()
        chain_id = a.node.chain.chain_id
        try:
            # 1. Garbage instead of a hello.
            r, w = await asyncio.open_connection(LOCAL, a.port)
            w.write(frame(b"\xc1 not a hello"))
            assert await closed(r)
            # 2. A handshake whose identity is signed by another key than the one it names.
            key, other = PrivateKey.from_label("rogue-1"), PrivateKey.from_label("rogue-2")
            assert await closed(await forged_identity(LOCAL, a.port, chain_id, key, other))
            # 3. A valid link, then a frame that does not authenticate.
            r, w, _ = await dial(LOCAL, a.port, PrivateKey.from_label("rogue-3"), chain_id)
            w.write(frame(b"\x00" * 40))
            assert await closed(r)
            # 4. A valid link, then a frame announcing more than the limit.
            r, w, _ = await dial(LOCAL, a.port, PrivateKey.from_label("rogue-4"), chain_id)
            w.write(struct.pack(">I", MAX_FRAME + 1))
            assert await closed(r)
            # 5. Another chain.
            with pytest.raises(WrongChain):  # each side refuses the other's hello
                await dial(LOCAL, a.port, PrivateKey.from_label("rogue-5"), b"\x07" * 32)
            # 6. A valid link, then an authentic frame sent twice (replayed).
            r, w, session = await dial(LOCAL, a.port, PrivateKey.from_label("rogue-6"), chain_id)
            sealed = frame(session.encrypt(encode_message(a.node.status())))
            w.write(sealed + sealed)
            assert await closed(r)
            rules = a.stats.disconnected
            assert rules[_name("rogue-3")] == rules[_name("rogue-6")] == "SealedBoxError"
            assert rules[_name("rogue-4")] == "FrameTooLarge"
            # Meanwhile the honest link still carries blocks.
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                if b.node.chain.height >= 3 and b.node.chain.head.hash == a.node.chain.head.hash:
                    break
            assert b.node.chain.height >= 3
            assert len(a.links) == 1
        finally:
            await b.stop()
            await a.stop()

    asyncio.run(scenario())


def test_what_is_kept_of_cut_off_peers_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Node keys cost nothing to make: bans that ended are forgotten, and the rules of the
    last ``MAX_REFUSALS_KEPT`` cut-off peers are remembered, however many were cut off."""
    t = transport(new_chain(tmp_path / "a", test_params([])), "a", [])
    clock = [1_000.0]
    monkeypatch.setattr(tcp.time, "monotonic", lambda: clock[0])
    for i in range(3 * MAX_REFUSALS_KEPT):
        t._ban(f"peer-{i}", "FrameTooLarge", "a frame too large")
        clock[0] += BAN_S / MAX_REFUSALS_KEPT
    assert len(t.stats.disconnected) == MAX_REFUSALS_KEPT
    assert (
        f"peer-{3 * MAX_REFUSALS_KEPT - 1}" in t.stats.disconnected and "peer-0" not in t.stats.disconnected
    )
    assert len(t.banned) <= MAX_REFUSALS_KEPT + 1  # only those still cut off
    assert all(until > clock[0] - BAN_S / MAX_REFUSALS_KEPT for until in t.banned.values())
    t.node.close()


def test_a_bug_met_on_a_link_ends_that_link_only_and_it_is_dialled_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error while a link is served (a bug the peer's message met) is logged
    with its traceback and ends that link; the node goes on, and dials that peer again."""

    async def until(condition: Callable[[], bool]) -> bool:
        return await wait_until(condition, WAIT_S)

    async def scenario() -> None:
        params = test_params([])
        a = transport(new_chain(tmp_path / "a", params), "a", [])
        await a.start()
        b = transport(new_chain(tmp_path / "b", params), "b", [(LOCAL, a.port)])
        handle, broken = b.node.handle, [True]

        def handle_once_broken(peer: str, msg: Message, now: int) -> list[Outgoing]:
            if broken[0]:
                broken[0] = False
                raise RuntimeError("a bug")
            return handle(peer, msg, now)

        b.node.handle = handle_once_broken  # type: ignore[method-assign]
        await b.start()
        try:
            assert await until(lambda: not broken[0])  # the first message met the bug
            assert await until(lambda: len(a.links) == 1 and len(b.links) == 1)  # linked again
            assert a.stats.connected == 2
        finally:
            await b.stop()
            await a.stop()

    with caplog.at_level(logging.ERROR, logger="gridnet.net"):
        asyncio.run(scenario())
    assert "failed: RuntimeError: a bug" in caplog.text


@pytest.mark.parametrize("txs", [b"\x91\xa1x", "x"])
def test_a_block_its_own_store_cannot_read_back_is_not_blamed_on_the_peer_that_asked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, txs: bytes | str
) -> None:
    """A damaged store met while serving a peer's request (transactions that do not decode, or
    TEXT another program wrote in place of their BLOB) is this node's fault: it is logged as
    such, the node reports its store damaged, and the honest peer that asked is neither cut
    off nor unlinked (it was, again and again)."""

    async def scenario() -> None:
        params = test_params([])
        chain = new_chain(tmp_path / "a", params)
        for _ in range(4):
            extend(chain)
        with chain.store.db:
            chain.store.db.execute("UPDATE blocks SET txs=? WHERE hash=?", (txs, chain.main[2].hash))
        a = transport(chain, "a", [])
        await a.start()
        b = transport(new_chain(tmp_path / "b", params), "b", [(LOCAL, a.port)])
        await b.start()
        try:
            assert await wait_until(lambda: any("cannot serve" in r.message for r in caplog.records), WAIT_S)
            assert not a.banned and not a.stats.disconnected
            assert b.node.chain.height < 2
            assert chain.store.damage is not None  # (/health says 503)
            await asyncio.sleep(0.5)
            assert len(a.links) == 1 and len(b.links) == 1 and a.stats.connected == 1  # the link stayed
        finally:
            await b.stop()
            await a.stop()

    with caplog.at_level(logging.ERROR, logger="gridnet.net"):
        asyncio.run(scenario())


def test_a_reorg_its_own_store_cannot_make_is_not_blamed_on_the_peer_that_sent_the_branch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The undo record of this node's head is gone: the heavier branch a peer sends cannot be
    switched to. That is this node's store, not the peer's fault: the peer is not cut off."""

    async def scenario() -> None:
        params = test_params([])
        chain = new_chain(tmp_path / "a", params)
        extend(chain)
        with chain.store.db:
            chain.store.db.execute("DELETE FROM undo WHERE hash=?", (chain.head.hash,))
        heavier = new_chain(tmp_path / "b", params)
        for _ in range(3):
            extend(heavier, miner=MINER)
        a = transport(chain, "a", [])
        await a.start()
        b = transport(heavier, "b", [(LOCAL, a.port)])
        await b.start()
        try:
            logged = lambda: any("undo record" in r.message for r in caplog.records)  # noqa: E731
            assert await wait_until(lambda: a.banned or logged(), WAIT_S)
            assert not a.banned and not a.stats.disconnected
            assert a.node.chain.height == 1 and a.node.chain.store.damage is not None
        finally:
            await b.stop()
            await a.stop()

    with caplog.at_level(logging.ERROR, logger="gridnet.net"):
        asyncio.run(scenario())


def test_two_nodes_with_one_key_are_told_so_not_that_they_met_themselves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A data directory copied to start a second node copies its node.key: the two never link,
    and both were told 'connected to itself'."""

    async def scenario() -> None:
        params = test_params([])
        key = PrivateKey.from_label("tcp-twin")
        clock = iter(range(GENESIS_TIME + 1_000, GENESIS_TIME + 10**9, 50))
        a = TcpTransport(Node("a", new_chain(tmp_path / "a", params)), key, (LOCAL, 0), [], tick_ms=20)
        await a.start()
        b = TcpTransport(
            Node("b", new_chain(tmp_path / "b", params)),
            key,
            (LOCAL, 0),
            [(LOCAL, a.port)],
            tick_ms=20,
            clock=lambda: next(clock),
        )
        await b.start()
        try:
            dialler = f"the node at {LOCAL}:{a.port} uses this node's own key"
            listener = "a node that dialled this one uses this node's own key"
            for told in (dialler, listener):
                assert await wait_until(lambda t=told: any(t in r.message for r in caplog.records), WAIT_S)
            assert a._same_key(f"{LOCAL}:{a.port}").endswith(
                "is this node itself (a --peer names its own listen address)"
            )
            assert not a.links and not b.links
        finally:
            await b.stop()
            await a.stop()

    with caplog.at_level(logging.INFO, logger="gridnet.net"):
        asyncio.run(scenario())
