"""``gridnet node``: one node as a process — its chain, the TCP transport, the HTTP API.

Stops gracefully on SIGTERM or SIGINT (links closed, store closed); restarting with the
same data directory continues from the stored chain and pending transactions. Writes
``DATA_DIR/node.json`` (pid, ports, address) so tools can find it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path

from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.relay import ChainRelayView
from gridnet.net.tcp import TcpTransport
from gridnet.node.clock import Clock
from gridnet.node.node import Node, NodeConfig
from gridnet.node.relay_peer import RelayPeer


@dataclass(frozen=True)
class NodeOptions:
    data_dir: Path
    listen: tuple[str, int]
    peers: tuple[tuple[str, int], ...] = ()
    api: tuple[str, int] | None = None
    mine: bool = False
    hashes_per_tick: int = 2_000
    mempool_max_txs: int = 50_000
    clock: Clock = field(default_factory=Clock)


async def serve(options: NodeOptions, key: PrivateKey, stop: asyncio.Event) -> None:
    chain = Chain.open(options.data_dir)
    clock = options.clock
    config = NodeConfig(
        miner=key.address if options.mine else None,
        hashes_per_tick=options.hashes_per_tick,
        mempool_max_txs=options.mempool_max_txs,
        # Periods meant in real time, expressed on the node's clock.
        template_refresh_ms=clock.span(NodeConfig.template_refresh_ms),
        status_interval_ms=clock.span(NodeConfig.status_interval_ms),
        request_timeout_ms=clock.span(NodeConfig.request_timeout_ms),
    )
    name = address_to_text(key.address)
    node = Node(name, chain, config, rng=random.SystemRandom())  # a fan-out nobody can predict
    # The node relays and receives datagrams as the participant of its key; over TCP a
    # participant's name is its address (the link its key authenticates).
    relay = RelayPeer(name, key, lambda: ChainRelayView(chain.view()), address_to_text)
    transport = TcpTransport(node, key, options.listen, list(options.peers), clock=clock.now, relay=relay)
    api_task: asyncio.Task[None] | None = None
    server = None
    try:
        await transport.start()
        api_port = None
        if options.api is not None:
            import uvicorn

            from gridnet.node.api import create_app

            app = create_app(node, clock=clock.now, broadcast=transport.dispatch, relay=relay)
            host, port = options.api
            server = uvicorn.Server(
                uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
            )
            api_task = asyncio.create_task(server.serve())
            while not server.started and not api_task.done():
                await asyncio.sleep(0.05)
            api_port = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        info = {
            "pid": os.getpid(),
            "address": address_to_text(key.address),
            "listen": f"{options.listen[0]}:{transport.port}",
            "api": None if api_port is None else f"{options.api[0]}:{api_port}",  # type: ignore[index]
        }
        (options.data_dir / "node.json").write_text(json.dumps(info) + "\n")
        await stop.wait()
    finally:
        if server is not None:
            server.should_exit = True
        if api_task is not None:
            with contextlib.suppress(Exception):
                await api_task
        await transport.stop()
        node.close()


def run(options: NodeOptions, key: PrivateKey) -> None:
    """Run until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(options, key, stop)

    asyncio.run(main())
