"""The ``gridnet`` command: thin wrappers that parse, call and print."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from gridnet.crypto.address import address_from_text, address_to_text
from gridnet.crypto.keys import PrivateKey, read_key_file, write_key_file
from gridnet.errors import (
    ConfigError,
    DecodeError,
    GridnetError,
    InvalidBlock,
    InvalidTransaction,
    MempoolRejection,
)
from gridnet.identity import find_identity_proof
from gridnet.ledger.chain import Chain, now_ms
from gridnet.ledger.params import default_params, load_genesis_file, params_to_toml
from gridnet.ledger.registry import Payload
from gridnet.ledger.txs.bond import Bond, Unbond
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.verify import verify_chain
from gridnet.ledger.wallet import MinedBlock, mine_blocks, submit
from gridnet.units import UNITS_PER_GNC, format_gnc

if TYPE_CHECKING:
    from gridnet.node.devnet import NodeStatus

app = typer.Typer(
    help="GRIDNET: a fully distributed smart-grid ledger.", no_args_is_help=True, add_completion=False
)
keys_app = typer.Typer(help="Key files.", no_args_is_help=True)
chain_app = typer.Typer(
    help="Create, mine, inspect and audit a chain in a data directory.", no_args_is_help=True
)
tx_app = typer.Typer(help="Sign transactions into a data directory's pending pool.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks (figures as JSON).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(chain_app, name="chain")
app.add_typer(tx_app, name="tx")
app.add_typer(bench_app, name="bench")

# markup=False: user text (paths, addresses, messages) is printed verbatim, never parsed.
console = Console(soft_wrap=True, markup=False, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

DataDir = Annotated[Path, typer.Option("--data-dir", help="Data directory of the chain.")]
KeyFile = Annotated[Path, typer.Option("--key", help="Key file (from 'gridnet keys new').")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def parse_gnc(text: str) -> int:
    """'1.5' -> 150000000 base units; refuses more than 8 decimals or negatives."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConfigError(f"amount {text!r} is not a number of GNC (e.g. 12.5)") from None
    units = value * UNITS_PER_GNC
    if units != units.to_integral_value() or units <= 0:
        raise ConfigError(f"amount {text!r} must be positive with at most 8 decimals")
    return int(units)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


# --- keys ------------------------------------------------------------------------------


@keys_app.command("new")
def keys_new(out: Annotated[Path, typer.Option("--out", help="Where to write the key (mode 0600).")]) -> None:
    """Create a new Ed25519 key file and print its address."""
    key = PrivateKey.generate()
    write_key_file(out, key)
    console.print(address_to_text(key.address))


@keys_app.command("show")
def keys_show(key: KeyFile) -> None:
    """Print the address of a key file."""
    console.print(address_to_text(read_key_file(key).address))


# --- chain -----------------------------------------------------------------------------


@chain_app.command("init")
def chain_init(
    data_dir: DataDir,
    genesis: Annotated[
        Path | None, typer.Option("--genesis", help="Genesis TOML (default: built-in devnet).")
    ] = None,
) -> None:
    """Create a chain from a genesis file in an empty data directory."""
    params = load_genesis_file(genesis) if genesis else default_params()
    chain = Chain.create(data_dir, params)
    (data_dir / "genesis.toml").write_text(params_to_toml(params))
    console.print(f"initialised {params.name} in {data_dir}; genesis {chain.chain_id.hex()}")
    chain.close()


@chain_app.command("genesis")
def chain_genesis(
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    alloc: Annotated[
        list[str] | None, typer.Option("--alloc", help="ADDRESS=GNC credited at genesis (repeatable).")
    ] = None,
) -> None:
    """Write a genesis file with the default parameters, to edit before 'chain init'."""
    from gridnet.ledger.params import Allocation

    allocations = []
    for item in alloc or []:
        address, sep, amount = item.partition("=")
        if not sep:
            raise ConfigError(f"--alloc {item!r} must look like ADDRESS=GNC")
        allocations.append(Allocation(address_from_text(address), parse_gnc(amount)))
    if out.exists():
        raise ConfigError(f"{out} already exists; refusing to overwrite it")
    out.write_text(params_to_toml(default_params(tuple(allocations))))
    console.print(f"wrote {out}")


def _miner_key(data_dir: Path, key: Path | None) -> PrivateKey:
    if key is not None:
        return read_key_file(key)
    path = data_dir / "miner.key"
    if not path.exists():
        write_key_file(path, PrivateKey.generate())
    return read_key_file(path)


@chain_app.command("mine")
def chain_mine(
    data_dir: DataDir,
    blocks: Annotated[int, typer.Option("--blocks", min=1, help="How many blocks to mine.")],
    key: Annotated[
        Path | None,
        typer.Option("--key", help="Miner key (default: DATA_DIR/miner.key, created if missing)."),
    ] = None,
) -> None:
    """Mine blocks on the head, including pending transactions."""
    chain = Chain.open(data_dir)
    miner = _miner_key(data_dir, key)
    try:
        with _progress() as progress:
            task = progress.add_task("mining", total=blocks)
            mined_txs = 0

            def on_block(m: MinedBlock) -> None:
                nonlocal mined_txs
                mined_txs += len(m.block.txs) - 1
                for e in m.events:
                    if e.rule:
                        err_console.print(f"dropped {e.txid.hex()[:16]}: {e.rule}: {e.message}")
                progress.advance(task)

            mine_blocks(chain, miner, blocks, on_block=on_block)
        balance = format_gnc(chain.account(miner.address).balance)
        console.print(
            f"mined {blocks} block(s) with {mined_txs} transaction(s); height {chain.height}, "
            f"miner {address_to_text(miner.address)} balance {balance}"
        )
    finally:
        chain.close()


def chain_summary(chain: Chain) -> dict[str, Any]:
    return {
        "name": chain.params.name,
        "height": chain.height,
        "head": chain.head.hash.hex(),
        "cumulative_work": chain.head.total_work,
        "transactions": chain.store.main_tx_count(),
        "genesis": chain.chain_id.hex(),
        "pending": len(chain.store.pending()),
    }


@chain_app.command("show")
def chain_show(data_dir: DataDir, as_json: JsonFlag = False) -> None:
    """Height, head hash, cumulative work and transaction count."""
    chain = Chain.open(data_dir)
    try:
        summary = chain_summary(chain)
    finally:
        chain.close()
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(title=f"chain {summary['name']}", show_header=False)
    for k, v in summary.items():
        table.add_row(k.replace("_", " "), str(v))
    console.print(table)


@chain_app.command("account")
def chain_account(
    data_dir: DataDir,
    address: Annotated[str, typer.Option("--address", help="Address (gn...).")],
    as_json: JsonFlag = False,
) -> None:
    """Balance, nonce and bond of an address."""
    addr = address_from_text(address)
    chain = Chain.open(data_dir)
    try:
        acct = chain.account(addr)
    finally:
        chain.close()
    if as_json:
        print(
            json.dumps(
                {"address": address_to_text(addr), **{f: getattr(acct, f) for f in acct.__struct_fields__}}
            )
        )
        return
    console.print(
        f"{address_to_text(addr)}: balance {format_gnc(acct.balance)}, nonce {acct.nonce}, "
        f"bonded {format_gnc(acct.bonded)}, unbonding {format_gnc(acct.unbonding)}"
    )


@chain_app.command("verify")
def chain_verify(
    data_dir: DataDir,
    as_json: JsonFlag = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Re-validate everything from genesis. Exit 0 when valid; otherwise exit 1 and
    name the first bad height and the rule."""
    if quiet:
        report = verify_chain(data_dir)
    else:
        with _progress() as progress:
            task = progress.add_task("verifying", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = verify_chain(data_dir, progress=on_progress)
    if as_json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "height": report.height,
                    "blocks": report.blocks,
                    "transactions": report.transactions,
                    "seconds": round(report.seconds, 3),
                    "tx_per_s": round(report.tx_per_s, 1),
                    "bad_height": report.bad_height,
                    "rule": report.rule,
                    "message": report.message,
                }
            )
        )
    elif report.ok:
        console.print(
            f"chain valid: {_count(report.blocks, 'block')}, {_count(report.transactions, 'transaction')} "
            f"verified in {report.seconds:.2f} s ({report.tx_per_s:.0f} tx/s)"
        )
    else:
        print(f"chain invalid at height {report.bad_height}: {report.rule}: {report.message}")
    if not report.ok:
        raise typer.Exit(1)


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{what} {text!r} must look like 127.0.0.1:9000")
    return host, int(port)


@app.command("node")
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


@app.command("devnet")
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


# --- transactions ----------------------------------------------------------------------


def _submit(data_dir: Path, key: Path, payload: Payload, fee: int | None) -> None:
    signer = read_key_file(key)
    chain = Chain.open(data_dir)
    try:
        event = submit(chain, signer, payload, fee)
    finally:
        chain.close()
    console.print(f"pending {event.txid.hex()} (mine it with 'gridnet chain mine --data-dir {data_dir}')")


FeeOpt = Annotated[int | None, typer.Option("--fee", help="Fee in base units (default: the minimum).")]


@tx_app.command("transfer")
def tx_transfer(
    data_dir: DataDir,
    key: KeyFile,
    to: Annotated[str, typer.Option("--to", help="Recipient address (gn...).")],
    amount: Annotated[str, typer.Option("--amount", help="Amount in GNC, e.g. 2.5.")],
    fee: FeeOpt = None,
) -> None:
    """Send coin to an address."""
    _submit(data_dir, key, Transfer(address_from_text(to), parse_gnc(amount)), fee)


@tx_app.command("register-identity")
def tx_register_identity(data_dir: DataDir, key: KeyFile, fee: FeeOpt = None) -> None:
    """Solve the identity proof-of-work for the key's address and register it."""
    signer = read_key_file(key)
    chain = Chain.open(data_dir)
    target = chain.params.identity_target_int
    chain.close()
    with console.status("solving the identity proof-of-work"):
        proof = find_identity_proof(signer.address, target)
    console.print(f"identity proof: rounds {proof.rounds}, nonce {proof.nonce}")
    _submit(data_dir, key, RegisterIdentity(proof), fee)


@tx_app.command("bond")
def tx_bond(
    data_dir: DataDir, key: KeyFile, amount: Annotated[str, typer.Option("--amount")], fee: FeeOpt = None
) -> None:
    """Lock coin as the identity's bond."""
    _submit(data_dir, key, Bond(parse_gnc(amount)), fee)


@tx_app.command("unbond")
def tx_unbond(
    data_dir: DataDir, key: KeyFile, amount: Annotated[str, typer.Option("--amount")], fee: FeeOpt = None
) -> None:
    """Release bonded coin (back in the balance after the unbonding delay)."""
    _submit(data_dir, key, Unbond(parse_gnc(amount)), fee)


# --- demo ------------------------------------------------------------------------------


@app.command("simulate")
def simulate_cmd(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario TOML (default: every built-in default).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output directory (report.json, chain/).")] = Path(
        "out/simulation"
    ),
    seed: Annotated[int | None, typer.Option("--seed", help="Override the scenario's seed.")] = None,
) -> None:
    """Run a neighbourhood scenario: meters, market, contracts, settlement, mining nodes."""
    from dataclasses import replace

    from gridnet.sim.neighbourhood import simulate
    from gridnet.sim.scenario import load_scenario

    sc = load_scenario(scenario)
    if seed is not None:
        sc = replace(sc, simulation=replace(sc.simulation, seed=seed))
    with _progress() as progress:
        task = progress.add_task("simulating intervals", total=sc.simulation.intervals)
        report = simulate(sc, out, progress=lambda done, total: progress.update(task, completed=done))
    print_simulation_summary(report, out, out / "chain")
    if not report["verify"]["ok"] or not report["converged"]:
        raise typer.Exit(1)


def _kwh(wh: int) -> str:
    return f"{wh / 1000:,.1f} kWh"


def print_simulation_summary(report: dict[str, Any], out: Path, chain_dir: Path) -> None:
    e, c, r = report["energy"], report["chain"], report["revenue_gnc"]
    table = Table(title=f"GRIDNET neighbourhood: {report['scenario']['name']}", show_header=False)
    p = report["participants"]
    table.add_row(
        "participants",
        f"{p['homes']} homes ({p['prosumers']} with PV, {p['with_battery']} with a battery), "
        f"{p['line_owners']} line owners, a DSO, a manufacturer, a government",
    )
    table.add_row("traded peer to peer", _kwh(e["p2p_wh"]))
    table.add_row(
        "bought from / sold to the DSO", f"{_kwh(e['bought_from_dso_wh'])} / {_kwh(e['sold_to_dso_wh'])}"
    )
    table.add_row("energy contracts", f"{e['contracts']:,}")
    mean = report["clearing_price"]["mean_gnc_per_kwh"]
    table.add_row("mean clearing price", "no trades" if mean is None else f"{mean:.4f} GNC/kWh")
    table.add_row(
        "revenue (GNC)",
        f"prosumers {r['prosumers']:+.4f}, consumers {r['consumers']:+.4f}, "
        f"line owners {r['line_owners']:+.4f}, DSO {r['dso']:+.4f}, miners {r['miners']:+.2f}",
    )
    sub = report["subsidies"]
    table.add_row("subsidies", f"{sub['paid_gnc']:.4f} GNC for {sub['readings_subsidised']} readings")
    d = report["dso"]
    table.add_row(
        "DSO curtailment",
        "none"
        if d["curtailment_interval"] is None
        else f"{d['curtailment_utc']} UTC, "
        f"{d['overrides_recorded']} override(s) recorded, {_kwh(e['curtailed_wh'])} curtailed",
    )
    rl = report["relay"]
    if rl["enabled"]:
        table.add_row(
            "datagrams (orders, states)",
            f"{rl['datagrams_delivered']:,} of {rl['datagrams_sent']:,} delivered, "
            f"{rl['mean_hops']} hops on average, {rl['carrier_forwarded']} by the carrier",
        )
        paid = sum(rl["reward_per_relay_gnc"].values())
        table.add_row(
            "relays paid",
            f"{paid:.6f} GNC to {len(rl['reward_per_relay_gnc'])} relays by {rl['claims_on_chain']} "
            f"claims ({rl['datagrams_per_claim']} datagrams each, {rl['chain_bytes_per_datagram']} "
            f"chain bytes per datagram: {rl['bytes_saving_factor']}x less than a claim each)",
        )
    table.add_row("chain", f"height {c['height']}, head {c['head'][:16]}, {c['bytes']:,} bytes")
    table.add_row("transactions", ", ".join(f"{k} {v}" for k, v in c["transactions_by_type"].items()))
    for name, n in report["nodes"].items():
        extra = f", reorgs {n['reorgs']}, validating {n['validation_s']} s" if "reorgs" in n else ""
        table.add_row(f"node {name}", f"height {n['height']}, mined {n['blocks_mined']}{extra}")
    refused = report["transactions"]["refused"]
    table.add_row("refused transactions", str(refused) if refused else "none")
    table.add_row("converged", "yes" if report["converged"] else "NO")
    v = report["verify"]
    verdict = "valid" if v["ok"] else f"INVALID at {v['bad_height']}: {v['rule']}"
    table.add_row(
        "chain verify", f"{verdict}: {v['blocks']} blocks, {v['transactions']} txs in {v['seconds']} s"
    )
    table.add_row("wall time", f"{report['timing']['simulation_s']} s simulating")
    console.print(table)
    console.print(f"report: {out / 'report.json'}")
    console.print(f"chain:  {chain_dir}  (audit it: gridnet chain verify --data-dir {chain_dir})")


@app.command("ledger-demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output directory (report.json, chain/).")] = Path(
        "out/ledger-demo"
    ),
    seed: Annotated[int, typer.Option("--seed")] = 1,
) -> None:
    """Ledger demo: three mining nodes, identities, bonds, transfers, a partition healed."""
    from gridnet.sim.ledger_demo import DemoConfig, run_demo

    cfg = DemoConfig(seed=seed)
    with _progress() as progress:
        task = progress.add_task("simulating (s)", total=cfg.duration_s)
        report = run_demo(out, cfg, progress=lambda done, total: progress.update(task, completed=done))
    print_demo_summary(report, out)
    if not report["verify"]["ok"] or not report["converged"]:
        raise typer.Exit(1)


def print_demo_summary(report: dict[str, Any], out: Path) -> None:
    c = report["chain"]
    table = Table(title="GRIDNET ledger demo", show_header=False)
    table.add_row("chain", f"{c['name']}  height {c['height']}  head {c['head'][:16]}")
    table.add_row("cumulative work", str(c["cumulative_work"]))
    table.add_row("transactions", ", ".join(f"{k} {v}" for k, v in c["transactions_by_type"].items()))
    table.add_row("chain bytes", f"{c['bytes']:,}")
    p = report["participants"]
    table.add_row("identities registered", f"{p['identities_registered']} of {p['count']}")
    table.add_row("bonded", format_gnc(p["bonded_units"]))
    for name, n in report["nodes"].items():
        table.add_row(
            f"node {name}",
            f"height {n['height']} head {n['head']} mined {n['blocks_mined']} reorgs {n['reorgs']}",
        )
    table.add_row("converged", "yes" if report["converged"] else "NO")
    table.add_row("refused transactions", str(report["transactions"]["refused"] or "none"))
    v = report["verify"]
    verdict = "valid" if v["ok"] else f"INVALID at {v['bad_height']}: {v['rule']}"
    checked = f"{v['blocks']} blocks, {v['transactions']} txs in {v['seconds']} s"
    table.add_row("chain verify", f"{verdict}: {checked}")
    table.add_row("wall time", f"{report['timing']['total_s']} s")
    console.print(table)
    console.print(f"report: {out / 'report.json'}")
    console.print(f"chain:  {out / 'chain'}  (audit it: gridnet chain verify --data-dir {out / 'chain'})")


# --- benchmarks ------------------------------------------------------------------------


def _bench_progress(as_json: bool) -> Callable[[str], None]:
    """Progress lines on stderr, unless the output is JSON for a machine."""
    return (lambda _m: None) if as_json else err_console.log


def _print_figures(figures: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures))
    else:
        console.print_json(json.dumps(figures))


@bench_app.command("ledger")
def bench_ledger(
    as_json: JsonFlag = False,
    blocks: Annotated[int, typer.Option("--blocks", min=1)] = 100,
    per_block: Annotated[int, typer.Option("--per-block", min=1)] = 1000,
) -> None:
    """tx/s validated+applied+persisted, against raw Ed25519 verify/s in the same run."""
    from gridnet.bench import ledger

    figures = ledger.run(blocks=blocks, per_block=per_block, progress=_bench_progress(as_json))
    _print_figures(figures, as_json)


@bench_app.command("network")
def bench_network(
    as_json: JsonFlag = False,
    sync_blocks: Annotated[int, typer.Option("--sync-blocks", min=10)] = 10_000,
    gossip_txs: Annotated[int, typer.Option("--gossip-txs", min=200)] = 40_000,
) -> None:
    """Node processes on 127.0.0.1: block propagation and transaction gossip on a 4-node
    devnet, sync blocks/s."""
    from gridnet.bench import network

    figures = network.run(sync_blocks=sync_blocks, gossip_txs=gossip_txs, progress=_bench_progress(as_json))
    _print_figures(figures, as_json)


@bench_app.command("relay")
def bench_relay(as_json: JsonFlag = False) -> None:
    """Forwarding one datagram at one hop against its floor (open + verify + sign), same run."""
    from gridnet.bench import relay

    figures = relay.run()
    _print_figures(figures, as_json)


@bench_app.command("market")
def bench_market(
    as_json: JsonFlag = False,
    orders: Annotated[int, typer.Option("--orders", min=2)] = 200_000,
) -> None:
    """Double-auction orders/s cleared, against raw Ed25519 verify/s in the same run."""
    from gridnet.bench import market

    figures = market.run(orders=orders, progress=_bench_progress(as_json))
    _print_figures(figures, as_json)


def main() -> None:
    try:
        app()
    except GridnetError as exc:
        named = isinstance(exc, InvalidTransaction | InvalidBlock | MempoolRejection | DecodeError)
        prefix = f"{exc.rule}: " if named else ""
        err_console.print(Text("error: ", style="red") + Text(f"{prefix}{exc}"))
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
