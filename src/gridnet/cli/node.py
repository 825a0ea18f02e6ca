"""``gridnet node`` and ``gridnet devnet``: node processes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from gridnet.cli.common import (
    DataDir,
    JsonFlag,
    NodeUrl,
    PassphraseFile,
    console,
    err_console,
    require_node,
)
from gridnet.cli.sim import interrupted, print_simulation_summary
from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import ConfigError
from gridnet.interrupts import as_keyboard_interrupt
from gridnet.ledger.chain import now_ms
from gridnet.node.client import NodeClient, PeerAnswer, StatusAnswer, expect
from gridnet.node.config import CONFIG_NAME, DEFAULT_API, DEFAULT_LISTEN, LOG_CATEGORIES

if TYPE_CHECKING:
    from gridnet.node.devnet import NodeStatus

MAX_CLOCK_MS: Final = 253_402_300_800_000
"""10000-01-01T00:00:00Z [ms since 1970]: the latest ``--clock-origin`` and ``--clock-anchor``."""
MAX_CLOCK_SPEED: Final = 10_000
"""The fastest ``--clock-speed`` (``devnet --speed``'s most): from any origin and anchor in range,
the clock's ms stay below 2^63 for some 29,000 years (an infinite or 1e300 speed, or an origin
past 2^63, failed in the node's first tick, or at once with an OverflowError)."""


SETTING_FLAGS: Final = {
    "listen": "listen",
    "api": "api",
    "peers": "peer",
    "mine": "mine",
    "equivocate": "equivocate",
    "key": "key",
    "passphrase_file": "passphrase_file",
    "hashes_per_tick": "hashes_per_tick",
    "mempool_max_txs": "mempool_max",
    "mempool_max_mb": "mempool_max_mb",
    "log_level": "log_level",
    "debug": "debug",
    "api_token_file": "api_token_file",
}
"""Each setting ``gridnet node`` takes a flag for: the name of its parameter of ``node_cmd``."""


def flag_names() -> dict[str, str]:
    """Each setting's flag as ``gridnet node`` names it (``--peer`` for ``peers``, ``--mempool-max``
    for ``mempool_max_txs``), read from ``node_cmd``'s options so that it cannot drift."""
    hints = typing.get_type_hints(node_cmd, include_extras=True)
    names = {}
    for setting, parameter in SETTING_FLAGS.items():
        option = next(m for m in hints[parameter].__metadata__ if isinstance(m, typer.models.OptionInfo))
        declared = option.param_decls or ()
        names[setting] = (declared[0] if declared else f"--{parameter.replace('_', '-')}").split("/")[0]
    return names


def node_cmd(
    data_dir: DataDir,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Settings file (default: DATA_DIR/gridnet.toml if present)."),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option("--listen", help=f"Peer address HOST:PORT (default {DEFAULT_LISTEN}; port 0: any)."),
    ] = None,
    api: Annotated[
        str | None, typer.Option("--api", help=f'HTTP API HOST:PORT or "off" (default {DEFAULT_API}).')
    ] = None,
    peer: Annotated[
        list[str] | None,
        typer.Option("--peer", help="A peer to dial, HOST:PORT (repeatable; replaces the file's)."),
    ] = None,
    mine: Annotated[
        bool | None,
        typer.Option(
            "--mine/--no-mine", help="Produce blocks (mine, or seal and vote on a permissioned chain)."
        ),
    ] = None,
    equivocate: Annotated[
        bool | None,
        typer.Option(
            "--equivocate",
            help="Fault injection (labs, tests): seal and vote twice as a validator; never on a real chain.",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="Node key file (default DATA_DIR/node.key); created if missing."),
    ] = None,
    passphrase_file: PassphraseFile = None,
    unencrypted_key: Annotated[
        bool,
        typer.Option("--unencrypted-key", help="Create a missing node key without encryption (devnets)."),
    ] = False,
    hashes_per_tick: Annotated[
        int | None,
        typer.Option("--hashes-per-tick", min=1, help="Proof-of-work attempts per tick when mining."),
    ] = None,
    mempool_max: Annotated[
        int | None, typer.Option("--mempool-max", min=1, help="Mempool capacity, in transactions.")
    ] = None,
    mempool_max_mb: Annotated[
        int | None,
        typer.Option("--mempool-max-mb", min=1, help="Mempool capacity [MiB of encoded transactions]."),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = None,
    debug: Annotated[
        list[str] | None,
        typer.Option("--debug", help=f"Log a category at debug level: {', '.join(LOG_CATEGORIES)}, all."),
    ] = None,
    api_token_file: Annotated[
        str | None, typer.Option("--api-token-file", help="API token file (needed for a non-loopback --api).")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="Log only to DATA_DIR/node.log, not the console.")
    ] = False,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the settings the node would run with, and exit.")
    ] = False,
    clock_origin: Annotated[
        int | None,
        typer.Option(
            "--clock-origin",
            min=0,
            max=MAX_CLOCK_MS,
            help="Run on a scenario clock reading this [ms since 1970] at the anchor.",
        ),
    ] = None,
    clock_anchor: Annotated[
        int | None,
        typer.Option(
            "--clock-anchor",
            min=0,
            max=MAX_CLOCK_MS,
            help="Wall time of the origin, in ms since 1970 (default: at start).",
        ),
    ] = None,
    clock_speed: Annotated[
        float,
        typer.Option(
            "--clock-speed",
            min=0.001,
            max=MAX_CLOCK_SPEED,
            help="Clock ms per real ms (with --clock-origin).",
        ),
    ] = 1.0,
) -> None:
    """Run a node: TCP peer links, gossip and sync, mining, the HTTP API. Settings come from
    DATA_DIR/gridnet.toml, overridden by these flags. Stops on SIGTERM/Ctrl-C."""
    from gridnet.cli.passphrase import create_key, load_key
    from gridnet.node.clock import Clock
    from gridnet.node.config import resolve, settings_to_toml
    from gridnet.node.process import NodeOptions, run

    if clock_origin is None and (clock_anchor is not None or clock_speed != 1.0):
        raise ConfigError(
            "--clock-anchor and --clock-speed need --clock-origin (the clock's time at the anchor)"
        )
    clock = Clock()
    if clock_origin is not None:
        clock = Clock(clock_origin, now_ms() if clock_anchor is None else clock_anchor, clock_speed)
        if clock.now() < 0:
            raise ConfigError(
                f"--clock-origin {clock_origin}, --clock-anchor {clock.anchor_ms} and --clock-speed "
                f"{clock_speed:g} would have the clock read {clock.now():,} ms now, before 1970; give an "
                "anchor at or before the wall clock's time"
            )
    given = {
        "listen": listen,
        "api": api,
        "peers": peer,
        "mine": mine,
        "equivocate": equivocate,
        # Paths given on the command line are relative to the working directory (the file's
        # to the data directory).
        "key": None if key is None else str(Path(key).absolute()),
        "passphrase_file": None if passphrase_file is None else str(passphrase_file.absolute()),
        "hashes_per_tick": hashes_per_tick,
        "mempool_max_txs": mempool_max,
        "mempool_max_mb": mempool_max_mb,
        "log_level": log_level,
        "debug": None if debug is None else [c.strip() for d in debug for c in d.split(",") if c.strip()],
        "api_token_file": None if api_token_file is None else str(Path(api_token_file).absolute()),
    }
    assert set(given) == set(SETTING_FLAGS)  # (each setting a flag sets has its flag's name)
    settings = resolve(data_dir, given, config, flag_names())
    if print_config:
        source = config if config is not None else data_dir / CONFIG_NAME
        origin = f"{source} and the command line" if source.exists() else "defaults and the command line"
        console.print(
            settings_to_toml(settings, f"gridnet node --data-dir {data_dir}: from {origin}"), end=""
        )
        return
    key_path = settings.path(data_dir, settings.key)
    secret = settings.path(data_dir, settings.passphrase_file) if settings.passphrase_file else None
    secret_by = (  # (for a message: the flag, or the config file's key)
        "--passphrase-file"
        if passphrase_file is not None
        else f"passphrase_file {settings.passphrase_file!r} in {config or data_dir / CONFIG_NAME}"
    )

    def node_key() -> PrivateKey:
        if os.path.lexists(key_path):  # (--key FILE or key = "FILE" alike: created when missing)
            return load_key(key_path, secret)
        created = create_key(
            key_path,
            unencrypted=unencrypted_key,
            passphrase_file=secret,
            given_by=("--unencrypted-key", secret_by),
        )
        how = "unencrypted" if unencrypted_key else "encrypted with its passphrase"
        logging.getLogger("gridnet.node").info(
            "created the node key %s (%s): address %s", key_path, how, address_to_text(created.address)
        )
        return created

    options = NodeOptions(
        data_dir=data_dir,
        settings=settings,
        clock=clock,
        console_log=not quiet,
    )
    run(options, node_key)


def devnet_cmd(
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=16, help="How many node processes.")] = 4,
    out: Annotated[Path, typer.Option("--out", help="Where their data directories go.")] = Path("out/devnet"),
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration", min=1, help="Seconds to run (default: until Ctrl-C; with --scenario: its end)."
        ),
    ] = None,
    scenario: Annotated[
        Path | None,
        typer.Option("--scenario", help="Drive this scenario (TOML) through the nodes' HTTP APIs."),
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(
            "--speed", min=1, max=10_000, help="Scenario clock ms per real ms (with --scenario; default 300)."
        ),
    ] = None,
    consensus: Annotated[
        str,
        typer.Option(
            "--consensus",
            help='"pow" (mined) or "poa" (a permissioned chain: every node a validator, 1 s slots).',
        ),
    ] = "pow",
) -> None:
    """Start N mining nodes (or, with --consensus poa, N validators sealing in turn) on
    127.0.0.1 with free ports, link them, show their heights and peers, and stop them all on
    exit. With --scenario, run a neighbourhood scenario on them."""
    from rich.live import Live

    from gridnet.node.devnet import Devnet

    def line(status: list[NodeStatus]) -> str:
        return "  ".join(
            f"{s.name} " + ("starting" if s.height is None else f"height {s.height} peers {s.peers}")
            for s in status
        )

    if scenario is None and speed is not None:
        raise ConfigError("--speed sets a scenario's clock: give it with --scenario")
    if scenario is not None:
        if duration is not None:
            raise ConfigError("--duration and --scenario exclude each other: a scenario runs to its end")
        if consensus != "pow":
            raise ConfigError("--scenario runs on a proof-of-work devnet; leave out --consensus")
        with as_keyboard_interrupt():
            _devnet_scenario(scenario, out, nodes, 300.0 if speed is None else speed, line)
        return
    net = Devnet(out, nodes, consensus=consensus)
    with Live(console=err_console, transient=True) as live:

        def report(status: list[NodeStatus]) -> None:
            live.update(Text(line(status)))

        with contextlib.suppress(KeyboardInterrupt), as_keyboard_interrupt():
            net.run(duration, report)
    ended = "  ".join(f"{name} height {height}" for name, height in net.stored_heights())
    console.print(f"devnet stopped: {ended}")
    console.print(f"data directories and logs: {out}")


def _devnet_scenario(
    path: Path, out: Path, nodes: int, speed: float, line: Callable[[list[NodeStatus]], str]
) -> None:
    """Run a scenario on a devnet: a live line (scenario time, interval, each node's height
    and peers) while it runs, then the summary."""
    import threading

    from rich.live import Live

    from gridnet.node.devnet import Devnet
    from gridnet.sim.neighbourhood import simulate_on_devnet
    from gridnet.sim.scenario import load_scenario

    sc = load_scenario(path)
    day = sc.simulation.intervals * 15 * 60 / speed
    err_console.print(
        f"{sc.simulation.name}: {sc.simulation.intervals} intervals on {nodes} node processes at up to "
        f"{speed:g}x real time (at least {day:.0f} s plus set-up: the clock waits for nodes that cannot "
        "keep up); relays are simulated only by "
        "'gridnet simulate' (here orders travel as the nodes' order gossip)"
    )
    done = threading.Event()
    state: dict[str, Any] = {"interval": 0}

    def watch(devnet: Devnet, live: Live) -> None:
        while not done.wait(0.5):
            live.update(
                Text(f"interval {state['interval']}/{sc.simulation.intervals}  " + line(devnet.status()))
            )

    with Live(console=err_console, transient=True) as live:

        def started(devnet: Devnet) -> None:
            threading.Thread(target=watch, args=(devnet, live), daemon=True).start()

        def progress(k: int, n: int) -> None:
            state["interval"] = k

        try:
            report = simulate_on_devnet(sc, out, nodes, speed, progress=progress, on_start=started)
        except KeyboardInterrupt as stop:
            done.set()
            live.stop()
            interrupted(state["interval"], sc.simulation.intervals, out, stop, "n0")
        finally:
            done.set()
    print_simulation_summary(report, out, out / "n0")
    if not report["verify"]["ok"] or not report["converged"]:
        raise typer.Exit(1)


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


RunningDataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory of a running node.")]


T = TypeVar("T")


def _ask(
    node: str | None, data_dir: Path | None, path: str, kind: type[T], as_json: bool
) -> tuple[NodeClient, T]:
    """The running node's client and its answer to GET ``path``, checked to be a ``kind``
    (printed as it came, with ``as_json``: a server that is not a GRIDNET node is refused)."""
    client = require_node(node, data_dir)
    answer = client.request("GET", path)
    checked = expect(answer, kind, f"GET {path}")
    if as_json:
        print(json.dumps(answer))
    return client, checked


def status_cmd(node: NodeUrl = None, data_dir: RunningDataDir = None, as_json: JsonFlag = False) -> None:
    """A running node at a glance: chain, height, sync, mempool, peers, version, uptime."""
    client, status = _ask(node, data_dir, "/status", StatusAnswer, as_json)
    if as_json:
        return
    sync = status.sync
    progress = (
        "synced"
        if not sync.syncing
        else f"syncing: {status.height:,} of {sync.target_height:,} ({100 * sync.progress:.1f} %)"
    )
    pool, peers = status.mempool, status.peers
    table = Table(title=f"gridnet node {status.address}", show_header=False)
    table.add_row("chain", f"{status.chain} (genesis {status.chain_id[:16]})")
    table.add_row("height", f"{status.height:,}, head {status.head[:16]}, {progress}")
    table.add_row("mempool", f"{pool.size:,} transactions, {pool.bytes:,} bytes (at most {pool.max_txs:,})")
    table.add_row("peers", f"{peers.count} ({peers.outbound} outbound, {peers.inbound} inbound)")
    table.add_row("mining", "yes" if status.mining else "no")
    table.add_row("listening", str(status.listen))
    table.add_row("version", f"{status.version}, up {_duration(status.uptime_s)}")
    table.add_row("API", client.url)
    console.print(table)


def peers_cmd(node: NodeUrl = None, data_dir: RunningDataDir = None, as_json: JsonFlag = False) -> None:
    """The peers a running node is linked with: address, direction, height, faults, traffic."""
    client, peers = _ask(node, data_dir, "/peers", list[PeerAnswer], as_json)
    if as_json:
        return
    if not peers:
        console.print(f"no peers linked to the node at {client.url}")
        return
    table = Table(title=f"{len(peers)} peer(s) of the node at {client.url}")
    for column in (
        "address",
        "direction",
        "remote",
        "height",
        "faults",
        "bytes in",
        "bytes out",
        "linked for",
    ):
        table.add_column(column)
    for p in peers:
        table.add_row(
            p.address,
            p.direction or "?",
            p.remote or "?",
            "?" if p.height is None else f"{p.height:,}",
            str(p.faults),
            "?" if p.bytes_in is None else f"{p.bytes_in:,}",
            "?" if p.bytes_out is None else f"{p.bytes_out:,}",
            "?" if p.connected_s is None else _duration(p.connected_s),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("node")(node_cmd)
    app.command("devnet")(devnet_cmd)
    app.command("status")(status_cmd)
    app.command("peers")(peers_cmd)
