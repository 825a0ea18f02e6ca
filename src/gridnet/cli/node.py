"""``gridnet node`` and ``gridnet devnet``: node processes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from gridnet.cli.common import DataDir, console, err_console
from gridnet.cli.sim import print_simulation_summary
from gridnet.crypto.keys import PrivateKey, read_key_file, write_key_file
from gridnet.errors import ConfigError
from gridnet.ledger.chain import now_ms

if TYPE_CHECKING:
    from gridnet.node.devnet import NodeStatus


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{what} {text!r} must look like 127.0.0.1:9000")
    return host, int(port)


def node_cmd(
    data_dir: DataDir,
    listen: Annotated[str, typer.Option("--listen", help="Peer port, e.g. 127.0.0.1:9000 (port 0: any).")],
    api: Annotated[str | None, typer.Option("--api", help="HTTP API, e.g. 127.0.0.1:8000.")] = None,
    peer: Annotated[list[str] | None, typer.Option("--peer", help="A peer to dial (repeatable).")] = None,
    mine: Annotated[bool, typer.Option("--mine", help="Mine blocks.")] = False,
    key: Annotated[
        Path | None, typer.Option("--key", help="Node key (default: DATA_DIR/node.key, created if missing).")
    ] = None,
    hashes_per_tick: Annotated[int, typer.Option("--hashes-per-tick", min=1)] = 2_000,
    mempool_max: Annotated[
        int, typer.Option("--mempool-max", min=1, help="Mempool capacity [txs].")
    ] = 50_000,
    clock_origin: Annotated[
        int | None,
        typer.Option(
            "--clock-origin", help="Run on a scenario clock reading this [ms since 1970] at the anchor."
        ),
    ] = None,
    clock_anchor: Annotated[
        int | None, typer.Option("--clock-anchor", help="Wall time [ms] of the origin (default: at start).")
    ] = None,
    clock_speed: Annotated[
        float, typer.Option("--clock-speed", min=0.001, help="Clock ms per real ms (with --clock-origin).")
    ] = 1.0,
) -> None:
    """Run a node: TCP peer links, gossip and sync, mining, the HTTP API. Stops on SIGTERM/Ctrl-C."""
    from gridnet.node.clock import Clock
    from gridnet.node.process import NodeOptions, run

    if clock_origin is None and (clock_anchor is not None or clock_speed != 1.0):
        raise ConfigError(
            "--clock-anchor and --clock-speed need --clock-origin (the clock's time at the anchor)"
        )

    if key is None:
        key = data_dir / "node.key"
        if not key.exists() and (data_dir / "chain.sqlite").exists():
            write_key_file(key, PrivateKey.generate())
    options = NodeOptions(
        data_dir=data_dir,
        listen=_host_port(listen, "--listen"),
        peers=tuple(_host_port(p, "--peer") for p in peer or []),
        api=None if api is None else _host_port(api, "--api"),
        mine=mine,
        hashes_per_tick=hashes_per_tick,
        mempool_max_txs=mempool_max,
        clock=Clock()
        if clock_origin is None
        else Clock(clock_origin, now_ms() if clock_anchor is None else clock_anchor, clock_speed),
    )
    run(options, read_key_file(key))


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
        float,
        typer.Option("--speed", min=1, max=10_000, help="Scenario clock ms per real ms (with --scenario)."),
    ] = 300.0,
) -> None:
    """Start N mining nodes on 127.0.0.1 with free ports, link them, show their heights and
    peers, and stop them all on exit. With --scenario, run a neighbourhood scenario on them."""
    from rich.live import Live

    from gridnet.node.devnet import Devnet

    def line(status: list[NodeStatus]) -> str:
        return "  ".join(
            f"{s.name} " + ("starting" if s.height is None else f"height {s.height} peers {s.peers}")
            for s in status
        )

    if scenario is not None:
        if duration is not None:
            raise ConfigError("--duration and --scenario exclude each other: a scenario runs to its end")
        _devnet_scenario(scenario, out, nodes, speed, line)
        return
    net = Devnet(out, nodes)
    last: list[NodeStatus] = []
    with Live(console=err_console, transient=True) as live:

        def report(status: list[NodeStatus]) -> None:
            nonlocal last
            last = status
            live.update(Text(line(status)))

        with contextlib.suppress(KeyboardInterrupt):
            net.run(duration, report)
    console.print(f"devnet stopped: {line(last)}")
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
        f"{sc.simulation.name}: {sc.simulation.intervals} intervals on {nodes} node processes at "
        f"{speed:g}x real time (about {day:.0f} s plus set-up); relays are simulated only by "
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
        finally:
            done.set()
    print_simulation_summary(report, out, out / "n0")
    if not report["verify"]["ok"] or not report["converged"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("node")(node_cmd)
    app.command("devnet")(devnet_cmd)
