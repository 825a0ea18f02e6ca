"""The ``gridnet`` command: thin wrappers that parse, call and print.

One module per group of commands (keys, chain, tx, node, sim, bench); ``main`` turns every
error a user can cause into one line.
"""

from __future__ import annotations

import sys

import typer
from rich.text import Text

from gridnet.cli import bench, chain, keys, node, sim, tx
from gridnet.cli.common import err_console
from gridnet.errors import DecodeError, GridnetError, InvalidBlock, InvalidTransaction, MempoolRejection

app = typer.Typer(
    help="GRIDNET: a fully distributed smart-grid ledger.", no_args_is_help=True, add_completion=False
)
app.add_typer(keys.app, name="keys")
app.add_typer(chain.app, name="chain")
app.add_typer(tx.app, name="tx")
app.add_typer(bench.app, name="bench")
node.register(app)
sim.register(app)


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
