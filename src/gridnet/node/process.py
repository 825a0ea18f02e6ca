"""``gridnet node``: one node as a process — its chain, the TCP transport, the HTTP API.

The process holds its data directory's lock for as long as it runs (a second writer is
refused, naming it), logs to ``DATA_DIR/node.log`` and the console (``node/logs.py``),
writes ``DATA_DIR/node.json`` (pid, address, peer and API addresses) so tools can find it,
and a fresh API token into ``DATA_DIR/.cookie`` (unless a token file is configured). It stops
gracefully on SIGTERM or SIGINT (links closed, pending transactions written, store closed,
cookie removed); restarting with the same data directory continues from the stored chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridnet import __version__
from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import ConfigError, NodeFailed
from gridnet.files import replace_file, write_text_file
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import GENESIS_NAME, ChainParams, load_genesis_file, params_to_toml
from gridnet.ledger.store import STORE_ERRORS
from gridnet.ledger.txs.relay import ChainRelayView
from gridnet.net.tcp import TcpTransport
from gridnet.node.auth import read_token_file, remove_cookie, write_cookie
from gridnet.node.client import INFO_NAME
from gridnet.node.clock import Clock
from gridnet.node.config import API_OFF, NodeSettings, bind_problem, format_host_port, parse_host_port
from gridnet.node.logs import configure, reset
from gridnet.node.node import Node, NodeConfig
from gridnet.node.relay_peer import RelayPeer
from gridnet.system import settle_gc

_log = logging.getLogger("gridnet.node")

PROFILE_ENV = "GRIDNET_NODE_PROFILE"
"""For benchmarks (``bench/network.py``): "ops" makes the process write, when it stops, the
cryptographic operations it did (``crypto/ops.py``) and the CPU time it and its signature-checking
helpers (``crypto/checkers.py``) used to
``DATA_DIR/node-ops.json``; "cpu" (or "wall") does that and runs it under cProfile, timed by
its main thread's CPU time (or the wall clock), with the statistics in ``DATA_DIR/node.prof``."""
PROFILE_NAME = "node.prof"
OPS_NAME = "node-ops.json"


@dataclass(frozen=True)
class NodeOptions:
    data_dir: Path
    settings: NodeSettings = field(default_factory=NodeSettings)
    clock: Clock = field(default_factory=Clock)
    console_log: bool = True
    """Log a concise line per notable event on stderr (besides node.log)."""


def _bind_api(host: str, port: int) -> socket.socket:
    """The API's listening socket (bound here, so a taken port is a one-line error)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Answers go out at once: uvicorn writes a response's head and body apart, and without
    # this (inherited by every accepted connection) each request on a kept-alive connection
    # waited out the client's delayed ACK, 40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot serve the API on {format_host_port(host, port)}: {bind_problem(exc)}; choose another "
            'api address, or api = "off"'
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _write_info(data_dir: Path, info: dict[str, object]) -> None:
    replace_file(data_dir / INFO_NAME, f"{json.dumps(info)}\n".encode())


async def serve(
    options: NodeOptions,
    chain: Chain,
    key: PrivateKey,
    stop: asyncio.Event,
    *,
    on_started: Callable[[], None] | None = None,
    api_token: str | None = None,
) -> None:
    """Run the node on ``chain`` (opened by the caller, who holds its lock) until ``stop``;
    ``on_started`` is called once it listens and serves its API; ``api_token``: the token of
    the configured token file, read already (None: it is read here)."""
    s = options.settings
    data_dir = options.data_dir
    clock = options.clock
    # The serving rate is a real-time one: bytes per second of the node's clock.
    serve_rate = max(1, (s.serve_mb_per_s << 20) * 1000 // max(1, clock.span(1000)))
    config = NodeConfig(
        miner=key.address if s.mine else None,
        validator=key if s.mine and chain.params.permissioned else None,
        equivocate=s.equivocate,
        hashes_per_tick=s.hashes_per_tick,
        mempool_max_txs=s.mempool_max_txs,
        mempool_max_bytes=s.mempool_max_mb << 20,
        # Periods meant in real time, expressed on the node's clock.
        template_refresh_ms=clock.span(NodeConfig.template_refresh_ms),
        status_interval_ms=clock.span(NodeConfig.status_interval_ms),
        request_timeout_ms=clock.span(s.request_timeout_ms),
        serve_bytes_per_s=serve_rate,
        serve_burst_bytes=serve_rate,  # (a second's worth)
    )
    name = address_to_text(key.address)
    node = Node(name, chain, config, rng=random.SystemRandom())  # a fan-out nobody can predict
    # The node relays and receives datagrams as the participant of its key; over TCP a
    # participant's name is its address (the link its key authenticates).
    relay = RelayPeer(name, key, lambda: ChainRelayView.of(chain), address_to_text)
    listen = parse_host_port(s.listen, "listen")
    peers = [parse_host_port(p, "peer") for p in s.peers]
    transport = TcpTransport(
        node,
        key,
        listen,
        peers,
        clock=clock.now,
        relay=relay,
        idle_timeout_s=s.peer_idle_timeout_ms / 1000,  # (real time: status goes every 2 s of it)
    )
    api_task: asyncio.Task[None] | None = None
    server = None
    cookie = started = False
    token_file = None if not s.api_token_file else s.path(data_dir, s.api_token_file).resolve()
    try:
        await transport.start()
        api_address = None
        if s.api == API_OFF:
            remove_cookie(data_dir)  # (a killed run's: no API answers to its token now)
        else:
            import uvicorn

            from gridnet.node.api import create_app
            from gridnet.node.api.server import api_config

            host, port = parse_host_port(s.api, "api")
            if token_file is not None:
                token = api_token if api_token is not None else read_token_file(token_file)
                remove_cookie(data_dir)  # (a killed run's cookie must not mislead a client)
            sock = _bind_api(host, port)
            if token_file is None:
                token, cookie = write_cookie(data_dir), True
            app = create_app(
                node,
                clock=clock.now,
                broadcast=transport.dispatch,
                relay=relay,
                token=token,
                transport=transport,
            )
            server = uvicorn.Server(api_config(app, bound=host))
            api_task = asyncio.create_task(server.serve(sockets=[sock]))
            api_address = format_host_port(host, sock.getsockname()[1])
        listen_address = format_host_port(listen[0], transport.port)
        _write_info(
            data_dir,
            {
                "pid": os.getpid(),
                "address": name,
                "listen": listen_address,
                "api": api_address,
                "token_file": None if token_file is None else str(token_file),
                "version": __version__,
                "started": int(time.time()),
            },
        )
        started = True
        if on_started is not None:
            on_started()
        head = chain.head
        _log.info(
            "gridnet %s on %s (%s): height %d, head %s; peers on %s, API %s%s",
            __version__,
            data_dir,
            chain.params.name,
            head.height,
            head.hash.hex()[:16],
            listen_address,
            f"http://{api_address}" if api_address else "off",
            "" if not s.mine else ", validating" if chain.params.permissioned else ", mining",
        )
        stopped = asyncio.create_task(stop.wait())
        waiting: set[asyncio.Task[Any]] = {stopped, transport.ticking}
        if api_task is not None:
            waiting.add(api_task)
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        ticking = transport.ticking
        if ticking.done() and not ticking.cancelled() and (error := ticking.exception()) is not None:
            raise NodeFailed(
                f"the node stopped: its tick failed with {type(error).__name__}: {error}"
            ) from error
        if api_task is not None and api_task.done() and not stop.is_set():
            failure = api_task.exception() if not api_task.cancelled() else None
            _log.error("the API server stopped (%s); stopping the node", failure or "no error given")
    finally:
        if started:
            _log.info("stopping")
        if server is not None:
            server.should_exit = True
        if api_task is not None:
            with contextlib.suppress(Exception):
                await api_task
        await transport.stop()
        try:
            node.close()
        except STORE_ERRORS as exc:  # (run() closes the chain)
            _log.error("the pending transactions could not be written: %s", exc)
        if cookie:
            remove_cookie(data_dir)
        if started:
            _log.info("stopped at height %d", chain.height)


def check_genesis_file(data_dir: Path, params: ChainParams) -> None:
    """``DATA_DIR/genesis.toml`` (``chain init`` writes it) must still be the chain's genesis:
    the chain keeps its own, so an edited file would be ignored without a word. A
    ``ConfigError`` naming the file when it is not (or cannot be read)."""
    path = data_dir / GENESIS_NAME
    if not path.exists():
        return
    advice = (
        f"a chain's genesis cannot change: put back the file as it was, or move it away (the chain keeps "
        f"its own), or start a new chain from it with 'gridnet chain init --data-dir NEW --genesis {path}'"
    )
    try:
        written = load_genesis_file(path)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; {advice}") from None
    if params_to_toml(written) != params_to_toml(params):
        raise ConfigError(f"{path} is not the genesis this chain was created from; {advice}")


def run(options: NodeOptions, load_key: Callable[[], PrivateKey]) -> None:
    """Open the data directory (taking its lock), start logging into it, load the node key,
    and run until SIGTERM or SIGINT."""
    s = options.settings
    # A token file that does not read is refused before anything is opened or created (the
    # node key was created, and the data directory's log, before serve read it).
    api_token = None
    if s.api != API_OFF and s.api_token_file:
        api_token = read_token_file(s.path(options.data_dir, s.api_token_file).resolve())
    chain = Chain.open(options.data_dir)  # no chain, or locked: a one-line error before anything else
    try:
        check_genesis_file(options.data_dir, chain.params)
    except ConfigError:
        chain.close()
        raise
    # A log line that cannot be written (a full disk) is dropped, not printed as a traceback:
    # the failure itself is reported in one line (and by /health).
    logging.raiseExceptions = False
    try:
        configure(
            options.data_dir,
            level=s.log_level,
            debug=s.debug,
            console=options.console_log,
            max_bytes=s.log_max_mb * 1024 * 1024,
            backups=s.log_files,
        )
        key = load_key()

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await serve(options, chain, key, stop, on_started=settle_gc, api_token=api_token)

        mode = os.environ.get(PROFILE_ENV, "")
        if mode in ("ops", "cpu", "wall"):
            _measured(options.data_dir, mode, lambda: asyncio.run(main()))
        else:
            asyncio.run(main())
    finally:
        chain.close()
        reset()


def _measured(data_dir: Path, mode: str, body: Callable[[], None]) -> None:
    """Run ``body`` (under cProfile unless ``mode`` is "ops"); write what it cost into ``data_dir``:
    the crypto operations, the CPU time, and the garbage collector's passes and time."""
    import cProfile
    import resource

    from gridnet.crypto.checkers import CHECKERS
    from gridnet.crypto.ops import OPS

    passes = [0, 0, 0]
    gc_s = [0.0, 0.0, 0.0]
    began = [0.0]

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            passes[info["generation"]] += 1
            gc_s[info["generation"]] += time.perf_counter() - began[0]

    gc.callbacks.append(collected)
    profile = (
        None if mode == "ops" else cProfile.Profile(time.thread_time if mode == "cpu" else time.perf_counter)
    )
    try:
        if profile is None:
            body()
        else:
            profile.runcall(body)
    finally:
        gc.callbacks.remove(collected)
        if profile is not None:
            profile.dump_stats(data_dir / PROFILE_NAME)
        CHECKERS.close()  # (so that the helper processes' CPU time is counted: they are reaped)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        helpers = resource.getrusage(resource.RUSAGE_CHILDREN)
        figures = {
            **OPS.as_dict(),
            "user_s": usage.ru_utime,
            "system_s": usage.ru_stime,
            "helpers_user_s": helpers.ru_utime,
            "helpers_system_s": helpers.ru_stime,
            "gc_passes": passes,
            "gc_s": [round(s, 3) for s in gc_s],
        }
        write_text_file(data_dir / OPS_NAME, json.dumps(figures) + "\n")
