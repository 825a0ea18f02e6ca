"""``gridnet sweep``: a grid of scenarios as Dask tasks, on this machine or a Dask cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gridnet.cli.common import JsonFlag, console, count, err_console, progress_bar
from gridnet.interrupts import as_keyboard_interrupt
from gridnet.system import usable_cores


def sweep_cmd(
    sweep_file: Annotated[Path, typer.Argument(metavar="SWEEP.toml", help="Sweep file (docs/cli.md).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default: the file's out, else out/NAME).")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", help="A running Dask scheduler, tcp://HOST:PORT (default: a local cluster)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Worker processes of the local cluster (default: one per core; at most two per core).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a grid of scenarios (scenario keys x seeds) as Dask tasks; resume where it stopped."""
    from gridnet.sim.sweep import check_workers, load_sweep, open_client, run_sweep, scheduler_address

    # The options first, whatever the sweep file says and whatever is left to run.
    if scheduler is not None and workers is not None:
        raise typer.BadParameter(
            "--workers sizes the local cluster; a scheduler's workers are started with 'dask worker'",
            param_hint="--workers",
        )
    try:
        if workers is not None:
            check_workers(workers)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--workers") from None
    try:
        if scheduler is not None:
            scheduler = scheduler_address(scheduler)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scheduler") from None
    with progress_bar() as checking:  # every run's scenario is checked before anything runs
        check = checking.add_task("checking runs", total=None)
        sweep = load_sweep(
            sweep_file, out, lambda done, total: checking.update(check, completed=done, total=total)
        )
    where = scheduler or f"a local cluster of {count(workers or usable_cores(), 'worker')}"
    with as_keyboard_interrupt(), progress_bar() as progress:  # (SIGTERM as Ctrl-C: the table is written)
        task = progress.add_task("runs", total=None)

        def advanced(done: int, total: int) -> None:
            if done == 0:
                earlier = len(sweep.runs) - total
                err_console.print(
                    f"sweep {sweep.name}: {count(len(sweep.runs), 'run')} into {sweep.out}; "
                    + (f"{total} to run on {where}" if total else "nothing to run")
                    + (f" ({earlier} completed earlier)" if earlier else "")
                )
            progress.update(task, completed=done, total=total)

        result = run_sweep(sweep, lambda: open_client(scheduler, workers), advanced, err_console.print)
    summary = result.summary()
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    if result.interrupted:
        err_console.print(
            f"{count(summary['pending'], 'run')} not finished (one that was running may still finish): the "
            "same command resumes the sweep"
        )
        raise typer.Exit(130)
    if summary["failed"] or summary["unverified"] or summary["plots_failed"]:
        raise typer.Exit(1)


def _print_summary(s: dict[str, object]) -> None:
    table = Table(title=f"GRIDNET sweep: {s['sweep']}", show_header=False)
    table.add_row("runs", f"{s['runs']} in the grid")
    now = s["ran_now"]
    assert isinstance(now, dict)
    table.add_row(
        "ran now", f"{s['ran']}: {now['ok']} ok, {now['unverified']} unverified, {now['failed']} failed"
    )
    table.add_row("resumed", f"{s['resumed']} completed by an earlier sweep (not run again)")
    if s["pending"]:
        table.add_row("not run", f"{s['pending']} (interrupted)")
    table.add_row("wall time", f"{s['seconds']} s")
    absent = s["figures_in_no_run"]
    assert isinstance(absent, list)
    if absent:
        table.add_row("figures in no report", ", ".join(absent))
    console.print(table)
    failures = s["failures"]
    assert isinstance(failures, list)
    for f in failures[:5]:
        console.print(f"failed: {f['id']}: {f['error']}")
    if len(failures) > 5:
        console.print(f"failed: ... and {len(failures) - 5} more (the table's error column)")
    console.print(f"table: {s['table']}  (a row per run: its values, seed, status and figures; Parquet)")
    plots = s["plots"]
    assert isinstance(plots, list)
    if plots:
        console.print(f"plots: {Path(plots[0]).parent}  ({', '.join(Path(p).name for p in plots)})")
    plots_failed = s["plots_failed"]
    assert isinstance(plots_failed, list)
    for line in plots_failed:
        console.print(f"plot not drawn: {line}")
    console.print(
        f"runs:  {Path(str(s['out'])) / 'runs'}  (each a 'gridnet simulate' output and its scenario.toml)"
    )


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)
