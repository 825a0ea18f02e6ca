"""TCP links on 127.0.0.1: authenticated encrypted frames; misbehaving peers are dropped
while the others keep working."""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path

import pytest

from gridnet.crypto.boxes import ephemeral_keypair
from gridnet.crypto.keys import Domain, PrivateKey
from gridnet.encoding import encode
from gridnet.errors import WrongChain
from gridnet.ledger.chain import Chain
from gridnet.net.tcp import MAX_FRAME, Hello, TcpTransport, dial, frame
from gridnet.node.node import Node, NodeConfig
from tests.helpers import GENESIS_TIME, new_chain, test_params

LOCAL = "127.0.0.1"
MINER = PrivateKey.from_label("tcp-miner")
WAIT_S = 60.0
"""Ceiling for the transport to close a bad link or sync [s] (far above a busy machine's need)."""


def transport(chain: Chain, name: str, peers: list[tuple[str, int]], *, mine: bool = False) -> TcpTransport:
    key = PrivateKey.from_label(f"tcp-{name}")
    node = Node(name, chain, NodeConfig(miner=MINER.address if mine else None, hashes_per_tick=300))
    clock = iter(range(GENESIS_TIME + 1_000, GENESIS_TIME + 10**9, 50))
    return TcpTransport(node, key, (LOCAL, 0), peers, tick_ms=20, clock=lambda: next(clock))


async def closed(reader: asyncio.StreamReader) -> bool:
    """True when the transport closes the link (reading what it sends until then); False if
    it keeps it open for ``WAIT_S``."""
    try:
        while await asyncio.wait_for(reader.read(1 << 16), WAIT_S):
            pass
        return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False


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
            # 2. A hello signed by another key than the one it names.
            r, w = await asyncio.open_connection(LOCAL, a.port)
            key, other = PrivateKey.from_label("rogue-1"), PrivateKey.from_label("rogue-2")
            _, public = ephemeral_keypair()
            forged = Hello(1, chain_id, key.public_key, public, other.sign(Domain.PEER, chain_id + public))
            w.write(frame(encode(forged)))
            assert await closed(r)
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
            rules = set(a.stats.disconnected.values())
            assert {"FrameTooLarge", "SealedBoxError"} <= rules
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
