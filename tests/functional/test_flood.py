"""A flood of 10,000 transactions over a real link into a node process with a small
mempool: the node stays responsive and every transaction ends in a block or is reported
back (refused or evicted) with its rule — none disappears."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import Allocation
from gridnet.ledger.transactions import min_fee, sign_transaction, tx_id
from gridnet.ledger.txs.transfer import Transfer
from gridnet.net.tcp import dial, frame, read_frame
from gridnet.node.devnet import free_port
from gridnet.node.messages import TxRejectedMsg, TxsMsg, decode_message, encode_message
from gridnet.units import UNITS_PER_GNC
from tests.helpers import test_params

LOCAL = "127.0.0.1"
SENDERS = [PrivateKey.from_label(f"flood-{i}") for i in range(100)]
PER_SENDER = 100


def get(port: int, path: str) -> dict[str, object]:
    with urllib.request.urlopen(f"http://{LOCAL}:{port}{path}", timeout=2) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


async def flood(port: int, chain_id: bytes, txs: list[object], reported: dict[bytes, str]) -> None:
    """Speak the link protocol as a peer: send every transaction, collect what comes back."""
    reader, writer, session = await dial(LOCAL, port, PrivateKey.from_label("flooder"), chain_id)

    async def listen() -> None:
        while True:
            msg = decode_message(session.decrypt(await read_frame(reader)))
            if isinstance(msg, TxRejectedMsg):
                reported[msg.txid] = msg.rule

    listener = asyncio.create_task(listen())
    for i, tx in enumerate(txs):
        writer.write(frame(session.encrypt(encode_message(TxsMsg((tx,))))))  # type: ignore[arg-type]
        if i % 200 == 0:
            await writer.drain()
    await writer.drain()
    await asyncio.sleep(3)
    listener.cancel()
    writer.close()


def test_a_flood_against_a_small_mempool_loses_nothing(tmp_path: Path) -> None:
    params = test_params([], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    params = params.__class__(
        **{
            **{f: getattr(params, f) for f in params.__struct_fields__},
            "allocations": tuple(Allocation(k.address, 10 * UNITS_PER_GNC) for k in SENDERS),
        }
    )
    data = tmp_path / "node"
    chain = Chain.create(data, params)
    chain_id = chain.chain_id
    chain.close()
    write_key_file(data / "node.key", PrivateKey.from_label("flood-node"))
    port, api = free_port(), free_port()
    rng = random.Random(5)
    txs = []
    for nonce in range(PER_SENDER):
        for key in SENDERS:
            payload = Transfer(SENDERS[0].address, 1_000)
            fee = min_fee(params.min_fee_per_byte, payload, nonce) + rng.randrange(0, 500)
            txs.append(sign_transaction(key, chain_id, payload, nonce, fee))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridnet",
            "node",
            "--data-dir",
            str(data),
            "--listen",
            f"{LOCAL}:{port}",
            "--api",
            f"{LOCAL}:{api}",
            "--mine",
            "--hashes-per-tick",
            "300",
            "--mempool-max",
            "300",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    reported: dict[bytes, str] = {}
    try:
        for _ in range(100):
            try:
                get(api, "/head")
                break
            except OSError:
                time.sleep(0.1)
        asyncio.run(flood(port, chain_id, txs, reported))
        started = time.monotonic()
        assert get(api, "/head")["height"] is not None  # still answering
        assert time.monotonic() - started < 2
        for _ in range(300):  # let the miner drain what it kept
            if get(api, "/mempool")["size"] == 0:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    chain = Chain.open(data)
    included = {tx_id(t) for h in range(1, chain.height + 1) for t in chain.block_at(h).txs[1:]}  # type: ignore[union-attr]
    chain.close()
    sent = [tx_id(t) for t in txs]
    missing = [t for t in sent if t not in included and t not in reported]
    assert not missing, f"{len(missing)} transactions neither mined nor reported"
    assert len(included) >= 300  # the mempool's capacity, all mined
    assert any(rule == "MempoolFull" for rule in reported.values())
