"""Hostile peers against a real node process on 127.0.0.1, speaking the link protocol.

* A peer relaying transactions that fail a check every relaying peer makes first (here 20,000
  forged signatures over one link) is cut off after ``MAX_FAULTS`` of them and refused when it
  comes back; it gets no rejection back for any of them, and the node keeps taking honest
  gossip.
* Readings batches of ~108 KB from an unregistered meter (no block can ever include them) are
  refused at admission with ``UnknownMeter`` — answered, no fault of the peer — and hold no
  memory; a flood of transfers then finds the pool bounded by bytes (``--mempool-max-mb 1``),
  every transaction either pending or reported with its rule.
* One message of 2,000 replacements of the last of a sender's 4,000 pending transactions
  takes the node a bounded work (``MAX_REPLACEMENTS`` taken, one application each, the rest
  refused ``TooManyReplacements``) and its API answers meanwhile.

The tests wait for outcomes (the node closing a link after our end of stream, conditions on
its API), never for a fixed time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import urllib.request
from functools import cache
from pathlib import Path
from typing import Protocol

import msgspec

from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.errors import GridnetError
from gridnet.ledger.chain import Chain
from gridnet.ledger.mempool import MAX_REPLACEMENTS
from gridnet.ledger.params import Allocation, ChainParams
from gridnet.ledger.transactions import Transaction, min_fee, sign_transaction, tx_id
from gridnet.ledger.txs.meter import MAX_READINGS_PER_TX, SubmitReadings
from gridnet.ledger.txs.transfer import Transfer
from gridnet.meter.reading import Reading, sign_reading
from gridnet.net.tcp import MAX_FAULTS, dial, frame, read_frame
from gridnet.node.devnet import LOCAL, DevNode, free_port, stop_all
from gridnet.node.messages import TxRejectedMsg, TxsMsg, decode_message, encode_message
from gridnet.units import UNITS_PER_GNC
from tests.helpers import test_params, wait_for, wait_until

WAIT_S = 180.0
"""Ceiling for a node to start, handle a flood and close the link, or answer [s]: far above
what a busy machine needs."""
FORGERIES = 20_000
COLLECTORS = [PrivateKey.from_label(f"hostile-collector-{i}") for i in range(133)]
PAYERS = [PrivateKey.from_label(f"hostile-payer-{i}") for i in range(90)]
PER_PAYER = 100
POOL_MB = 1


def get(node: DevNode, path: str) -> dict[str, object]:
    with urllib.request.urlopen(f"http://{LOCAL}:{node.api_port}{path}", timeout=WAIT_S) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def new_node(root: Path, name: str, funded: list[PrivateKey]) -> tuple[DevNode, ChainParams, bytes]:
    params = test_params([], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    params = msgspec.structs.replace(
        params, allocations=tuple(Allocation(k.address, 1_000 * UNITS_PER_GNC) for k in funded)
    )
    node = DevNode(name, root / name, free_port(), free_port())
    chain = Chain.create(node.data_dir, params)
    chain_id = chain.chain_id
    chain.close()
    write_key_file(node.data_dir / "node.key", PrivateKey.from_label(f"hostile-{name}"))
    return node, params, chain_id


class Cipher(Protocol):
    """A link's session (``net/tcp.py``: dial)."""

    def encrypt(self, plaintext: bytes) -> bytes: ...

    def decrypt(self, data: bytes) -> bytes: ...


class Link:
    """A peer's end of one link: sends transactions one per message, as fast as the node
    takes them, and collects what the node answers until it closes the link."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Cipher) -> None:
        self.reader, self.writer, self.session = reader, writer, session
        self.rejected: dict[bytes, str] = {}
        """Txid -> the rule the node reported."""
        self.frames = 0
        self.bytes_in = 0
        self._news = asyncio.Event()
        """Set when a rejection arrives."""
        self.listener = asyncio.create_task(self._listen())

    @classmethod
    async def open(cls, port: int, key: PrivateKey, chain_id: bytes) -> Link:
        reader, writer, session = await dial(LOCAL, port, key, chain_id)
        return cls(reader, writer, session)

    async def _listen(self) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):  # the node closed it
            while True:
                data = await read_frame(self.reader)
                self.frames += 1
                self.bytes_in += 4 + len(data)
                msg = decode_message(self.session.decrypt(data))
                if isinstance(msg, TxRejectedMsg):
                    self.rejected[msg.txid] = msg.rule
                    self._news.set()

    async def send(self, txs: list[Transaction]) -> None:
        """Send every transaction (stops quietly once the node has closed the link)."""
        with contextlib.suppress(ConnectionError):
            for i, tx in enumerate(txs):
                self.writer.write(frame(self.session.encrypt(encode_message(TxsMsg((tx,))))))
                if i % 200 == 0:
                    await self.writer.drain()
            await self.writer.drain()

    async def until_rejected(self, txids: set[bytes]) -> None:
        """Wait until the node has reported each of ``txids`` (or closed the link)."""
        while not txids <= self.rejected.keys() and not self.listener.done():
            self._news.clear()
            news = asyncio.create_task(self._news.wait())
            await asyncio.wait((news, self.listener), return_when=asyncio.FIRST_COMPLETED)
            news.cancel()

    async def close(self) -> None:
        """End our side and read until the node closes the link: by then it has answered for
        everything it read (closing with its answers unread would reset the link)."""
        with contextlib.suppress(ConnectionError):
            self.writer.write_eof()
        await asyncio.wait_for(self.listener, WAIT_S)
        self.writer.close()


def test_a_peer_flooding_forged_transactions_is_cut_off_unanswered(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    honest = PrivateKey.from_label("hostile-honest-sender")
    node, params, chain_id = new_node(tmp_path, "victim", [honest])
    nodes.append(node)
    node.start()
    assert wait_for(lambda: node.head() is not None, WAIT_S)
    rogue = PrivateKey.from_label("hostile-rogue")
    payload = Transfer(rogue.address, 1_000)
    fee = min_fee(params.min_fee_per_byte, payload, 0)
    # Well-formed, paying their fee, and signed by nobody.
    forgeries = [
        Transaction(Transfer(rogue.address, 1 + i), rogue.public_key, 0, fee, bytes(64))
        for i in range(FORGERIES)
    ]

    async def attack() -> tuple[Link, bool, Link]:
        link = await Link.open(node.port, rogue, chain_id)
        await link.send(forgeries)
        await asyncio.wait_for(link.listener, WAIT_S)  # the node cut the link off
        link.writer.close()
        # Back again with the same key: the link is refused (closed before any status).
        try:
            again = await Link.open(node.port, rogue, chain_id)
        except (GridnetError, asyncio.IncompleteReadError, ConnectionError):
            refused = True
        else:
            await asyncio.wait_for(again.listener, WAIT_S)
            again.writer.close()
            refused = again.frames == 0
        # Honest gossip from another peer is still taken.
        peer = await Link.open(node.port, PrivateKey.from_label("hostile-honest-peer"), chain_id)
        tx = sign_transaction(honest, chain_id, payload, 0, fee)
        await peer.send([tx])
        await peer.close()
        return link, refused, peer

    link, refused, peer = asyncio.run(attack())
    assert link.rejected == {}  # not one answer for 20,000 forgeries
    assert link.bytes_in < 1_000  # (its status on linking, at most)
    assert refused
    assert peer.rejected == {} and get(node, "/mempool")["size"] == 1
    stop_all(nodes)
    log = (node.data_dir / "node.log").read_text()
    assert log.count("broke BadSignature") == MAX_FAULTS
    assert ": TooManyFaults" in log and ": Banned" in log


@cache
def unregistered_batch() -> SubmitReadings:
    """The most readings one transaction holds, signed by a meter no chain registered."""
    meter = PrivateKey.from_label("hostile-unregistered-meter")
    return SubmitReadings(
        tuple(
            sign_reading(meter, Reading(meter.address, 1_960_000 + i, 100, 0, 100 * (i + 1), 0, "1.0.0"))
            for i in range(MAX_READINGS_PER_TX)
        )
    )


def test_never_includable_readings_are_refused_and_the_pool_is_bounded_by_bytes(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    node, params, chain_id = new_node(tmp_path, "pool", COLLECTORS + PAYERS)
    nodes.append(node)
    node.start("--mempool-max-mb", str(POOL_MB))
    assert wait_for(lambda: node.head() is not None, WAIT_S)
    batch = unregistered_batch()
    fee = min_fee(params.min_fee_per_byte, batch, 0)
    readings = [sign_transaction(k, chain_id, batch, 0, fee) for k in COLLECTORS]
    rng = random.Random(7)
    transfers = []
    for nonce in range(PER_PAYER):
        for key in PAYERS:
            payload = Transfer(PAYERS[0].address, 1_000)
            fee = min_fee(params.min_fee_per_byte, payload, nonce) + rng.randrange(0, 500)
            transfers.append(sign_transaction(key, chain_id, payload, nonce, fee))

    async def feed() -> tuple[Link, dict[str, object]]:
        link = await Link.open(node.port, PrivateKey.from_label("hostile-collector-peer"), chain_id)
        await link.send(readings)
        await asyncio.wait_for(link.until_rejected({tx_id(t) for t in readings}), WAIT_S)
        held = await asyncio.to_thread(get, node, "/status")
        await link.send(transfers)  # the same link: refusing the readings was no fault
        await link.close()
        return link, held

    link, held = asyncio.run(feed())
    assert {link.rejected[tx_id(t)] for t in readings} == {"UnknownMeter"}
    assert isinstance(held["mempool"], dict) and (held["mempool"]["size"], held["mempool"]["bytes"]) == (0, 0)
    status = get(node, "/status")
    stop_all(nodes)
    chain = Chain.open(node.data_dir, readonly=True)
    try:
        pending = {tid for tid, _ in chain.store.pending()}
    finally:
        chain.close()
    sent = {tx_id(t) for t in transfers}
    assert sent <= pending | link.rejected.keys()  # each pending or reported with its rule
    assert not pending & link.rejected.keys()
    # Refused or evicted for the bound, or after a refused nonce of the same sender.
    rules = {link.rejected[t] for t in sent - pending}
    assert "MempoolFull" in rules and rules <= {"MempoolFull", "NonceGap"}
    mempool = status["mempool"]
    assert isinstance(mempool, dict) and mempool["size"] == len(pending) < len(transfers)
    assert 0.9 * (POOL_MB << 20) < mempool["bytes"] <= POOL_MB << 20
    log = (node.data_dir / "node.log").read_text()
    assert " broke " not in log


def _cpu_s(node: DevNode) -> float:
    """CPU time the node's process has used [s] (user and system, from /proc)."""
    assert node.process is not None
    fields = Path(f"/proc/{node.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_burst_of_replacements_in_one_message_does_not_stall_the_node(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    """The red team's stall (docs/protocol.md 6): 4,000 pending transfers of one sender, then
    one message of 2,000 replacements of the last, each paying what the rule asks. Each one
    applied the sender's 3,999 before it again: 51 s of a node's event loop (39.5 s of CPU),
    its API unanswered, its honest peer's link closed idle. Now 64 are taken
    (``MAX_REPLACEMENTS``), at one application each, and the rest refused by name."""
    sender = PrivateKey.from_label("hostile-replacer")
    node, params, chain_id = new_node(tmp_path, "replaced", [sender])
    nodes.append(node)
    node.start()  # (no miner: no block resets the count)
    assert wait_for(lambda: node.head() is not None, WAIT_S)
    pending, replacements = 4_000, 2_000
    sink = PrivateKey.from_label("hostile-replacer-sink").address
    payload = Transfer(sink, 1)
    fills = [
        sign_transaction(sender, chain_id, payload, n, min_fee(params.min_fee_per_byte, payload, n))
        for n in range(pending)
    ]
    last = pending - 1
    fee, bumps = fills[-1].fee, []
    for i in range(replacements):  # each 10% and its own minimum fee more (the least the rule asks)
        fee = min(fee + max(-(-fee // 10), 2 * fills[-1].fee), 2**62 + i)
        bumps.append(sign_transaction(sender, chain_id, payload, last, fee))

    async def attack() -> tuple[Link, float, float]:
        link = await Link.open(node.port, PrivateKey.from_label("hostile-replacer-peer"), chain_id)
        for i in range(0, pending, 2_000):
            link.writer.write(
                frame(link.session.encrypt(encode_message(TxsMsg(tuple(fills[i : i + 2_000])))))
            )
        await link.writer.drain()
        assert await wait_until(lambda: get(node, "/mempool")["size"] == pending, WAIT_S)
        before = _cpu_s(node)
        link.writer.write(frame(link.session.encrypt(encode_message(TxsMsg(tuple(bumps))))))
        await link.writer.drain()
        started = time.monotonic()
        answered = await asyncio.to_thread(get, node, "/head")  # asked while it handles them
        assert answered["height"] == 0
        waited = time.monotonic() - started
        refused = {tx_id(t) for t in bumps[MAX_REPLACEMENTS:]}
        await asyncio.wait_for(link.until_rejected(refused), WAIT_S)
        used = _cpu_s(node) - before
        await link.close()
        return link, used, waited

    link, used, waited = asyncio.run(attack())
    rules = {link.rejected[tx_id(t)] for t in bumps[MAX_REPLACEMENTS:]}
    assert rules <= {"TooManyReplacements", "ReplacementUnderpriced"} and "TooManyReplacements" in rules
    taken = bumps[:MAX_REPLACEMENTS]  # each replaced by the next (the relaying peer is told)
    assert {link.rejected.get(tx_id(t)) for t in taken[:-1]} == {"Replaced"}
    assert tx_id(taken[-1]) not in link.rejected
    assert get(node, "/mempool")["size"] == pending
    # Generous ceilings (a busy machine): it took 39.5 s of CPU and 51 s to answer; now ~0.3 s.
    assert used < 10.0, used
    assert waited < 20.0, waited
