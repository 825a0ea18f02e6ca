"""``gridnet simulate`` and ``gridnet ledger-demo``: runs and their summaries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from gridnet.cli.common import console, count, err_console, progress_bar
from gridnet.interrupts import as_keyboard_interrupt
from gridnet.units import format_gnc


def simulate_cmd(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario TOML (default: every built-in default).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output directory (report.json, chain/).")] = Path(
        "out/simulation"
    ),
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, max=2**63 - 1, help="Override the scenario's seed.")
    ] = None,
    csv: Annotated[bool, typer.Option("--csv", help="Write the time series as CSV too.")] = False,
) -> None:
    """Run a neighbourhood scenario: meters, market, contracts, settlement, mining nodes."""
    from dataclasses import replace

    from gridnet.sim.neighbourhood import simulate
    from gridnet.sim.scenario import load_scenario

    sc = load_scenario(scenario)
    if seed is not None:
        sc = replace(sc, simulation=replace(sc.simulation, seed=seed))
    total = sc.simulation.intervals
    done = 0

    def advanced(k: int, _total: int) -> None:
        nonlocal done
        done = k
        progress.update(task, completed=k)

    try:
        with as_keyboard_interrupt(), progress_bar() as progress:
            task = progress.add_task("simulating intervals", total=total)
            report = simulate(sc, out, progress=advanced, csv=csv)
    except KeyboardInterrupt as stop:
        interrupted(done, total, out, stop, "chain")
    print_simulation_summary(report, out, out / "chain")
    if not report["verify"]["ok"] or not report["converged"]:
        raise typer.Exit(1)


def interrupted(done: int, total: int, out: Path, stop: KeyboardInterrupt, chain: str) -> NoReturn:
    """Ctrl-C during a run into ``out``: say where it stopped, whether the partial chain
    (``chain`` in what the run wrote, ``RunInterrupted``) verifies (every block is stored whole
    or not at all) and that ``out`` keeps an earlier run's results; exit 130."""
    from gridnet.ledger.store import DB_NAME
    from gridnet.ledger.verify import verify_chain
    from gridnet.sim.output import REPORT, RunInterrupted

    if isinstance(stop, RunInterrupted) and stop.complete:
        completed(out)
    said = f"interrupted at interval {done} of {total}"
    chain_dir = stop.partial / chain if isinstance(stop, RunInterrupted) else None
    if chain_dir is None or not (chain_dir / DB_NAME).exists():
        said += ", before any chain was written"
    else:
        audit = verify_chain(chain_dir)
        verdict = (
            f"verifies ({count(audit.blocks, 'block')}, {count(audit.transactions, 'transaction')})"
            if audit.ok
            else f"does NOT verify: height {audit.bad_height}: {audit.rule}: {audit.message}"
        )
        said += f"; the partial chain in {chain_dir} {verdict}"
    if (out / REPORT).exists():
        said += f"; {out} keeps the earlier run's results"
    err_console.print(said)
    raise SystemExit(130)


def completed(out: Path) -> NoReturn:
    """Ctrl-C as a complete run's files took their place in ``out`` (it waited for that): say
    that ``out`` holds the new run; exit 130."""
    err_console.print(f"interrupted as the run's results took their place: {out} holds the complete new run")
    raise SystemExit(130)


def refusals(transactions: dict[str, Any], shown: int = 3) -> str:
    """Each rule that refused transactions, how many, and whose (the first ``shown``
    participants): 'InsufficientBalance 11 (dso 11)'; "none"."""
    by = transactions.get("refused_by", {})
    parts = []
    for rule, n in sorted(transactions["refused"].items(), key=lambda item: -item[1]):
        who = list(by.get(rule, {}).items())
        named = ", ".join(f"{name} {k}" for name, k in who[:shown])
        more = f", {len(who) - shown} more" if len(who) > shown else ""
        parts.append(f"{rule} {n:,}" + (f" ({named}{more})" if who else ""))
    return "; ".join(parts) or "none"


def _kwh(wh: float) -> str:
    """Energy as the summary shows it: kWh to 0.1, or below 0.1 kWh in Wh (26 Wh read "0.0 kWh"
    beside the 0.0104 GNC it cost)."""
    if wh and abs(wh) < 100:
        return f"{int(wh):,} Wh" if float(wh).is_integer() else f"{wh:,.1f} Wh"
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
    table.add_row(
        "the homes' day",
        f"PV {_kwh(e['pv_wh'])}, load {_kwh(e['load_wh'])}, battery losses {_kwh(e['battery_losses_wh'])}",
    )
    g = report["grid"]
    owners = g["line_owners"]
    table.add_row(
        "feeders (power flow)",
        ", ".join(
            f"{o['name']}: losses {o['losses_wh'] / 1000:,.2f} kWh, "
            f"up to {o['max_loading_percent']:.0f} % loaded, {o['v_min_pu']:.3f}-{o['v_max_pu']:.3f} pu"
            for o in owners
        )
        + f"; {g['congested_intervals']} congested interval(s)",
    )
    table.add_row("traded peer to peer", _kwh(e["p2p_wh"]))
    table.add_row(
        "bought from / sold to the DSO", f"{_kwh(e['bought_from_dso_wh'])} / {_kwh(e['sold_to_dso_wh'])}"
    )
    ct = report["contracts"]
    im = ct["imbalance"]
    refused = (
        f" ({e['contracts_refused']:,} never opened on chain; {_kwh(e['unpaid_wh'])} delivered the chain "
        "did not pay for)"
        if e.get("unpaid_wh")
        else ""
    )
    table.add_row(
        "energy contracts",
        f"{e['contracts']:,}{refused}: {ct['settled_in_full']:,} settled in full, "
        f"{ct['delivered_short']:,} delivered short (closed, {ct['remainder_refunded_gnc']:.4f} GNC "
        f"refunded), {ct['disputes_raised']} disputed "
        f"({ct['disputes_resolved']} resolved on chain)",
    )
    fc = report["forecast"]
    table.add_row(
        "forecasts vs meters",
        f"{fc['net_energy_abs_error_percent']} % off; shortfall bought from the DSO at "
        f"{im['price_gnc_per_kwh']} GNC/kWh: {_kwh(im['bought_wh'])} for {im['paid_gnc']:.4f} GNC",
    )
    mean = report["clearing_price"]["mean_gnc_per_kwh"]
    cp = report["clearing_price"]
    in_currency = (
        f" ({cp['mean_per_mwh_in_currency']:.2f} {cp['currency']}/MWh)" if cp["currency"] != "GNC" else ""
    )
    weighted = cp["traded_weighted_gnc_per_kwh"]
    by_energy = "" if weighted is None else f"; {weighted:.4f} weighted by the energy traded"
    table.add_row(
        "mean clearing price", "no trades" if mean is None else f"{mean:.4f} GNC/kWh{in_currency}{by_energy}"
    )
    table.add_row(
        "revenue (GNC)",
        f"prosumers {r['prosumers']:+.4f}, consumers {r['consumers']:+.4f}, "
        f"line owners {r['line_owners']:+.4f}, DSO {r['dso']:+.4f}, miners {r['miners']:+.2f} (of which "
        f"{report['economy']['block_subsidy_gnc']:,.0f} block subsidy: new coin minted by each block, "
        "not energy money)",
    )
    sub = report["subsidies"]
    table.add_row("subsidies", f"{sub['paid_gnc']:.4f} GNC for {sub['readings_subsidised']} readings")
    d = report["dso"]
    table.add_row(
        "DSO commands (congestion)",
        "none: the grid stayed within its limits"
        if not d["commands"]
        else f"{d['commands']} from {d['first_command_utc']} to {d['homes_commanded']} homes downstream; "
        f"{d['homes_following_commands']} followed, {d['overrides_recorded']} override(s) recorded, "
        f"{_kwh(e['curtailed_wh'])} curtailed",
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
            f"claims for {rl['connections_claimed']} connections ({rl['datagrams_per_claim']} datagrams "
            f"each, {rl['chain_bytes_per_datagram']} chain bytes per datagram: "
            f"{rl['bytes_saving_factor']}x less than a claim per datagram)",
        )
    table.add_row("chain", f"height {c['height']}, head {c['head'][:16]}, {c['bytes']:,} bytes")
    table.add_row("transactions", ", ".join(f"{k} {v}" for k, v in c["transactions_by_type"].items()))
    for name, n in report["nodes"].items():
        extra = f", reorgs {n['reorgs']}, validating {n['validation_s']} s" if "reorgs" in n else ""
        table.add_row(f"node {name}", f"height {n['height']}, mined {n['blocks_mined']}{extra}")
    table.add_row("refused transactions", refusals(report["transactions"]))
    collector = report.get("collector", {})
    if collector.get("telemetry") == "mqtt":  # (in memory the readings come from the meters)
        dropped = ", ".join(f"{rule} {n:,}" for rule, n in collector["dropped"].items())
        table.add_row("readings dropped (MQTT)", dropped or "none")
    table.add_row("converged", "yes" if report["converged"] else "NO")
    v = report["verify"]
    verdict = "valid" if v["ok"] else f"INVALID at {v['bad_height']}: {v['rule']}"
    table.add_row(
        "chain verify", f"{verdict}: {v['blocks']} blocks, {v['transactions']} txs in {v['seconds']} s"
    )
    table.add_row("wall time", f"{report['timing']['simulation_s']} s simulating")
    console.print(table)
    console.print(f"report: {out / 'report.json'}")
    if "series" in report:
        console.print(
            f"series: {out / 'series'}  ({', '.join(report['series']['tables'])}: Parquet, docs/scenarios.md)"
        )
    console.print(f"chain:  {chain_dir}  (audit it: gridnet chain verify --data-dir {chain_dir})")
    console.print(f"see it: gridnet dashboard {out}  (then open http://127.0.0.1:8040/)")


def demo(
    out: Annotated[Path, typer.Option("--out", help="Output directory (report.json, chain/).")] = Path(
        "out/ledger-demo"
    ),
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=2**63 - 1, help="Seeds the demo's keys and draws.")
    ] = 1,
) -> None:
    """Ledger demo: three mining nodes, identities, bonds, transfers, a partition healed."""
    from gridnet.sim.ledger_demo import DemoConfig, run_demo
    from gridnet.sim.output import RunInterrupted

    cfg = DemoConfig(seed=seed)
    try:
        with progress_bar() as progress:
            task = progress.add_task("simulating (s)", total=cfg.duration_s)
            report = run_demo(out, cfg, progress=lambda done, total: progress.update(task, completed=done))
    except RunInterrupted as stop:
        if not stop.complete:
            raise
        completed(out)
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
    table.add_row("refused transactions", refusals(report["transactions"]))
    v = report["verify"]
    verdict = "valid" if v["ok"] else f"INVALID at {v['bad_height']}: {v['rule']}"
    checked = f"{v['blocks']} blocks, {v['transactions']} txs in {v['seconds']} s"
    table.add_row("chain verify", f"{verdict}: {checked}")
    table.add_row("wall time", f"{report['timing']['total_s']} s")
    console.print(table)
    console.print(f"report: {out / 'report.json'}")
    console.print(f"chain:  {out / 'chain'}  (audit it: gridnet chain verify --data-dir {out / 'chain'})")


def dashboard_cmd(
    out: Annotated[
        Path | None, typer.Argument(help="A run's output directory (gridnet simulate --out).")
    ] = None,
    node: Annotated[
        str | None, typer.Option("--node", help="Follow a running node live instead: its API URL.")
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to serve on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to serve on.")] = 8040,
) -> None:
    """Serve one run's results in a browser (overview, market, homes, grid, its chain), or
    follow a running node live with --node URL (overview, network, chain)."""
    import uvicorn
    from fastapi import FastAPI

    from gridnet.node.api.server import api_config

    if (out is None) == (node is None):
        raise typer.BadParameter("give a run's directory OUT or --node URL (one of them)")
    app: FastAPI
    if node is not None:
        from gridnet.dashboard.live import create_live_dashboard

        app = create_live_dashboard(node)
        what = f"the node at {node}"
    else:
        from gridnet.dashboard.app import create_dashboard
        from gridnet.dashboard.run import RunResults

        assert out is not None
        RunResults.open(out).close()  # a clear error now rather than at the first page
        app = create_dashboard(out)
        what = str(out)
    _check_free(host, port)
    console.print(f"dashboard of {what} on http://{host}:{port}/ (Ctrl-C stops it)")
    uvicorn.Server(api_config(app, "this dashboard", host=host, port=port, lifespan="on")).run()


def _check_free(host: str, port: int) -> None:
    """One clear line when the address cannot be served on (taken, or not this machine's)."""
    import errno
    import socket

    from gridnet.errors import ConfigError

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        reason = (exc.strerror or str(exc)).partition(" (while attempting")[0]
        if exc.errno is not None and exc.errno < 0:  # (getaddrinfo's: the name did not resolve)
            fix = "give a name or address of this machine with --host, e.g. 127.0.0.1"
        elif exc.errno == errno.EADDRNOTAVAIL:
            fix = "give an address of this machine with --host"
        else:
            fix = "choose another --port"
        raise ConfigError(f"cannot serve the dashboard on {host}:{port}: {reason}; {fix}") from None


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)
    app.command("ledger-demo")(demo)
    app.command("dashboard")(dashboard_cmd)
