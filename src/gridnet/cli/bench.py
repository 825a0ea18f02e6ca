"""``gridnet bench``: benchmarks that print their figures (as JSON with --json)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from gridnet.cli.common import JsonFlag, console, err_console

app = typer.Typer(help="Benchmarks (figures as JSON).", no_args_is_help=True)


def _bench_progress(as_json: bool) -> Callable[[str], None]:
    """Progress lines on stderr, unless the output is JSON for a machine."""
    return (lambda _m: None) if as_json else err_console.log


def _print_figures(figures: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures))
    else:
        console.print_json(json.dumps(figures))


@app.command("auction")
def bench_auction(
    as_json: JsonFlag = False,
    homes: Annotated[
        int, typer.Option("--homes", min=2, max=1_000_000, help="Homes (each a buyer or a seller).")
    ] = 200,
    orders: Annotated[int, typer.Option("--orders", min=2, help="Orders, over all areas.")] = 2_000,
    areas: Annotated[int, typer.Option("--areas", min=1, max=100_000, help="Areas: one auction each.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the orders' energy and prices.")] = 1,
) -> None:
    """The same orders cleared on chain (in the state transition) and off chain (the hub's
    double auction): orders/s and their ratio, chain bytes per trade, latency in blocks."""
    from gridnet.bench import auction

    try:
        auction.check_sizes(homes=homes, orders=orders, areas=areas)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    figures = auction.run(
        homes=homes, orders=orders, areas=areas, seed=seed, progress=_bench_progress(as_json)
    )
    _print_figures(figures, as_json)


@app.command("consensus")
def bench_consensus(
    as_json: JsonFlag = False,
    transactions: Annotated[
        int, typer.Option("--transactions", min=1, max=10_000_000, help="Transfers flooded into each devnet.")
    ] = 20_000,
    senders: Annotated[
        int, typer.Option("--senders", min=1, max=100_000, help="Funded accounts sending them.")
    ] = 200,
    seconds: Annotated[
        float,
        typer.Option("--seconds", min=1.0, help="The most to wait for them on each devnet, in seconds."),
    ] = 300.0,
) -> None:
    """Sustained tx/s of a 4-validator permissioned devnet (1 s slots) and of a 4-node
    proof-of-work devnet with the same load, against the paper's tau for the block size."""
    from gridnet.bench import consensus

    try:
        consensus.check_sizes(transactions=transactions, senders=senders)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    figures = consensus.run(
        transactions=transactions, senders=senders, seconds=seconds, progress=_bench_progress(as_json)
    )
    _print_figures(figures, as_json)
    late = [kind for kind in consensus.KINDS if not figures[kind]["complete"]]
    if late or not figures["poa"]["final"]:
        err_console.print(
            f"not every transaction was included (poa: and final) within {seconds:g} s on: "
            + ", ".join(late or ["poa"])
        )
        raise typer.Exit(1)


@app.command("ledger")
def bench_ledger(
    as_json: JsonFlag = False,
    blocks: Annotated[int, typer.Option("--blocks", min=1, max=100_000)] = 100,
    per_block: Annotated[int, typer.Option("--per-block", min=1, max=100_000)] = 1000,
) -> None:
    """tx/s validated+applied+persisted, against raw Ed25519 verify/s in the same run."""
    from gridnet.bench import ledger

    figures = ledger.run(blocks=blocks, per_block=per_block, progress=_bench_progress(as_json))
    _print_figures(figures, as_json)


@app.command("meters")
def bench_meters(
    as_json: JsonFlag = False,
    meters: Annotated[
        int, typer.Option("--meters", min=1, max=1_000_000, help="Meters, each registered by its own owner.")
    ] = 4_096,
    intervals: Annotated[
        int, typer.Option("--intervals", min=1, max=2_976, help="15-minute readings each meter signs.")
    ] = 16,
) -> None:
    """Signed meter readings one node validates and stores per second (batched in
    SubmitReadings, blocks added by Chain), against raw Ed25519 verify/s in the same process;
    chain and SQLite bytes per reading, per meter per year and for 10 million meters."""
    from gridnet.bench import meters as bench

    figures = bench.run(meters=meters, intervals=intervals, progress=_bench_progress(as_json))
    _print_figures(figures, as_json)


@app.command("network")
def bench_network(
    as_json: JsonFlag = False,
    sync_blocks: Annotated[int, typer.Option("--sync-blocks", min=10, max=1_000_000)] = 10_000,
    gossip_txs: Annotated[int, typer.Option("--gossip-txs", min=200, max=10_000_000)] = 40_000,
) -> None:
    """Node processes on 127.0.0.1: block propagation and transaction gossip on a 4-node
    devnet, sync blocks/s."""
    from gridnet.bench import network

    figures = network.run(sync_blocks=sync_blocks, gossip_txs=gossip_txs, progress=_bench_progress(as_json))
    _print_figures(figures, as_json)


@app.command("relay")
def bench_relay(as_json: JsonFlag = False) -> None:
    """Forwarding one datagram at one hop against its floor (open + verify + sign), same run."""
    from gridnet.bench import relay

    figures = relay.run()
    _print_figures(figures, as_json)


@app.command("market")
def bench_market(
    as_json: JsonFlag = False,
    orders: Annotated[int, typer.Option("--orders", min=2, max=100_000_000)] = 200_000,
) -> None:
    """Double-auction orders/s cleared, against raw Ed25519 verify/s in the same run."""
    from gridnet.bench import market

    figures = market.run(orders=orders, progress=_bench_progress(as_json))
    _print_figures(figures, as_json)


@app.command("ev-auction")
def bench_ev_auction(
    as_json: JsonFlag = False,
    auctions: Annotated[int, typer.Option("--auctions", min=1, max=10_000_000)] = 2_000,
) -> None:
    """Vehicle-to-vehicle auctions: the iterative double auction's welfare, rounds, messages and
    time against the one-shot double auction's on the same random hotspots (same run)."""
    from gridnet.bench import ev_auction

    figures = ev_auction.run(auctions=auctions, progress=_bench_progress(as_json))
    _print_figures(figures, as_json)


@app.command("world")
def bench_world(
    as_json: JsonFlag = False,
    scenario: Annotated[
        Path | None, typer.Option("--scenario", help="A scenario file (default: the built-in day)")
    ] = None,
) -> None:
    """One scenario's whole run and the share of it its power flows take (same run)."""
    from gridnet.bench import world

    figures = world.run(scenario, progress=_bench_progress(as_json))
    _print_figures(figures, as_json)


@app.command("sim")
def bench_sim(
    as_json: JsonFlag = False,
    homes: Annotated[str, typer.Option("--homes", help="Area sizes to run, comma-separated")] = "20,100,500",
    cores: Annotated[
        str, typer.Option("--cores", help="CPUs to pin each run to, comma-separated (0 = all)")
    ] = "1,0",
    intervals: Annotated[int, typer.Option("--intervals", min=1, help="15-minute intervals per run")] = 96,
) -> None:
    """The simulator's speed against its cryptographic floor (each run in its own process)."""
    from gridnet.bench import sim

    sizes, pins = _int_list(homes, "--homes"), _int_list(cores, "--cores")
    try:
        sim.check_runs(sizes, pins, intervals)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    figures = sim.run(sizes, cores=pins, intervals=intervals, progress=_bench_progress(as_json))
    _print_figures(figures, as_json)


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]  # (an empty item, as in "20,,5", is a typo)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a comma-separated list of whole numbers", param_hint=option
        ) from None
    if min(values) < 0:
        raise typer.BadParameter(f"{text!r}: give whole numbers, none negative", param_hint=option)
    return values
