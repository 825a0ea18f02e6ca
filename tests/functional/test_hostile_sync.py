"""Hostile peers against a real node process on 127.0.0.1, speaking the link protocol
(``gridnet.net.tcp.dial``, ``frame``, ``read_frame``): each performs an attack of the issue
"Harden the protocol and the node against hostile peers and users" and the test asserts the
named outcome, the node's memory or store growth against a bound the attack would break, and
that the node still syncs from an honest peer.

1. Sync poisoning: 100,000 cheap headers of a lighter branch, fed by a peer that then leaves
   (before: the node stayed at height 0 although an honest heavier peer was linked); and a
   genesis whose minimum chain work such a branch never reaches.
2. Side-block junk: blocks forking at genesis with 0.65 MB of never-validated bodies each
   (before: 20 MB stored in 6 s).
3. 40 short links each sending one status with a 3.9 MB ``total_work`` (before: 170 MB held
   after they left).
4. A height announced, never served: 10**15 with no work, every 2 s (before: /status said
   syncing, progress 0.0, for as long as the link lasted); or more work than ours, answered
   with headers the node holds.

Every process started here is stopped, by PID (the ``nodes`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from gridnet.crypto.hashing import header_hash, txid
from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.encoding import encode
from gridnet.ledger.blocks import BLOCK_VERSION, Block, Header
from gridnet.ledger.chain import Chain
from gridnet.ledger.genesis import chain_id_of, genesis_block
from gridnet.ledger.merkle import merkle_root
from gridnet.ledger.params import ChainParams
from gridnet.ledger.pow import mine, next_target
from gridnet.ledger.store import DB_NAME
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.txs.transfer import Transfer
from gridnet.net.tcp import dial, frame, read_frame
from gridnet.node.config import CONFIG_NAME
from gridnet.node.devnet import LOCAL, DevNode, free_port, stop_all
from gridnet.node.messages import (
    MAX_HEADERS,
    BlockMsg,
    BlocksMsg,
    GetBlocksMsg,
    GetHeadersMsg,
    HeadersMsg,
    Message,
    StatusMsg,
    decode_message,
    encode_message,
    encode_work,
)
from gridnet.node.node import NodeConfig
from gridnet.work import target_from_bits, target_to_bytes, work_of_target
from tests.helpers import extend, test_params, wait_for
from tests.node.branches import cheap_branch

WAIT_S = 180.0
"""Ceiling for a node to start, answer, sync or drop what a peer left [s]: far above what a
busy machine needs (the tests wait for conditions, never for a fixed time)."""
CHEAP_HEADERS = 100_000
HONEST_BLOCKS = 100
LIE = 10**12
"""The work a hostile peer announces."""
MB = 1 << 20
EXPIRING_TIMEOUT_MS = 2_000
"""The victim's request timeout where its pending headers must expire within the test."""


def new_node(root: Path, name: str, params: ChainParams) -> DevNode:
    node = DevNode(name, root / name, free_port(), free_port())
    Chain.create(node.data_dir, params).close()
    write_key_file(node.data_dir / "node.key", PrivateKey.from_label(f"hostile-sync-{name}"))
    return node


def rss_bytes(node: DevNode) -> int:
    """The node process's resident memory (VmRSS of /proc/PID/status) [bytes]."""
    assert node.process is not None
    for line in Path(f"/proc/{node.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def store_bytes(node: DevNode) -> int:
    """Size of the node's SQLite store with its write-ahead log [bytes]."""
    return sum(p.stat().st_size for p in node.data_dir.glob(f"{DB_NAME}*"))


def headers_pending(node: DevNode) -> int:
    """The node's checked headers awaiting their blocks (GET /status)."""
    client = node.client()
    try:
        return int(client.get("/status")["sync"]["headers_pending"])
    finally:
        client.close()


def log_of(node: DevNode) -> str:
    return (node.data_dir / "node.log").read_text()


def started(node: DevNode, *args: str) -> DevNode:
    node.start(*args)
    assert wait_for(lambda: node.head() is not None, WAIT_S), f"{node.name} did not start"
    return node


class Session(Protocol):
    def encrypt(self, plaintext: bytes) -> bytes: ...
    def decrypt(self, data: bytes) -> bytes: ...


@dataclass
class Hostile:
    """A peer speaking the link protocol from this test."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    session: Session
    received: list[str] = field(default_factory=list)
    """Types of the messages the node sent it while it fed headers."""

    @classmethod
    async def link(cls, port: int, chain_id: bytes, label: str) -> Hostile:
        reader, writer, session = await dial(LOCAL, port, PrivateKey.from_label(label), chain_id)
        return cls(reader, writer, session)

    async def send(self, msg: Message) -> None:
        self.writer.write(frame(self.session.encrypt(encode_message(msg))))
        await self.writer.drain()

    async def receive(self, seconds: float) -> Message | None:
        """The node's next message (None: none within ``seconds``, or the link closed)."""
        try:
            raw = await asyncio.wait_for(read_frame(self.reader), seconds)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None
        return decode_message(self.session.decrypt(raw))

    async def handled(self, genesis: bytes) -> None:
        """Return once the node has handled everything sent so far: it handles a link's
        messages in order, so its answer to one more request comes after them."""
        await self.send(GetHeadersMsg((genesis,), 1))
        while not isinstance(msg := await self.receive(WAIT_S), HeadersMsg):
            assert msg is not None, "the node closed the link"

    async def leave(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def feed_headers(self, branch: list[Header], genesis: bytes, work: int) -> int:
        """Announce ``work`` and answer the node's header requests from ``branch`` until it
        asks for blocks (left unanswered) or stops asking; then push the rest of the branch
        anyway, unasked. Returns how many of them the node asked for."""
        index = {header_hash(encode(h)): i for i, h in enumerate(branch)}
        tip = header_hash(encode(branch[-1]))
        await self.send(StatusMsg(len(branch), tip, encode_work(work)))
        served = 0
        while (msg := await self.receive(30.0)) is not None:
            self.received.append(type(msg).__name__)
            if isinstance(msg, GetBlocksMsg):
                break
            if not isinstance(msg, GetHeadersMsg):
                continue
            start = next((index[h] + 1 for h in msg.locator if h in index), 0)
            batch = branch[start : start + min(msg.limit, MAX_HEADERS)]
            await self.send(HeadersMsg(tuple(batch)))
            served = max(served, start + len(batch))
            if len(batch) < MAX_HEADERS:
                break
        for i in range(served, len(branch), MAX_HEADERS):
            await self.send(HeadersMsg(tuple(branch[i : i + MAX_HEADERS])))
        return served


def honest_chain(path: Path, params: ChainParams, blocks: int) -> None:
    """Mine ``blocks`` blocks into the data directory at ``path``, one block interval apart
    (the target stays the genesis one)."""
    chain = Chain.open(path)
    try:
        for _ in range(blocks):
            extend(chain, timestamp=chain.head.header.timestamp + params.block_interval_ms)
    finally:
        chain.close()


def poisoning_params(min_chain_work: int = 0) -> ChainParams:
    """12-bit blocks at first (the honest chain), down to 1 bit for a branch whose
    timestamps say blocks came slowly (the cheap one); 10 ms block interval, genesis two hours
    old (100,000 cheap headers span about 17 minutes)."""
    return test_params(
        [],
        genesis_time=int(time.time() * 1000) - 2 * 3_600_000,
        block_interval_ms=10,
        initial_target=target_to_bytes(target_from_bits(12)),
        pow_limit=target_to_bytes(target_from_bits(1)),
        retarget_window=20,
        max_retarget_factor=4,
        min_chain_work=min_chain_work.to_bytes(32, "big"),
    )


def branch_work(params: ChainParams, headers: list[Header]) -> int:
    genesis = work_of_target(params.initial_target_int)
    return genesis + sum(work_of_target(int.from_bytes(h.target, "big")) for h in headers)


@pytest.fixture(scope="module")
def poisoning() -> Iterator[tuple[ChainParams, list[Header]]]:
    params = poisoning_params()
    yield params, cheap_branch(params, CHEAP_HEADERS)


def test_100k_cheap_headers_from_a_peer_that_leaves_do_not_stop_the_sync(
    tmp_path: Path, nodes: list[DevNode], poisoning: tuple[ChainParams, list[Header]]
) -> None:
    params, cheap = poisoning
    per_peer = NodeConfig.max_headers_per_peer
    victim, honest = new_node(tmp_path, "victim", params), new_node(tmp_path, "honest", params)
    # Pending headers expire after 12 request timeouts: 24 s here rather than the default 60 s.
    (victim.data_dir / CONFIG_NAME).write_text(f"request_timeout_ms = {EXPIRING_TIMEOUT_MS}\n")
    honest_chain(honest.data_dir, params, HONEST_BLOCKS)
    assert branch_work(params, cheap) < (HONEST_BLOCKS + 1) * work_of_target(params.initial_target_int)
    nodes += [victim, honest]
    started(victim)
    rss_before = rss_bytes(victim)
    genesis = chain_id_of(params)

    async def attack() -> None:
        # A peer feeds 100,000 headers of a lighter branch, then leaves.
        first = await Hostile.link(victim.port, genesis, "poisoner-1")
        asked = await first.feed_headers(cheap, genesis, LIE)
        assert asked == per_peer and first.received[-1] == "GetBlocksMsg"
        held = await asyncio.to_thread(headers_pending, victim)
        assert held == per_peer  # its share: the other 90,000 were not kept
        await first.leave()
        assert await asyncio.to_thread(wait_for, lambda: headers_pending(victim) == 0, WAIT_S), (
            "the pending headers of a peer that left are still held"
        )
        # Another does the same and stays linked; the honest heavier peer links meanwhile.
        second = await Hostile.link(victim.port, genesis, "poisoner-2")
        assert await second.feed_headers(cheap, genesis, LIE) == per_peer
        honest.start("--peer", f"{LOCAL}:{victim.port}")
        assert await asyncio.to_thread(wait_for, lambda: victim.stored_height() == HONEST_BLOCKS, WAIT_S), (
            "the node did not sync from the honest peer"
        )
        # It synced while the poisoner's headers were held: they did not have to expire first.
        assert await asyncio.to_thread(headers_pending, victim) == per_peer
        # The second poisoner's headers lead nowhere: they expire while it stays linked.
        assert await asyncio.to_thread(wait_for, lambda: headers_pending(victim) == 0, WAIT_S), (
            "the pending headers of a silent peer did not expire"
        )
        await second.leave()

    asyncio.run(attack())
    grown = rss_bytes(victim) - rss_before
    stop_all(nodes)
    log = log_of(victim)
    assert f"dropped {per_peer} pending header(s)" in log
    assert ": PendingHeadersExpired:" in log
    # 100,000 kept headers took about 70 MB; the node kept at most 10,000 at a time.
    assert grown < 40 * MB, f"the node grew by {grown / MB:.0f} MB"


def test_a_branch_below_the_minimum_chain_work_is_never_kept(tmp_path: Path, nodes: list[DevNode]) -> None:
    block_work = work_of_target(target_from_bits(12))
    params = poisoning_params(min_chain_work=(HONEST_BLOCKS + 1) * block_work)
    cheap = cheap_branch(params, CHEAP_HEADERS)
    assert branch_work(params, cheap) < params.min_chain_work_int
    victim, honest = new_node(tmp_path, "victim", params), new_node(tmp_path, "honest", params)
    honest_chain(honest.data_dir, params, HONEST_BLOCKS)
    low = Chain.open(honest.data_dir, readonly=True)
    first_block = low.block_at(1)  # a real block, on a branch below the minimum by itself
    low.close()
    assert first_block is not None
    nodes += [victim, honest]
    started(victim)
    genesis = chain_id_of(params)
    store_before = store_bytes(victim)
    seen_pending: list[int] = []

    async def attack() -> None:
        peer = await Hostile.link(victim.port, genesis, "below-minimum")
        feeding = asyncio.create_task(peer.feed_headers(cheap, genesis, LIE))
        while not feeding.done():  # the node never holds any of them
            seen_pending.append(await asyncio.to_thread(headers_pending, victim))
            await asyncio.sleep(0.2)
        assert await feeding == CHEAP_HEADERS  # all checked (presync), in 50 answers
        assert "GetBlocksMsg" not in peer.received
        await peer.send(BlockMsg(first_block))
        await peer.send(StatusMsg(1, bytes(32), encode_work(2 * block_work)))
        await peer.handled(genesis)
        await peer.leave()

    asyncio.run(attack())
    assert seen_pending and max(seen_pending) == 0
    assert victim.stored_height() == 0
    assert store_bytes(victim) - store_before < MB
    honest.start("--peer", f"{LOCAL}:{victim.port}")
    assert wait_for(lambda: victim.stored_height() == HONEST_BLOCKS, WAIT_S), "no sync from the honest peer"
    stop_all(nodes)
    log = log_of(victim)
    assert f"{CHEAP_HEADERS} header(s) up to height {CHEAP_HEADERS} checked, none kept" in log
    assert ": BelowMinChainWork:" in log


# --- 2. side-block junk ----------------------------------------------------------------------


def junk_txs(n: int, body_bytes: int) -> tuple[tuple[Transaction, ...], bytes]:
    """``body_bytes`` of transactions no node ever validated (random keys and signatures),
    and their transaction root."""
    rand = os.urandom
    txs = []
    size = 0
    while size < body_bytes:
        tx = Transaction(Transfer(rand(20), 1), rand(32), n, 1, rand(64))
        txs.append(tx)
        size += len(encode(tx))
    ids = [txid(encode((t.payload, t.sender, t.nonce, t.fee)), t.signature) for t in txs]
    return tuple(txs), merkle_root(ids)


def junk_side_block(params: ChainParams, n: int, body_bytes: int) -> Block:
    """A block on genesis at the genesis target, with ``body_bytes`` of junk transactions
    under a matching transaction root."""
    txs, root = junk_txs(n, body_bytes)
    genesis = genesis_block(params).header
    draft = Header(
        BLOCK_VERSION,
        1,
        header_hash(encode(genesis)),
        root,
        bytes(32),
        genesis.timestamp + 1_000 + n,
        params.initial_target,
        0,
        bytes(20),
    )
    header = mine(draft, 1 << 40)
    assert header is not None
    return Block(header, txs)


def junk_blocks(params: ChainParams, count: int, body_bytes: int) -> list[Block]:
    """``count`` blocks from genesis with ``body_bytes`` of junk transactions each, at the
    targets the retarget rule sets for blocks as slow as its clamp lets count."""
    headers = [genesis_block(params).header]
    blocks = []
    for n in range(count):
        parent = headers[-1]
        txs, root = junk_txs(n, body_bytes)
        draft = Header(
            BLOCK_VERSION,
            parent.height + 1,
            header_hash(encode(parent)),
            root,
            bytes(32),
            parent.timestamp + params.block_interval_ms * params.max_retarget_factor,
            next_target(params, parent, lambda h: headers[h].timestamp),
            0,
            bytes(20),
        )
        header = mine(draft, 1 << 40)
        assert header is not None
        headers.append(header)
        blocks.append(Block(header, txs))
    return blocks


def follows(victim: DevNode, miner: DevNode, blocks: int) -> Callable[[], bool]:
    target = miner.stored_height() + blocks
    return lambda: victim.stored_height() >= target


def test_side_blocks_with_junk_bodies_are_not_stored(tmp_path: Path, nodes: list[DevNode]) -> None:
    params = test_params([], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    miner, victim = new_node(tmp_path, "miner", params), new_node(tmp_path, "victim", params)
    nodes += [miner, victim]
    started(miner, "--mine", "--hashes-per-tick", "300")
    started(victim, "--peer", f"{LOCAL}:{miner.port}")
    assert wait_for(lambda: victim.stored_height() >= 2, WAIT_S)
    junk = [junk_side_block(params, n, 650_000) for n in range(30)]
    store_before = store_bytes(victim)

    async def attack() -> None:
        peer = await Hostile.link(victim.port, chain_id_of(params), "side-junk")
        for block in junk:
            await peer.send(BlockMsg(block))
        await peer.handled(chain_id_of(params))
        await peer.leave()

    asyncio.run(attack())
    grown = store_bytes(victim) - store_before
    assert wait_for(follows(victim, miner, 2), WAIT_S), "the node stopped following the honest miner"
    stop_all(nodes)
    assert ": LighterBranch:" in log_of(victim)
    # 30 bodies of 0.65 MB would take 19.5 MB; none was stored.
    assert grown < 2 * MB, f"the store grew by {grown / MB:.1f} MB"


def test_a_lying_peer_keeps_no_lighter_branch_and_stores_no_body_through_it(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    """A peer announces far more work than it has and answers with full batches of a lighter
    branch (before: kept as pending headers, as its branch had not "ended"), then pushes the
    bodies of its first blocks, unasked and gossiped (before: stored through those headers)."""
    params = poisoning_params()
    victim = new_node(tmp_path, "victim", params)
    honest_chain(victim.data_dir, params, HONEST_BLOCKS)
    bodies = junk_blocks(params, 5, 400_000)
    branch = cheap_branch(params, 2 * MAX_HEADERS + 5, base=[b.header for b in bodies])
    assert branch_work(params, branch) < (HONEST_BLOCKS + 1) * work_of_target(params.initial_target_int)
    nodes.append(victim)
    started(victim)
    genesis = chain_id_of(params)
    store_before = store_bytes(victim)
    seen_pending: list[int] = []

    async def attack() -> None:
        peer = await Hostile.link(victim.port, genesis, "lighter-liar")
        feeding = asyncio.create_task(peer.feed_headers(branch, genesis, LIE))
        while not feeding.done():
            seen_pending.append(await asyncio.to_thread(headers_pending, victim))
            await asyncio.sleep(0.2)
        assert await feeding == len(branch)  # all checked, in full batches but the last
        assert "GetBlocksMsg" not in peer.received
        await peer.send(BlocksMsg(tuple(bodies)))  # nobody asked
        for block in bodies:
            await peer.send(BlockMsg(block))
        await peer.handled(genesis)
        seen_pending.append(await asyncio.to_thread(headers_pending, victim))
        await peer.leave()

    asyncio.run(attack())
    grown = store_bytes(victim) - store_before
    assert victim.stored_height() == HONEST_BLOCKS
    stop_all(nodes)
    assert seen_pending and max(seen_pending) == 0  # none of its headers was ever held
    assert grown < MB, f"the store grew by {grown / MB:.1f} MB"  # 5 bodies would take 2 MB
    log = log_of(victim)
    assert f"{len(branch)} header(s) up to height {len(branch)} checked, none kept" in log
    assert ": LighterBranch:" in log


# --- 3. memory held by departed peers ----------------------------------------------------------


def test_departed_peers_with_huge_work_fields_leave_no_memory_held(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    params = test_params([], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    miner, victim = new_node(tmp_path, "miner", params), new_node(tmp_path, "victim", params)
    nodes += [miner, victim]
    started(miner, "--mine", "--hashes-per-tick", "300")
    started(victim, "--peer", f"{LOCAL}:{miner.port}")
    assert wait_for(lambda: victim.stored_height() >= 1, WAIT_S)
    rss_before = rss_bytes(victim)
    chain_id = chain_id_of(params)

    async def one(i: int, links: asyncio.Semaphore) -> None:
        async with links:  # (8 at a time: a node takes few handshakes at once)
            peer = await Hostile.link(victim.port, chain_id, f"huge-work-{i}")
            await peer.send(StatusMsg(10**6, bytes(32), b"\xff" * 3_900_000))
            deadline = time.monotonic() + 10.0  # a short link: gone after 10 s at most
            while time.monotonic() < deadline and await peer.receive(1.0) is not None:
                pass
            await peer.leave()

    async def attack() -> None:
        links = asyncio.Semaphore(8)
        await asyncio.gather(*(one(i, links) for i in range(40)))

    asyncio.run(attack())
    assert wait_for(lambda: (h := victim.head()) is not None and h["peers"] == 1, WAIT_S)
    grown = rss_bytes(victim) - rss_before
    assert wait_for(follows(victim, miner, 2), WAIT_S), "the node stopped following the honest miner"
    stop_all(nodes)
    assert grown < 32 * MB, f"the node holds {grown / MB:.0f} MB more after the links left"
    assert ": WrongType:" in log_of(victim)  # each status refused as it was decoded


# --- 4. a height announced, never served -----------------------------------------------------


def sync_status(node: DevNode) -> tuple[dict[str, object], float]:
    """The node's ``/status`` sync object and its ``gridnet_sync_target_height`` metric."""
    from tests.functional.test_node_ops import _metrics

    client = node.client()
    try:
        sync = client.get("/status")["sync"]
    finally:
        client.close()
    return sync, _metrics(node)["gridnet_sync_target_height"]


def test_a_height_a_peer_announces_but_never_serves_does_not_make_the_node_syncing(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    params = test_params([], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    victim = new_node(tmp_path, "victim", params)
    honest_chain(victim.data_dir, params, 10)
    chain = Chain.open(victim.data_dir, readonly=True)
    ours = tuple(e.header for e in chain.main[1:])
    chain.close()
    nodes.append(victim)
    started(victim)
    genesis = chain_id_of(params)
    synced = {"target_height": 10, "progress": 1.0, "syncing": False, "headers_pending": 0}
    assert sync_status(victim) == (synced, 10)

    async def attack() -> None:
        liar = await Hostile.link(victim.port, genesis, "height-liar")
        for _ in range(3):  # as often as an honest peer's status
            await liar.send(StatusMsg(10**15, os.urandom(32), encode_work(0)))
            await liar.handled(genesis)
            assert await asyncio.to_thread(sync_status, victim) == (synced, 10)
        stale = await Hostile.link(victim.port, genesis, "stale-liar")
        await stale.send(StatusMsg(10**15, os.urandom(32), encode_work(LIE)))
        while not isinstance(msg := await stale.receive(WAIT_S), GetHeadersMsg):
            assert msg is not None, "the node closed the link"
        await stale.send(HeadersMsg(ours))  # what the node holds
        await stale.handled(genesis)
        assert await asyncio.to_thread(sync_status, victim) == (synced, 10)
        await liar.leave()
        await stale.leave()

    asyncio.run(attack())
