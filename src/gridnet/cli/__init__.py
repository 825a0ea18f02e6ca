"""The ``gridnet`` command: thin wrappers that parse, call and print.

One module per group of commands (keys, chain, tx, node, sim, bench); ``main`` turns every
error a user can cause into one line.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
from typing import Annotated, Any

import typer
import typer.main
from rich.text import Text

from gridnet import __version__
from gridnet.cli import bench, chain, keys, meter, node, sim, sweep, tx
from gridnet.cli.common import err_console
from gridnet.errors import DecodeError, GridnetError, InvalidBlock, InvalidTransaction, MempoolRejection
from gridnet.node.client import NodeRefused

app = typer.Typer(
    help="GRIDNET: a fully distributed smart-grid ledger.", no_args_is_help=True, add_completion=False
)


def _version(value: bool) -> None:
    if value:
        print(f"gridnet {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """GRIDNET: a fully distributed smart-grid ledger."""


app.add_typer(keys.app, name="keys")
app.add_typer(chain.app, name="chain")
app.add_typer(tx.app, name="tx")
app.add_typer(bench.app, name="bench")
app.add_typer(meter.app, name="meter")
node.register(app)
sim.register(app)
sweep.register(app)


_UsageError: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
"""Click's usage error (typer may carry its own copy of click)."""
_NAMED = InvalidTransaction | InvalidBlock | MempoolRejection | DecodeError | NodeRefused
"""Errors printed with their rule's name first (InsufficientBalance: ...)."""


def _is_utf8(text: str) -> bool:
    """Whether ``text`` came from valid UTF-8: Python turns the bytes of a command-line
    argument that do not decode into lone surrogates, which no encoder takes (an option's
    value met ``UnicodeEncodeError`` wherever it was encoded: a name hashed, a path written)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _takes_value(command: Any, flag: str) -> bool:
    """Whether ``flag`` is an option of ``command`` that takes a value (not a flag)."""
    for param in getattr(command, "params", ()):
        if flag in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())):
            return not (getattr(param, "is_flag", False) or getattr(param, "count", False))
    return False


@functools.cache
def _command_tree() -> Any:
    """The click command ``app`` runs as (its groups, commands and their options)."""
    return typer.main.get_command(app)


def _not_utf8(args: list[str]) -> str | None:
    """The line refusing the first of ``args`` that is not UTF-8 text, naming its option
    (None: all are): checked before any command runs, so nothing is loaded or written."""
    bad = next((i for i, arg in enumerate(args) if not _is_utf8(arg)), None)
    if bad is None:
        return None
    arg = args[bad]
    command = _command_tree()
    for token in args[:bad]:  # (the command named: its leading words)
        sub = getattr(command, "commands", {}).get(token)
        if sub is None:
            break
        command = sub
    name, eq, value = arg.partition("=")
    if arg.startswith("--") and eq and _is_utf8(name):
        where, arg = name, value
    elif bad > 0 and args[bad - 1].startswith("-") and _takes_value(command, args[bad - 1]):
        where = args[bad - 1]
    else:
        where = "a command-line argument"
    text = arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = text if len(text) <= 60 else text[:60] + "..."
    return f"{where} is not valid UTF-8 text: '{text}'; give it in UTF-8 (a name, a path, any value)"


def main() -> None:
    """Run the command; an error a user can cause (a bad flag or value included) is one line
    and exit 1 (130 for Ctrl-C).
    GRIDNET_TRACEBACK=1 shows the traceback instead (for developers)."""
    if (refused := _not_utf8(sys.argv[1:])) is not None:
        _fail(refused)
    try:
        code = app(standalone_mode=False, prog_name="gridnet")
    except _UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group without its command: its help
            exc.show()
            sys.exit(exc.exit_code)
        command = exc.ctx.command_path if exc.ctx is not None else "gridnet"
        _fail(f"{exc.format_message()} (see '{command} --help')")  # a bad flag or value
    except typer.Abort:  # Ctrl-C at a prompt
        err_console.print("interrupted")
        sys.exit(130)
    except GridnetError as exc:
        if os.environ.get("GRIDNET_TRACEBACK"):
            raise
        named = isinstance(
            exc, InvalidTransaction | InvalidBlock | MempoolRejection | DecodeError | NodeRefused
        )
        prefix = f"{exc.rule}: " if named else ""
        _fail(f"{prefix}{exc}")
    except OSError as exc:  # a file or directory the command cannot read or write
        if os.environ.get("GRIDNET_TRACEBACK"):
            raise
        where = f" {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}:{where} (check the path and its permissions)")
    except sqlite3.OperationalError as exc:  # a chain's store that cannot be written now
        if os.environ.get("GRIDNET_TRACEBACK"):
            raise
        _fail(
            f"a chain's SQLite store could not be written ({exc}): the disk is full, a file-size "
            "limit was reached, or the directory is read-only; free space or choose another "
            "directory, and run the command again"
        )
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    if code == 130:  # (typer turns Ctrl-C into exit code 130)
        err_console.print("interrupted")
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int = 1) -> None:
    err_console.print(Text("error: ", style="red") + Text(" ".join(message.split())))
    sys.exit(code)
