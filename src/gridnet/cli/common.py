"""What every ``gridnet`` command shares: the consoles, option types, amounts, progress."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gridnet.errors import ConfigError, NodeUnavailable
from gridnet.units import PUBLIC_KEY_BYTES, UNITS_PER_GNC

if TYPE_CHECKING:
    from gridnet.node.client import NodeClient

TOKEN_ENV = "GRIDNET_API_TOKEN"
MAX_UNITS = 2**63 - 1
"""The largest amount or fee a transaction can carry [base units]."""
DECIMALS = len(str(UNITS_PER_GNC)) - 1
"""Decimals of a GNC amount (a base unit is 10^-8 GNC)."""

# markup=False: user text (paths, addresses, messages) is printed verbatim, never parsed.
console = Console(soft_wrap=True, markup=False, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

DataDir = Annotated[Path, typer.Option("--data-dir", help="Data directory of the chain.")]
KeyFile = Annotated[Path, typer.Option("--key", help="Key file (from 'gridnet keys new').")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
NodeUrl = Annotated[
    str | None,
    typer.Option("--node", help="A running node's API, e.g. http://127.0.0.1:8330 (instead of --data-dir)."),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--api-token-file",
        help="The node's API token (else GRIDNET_API_TOKEN, else the cookie of --data-dir's node).",
    ),
]
PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file", help="File with the key's passphrase (else GRIDNET_PASSPHRASE, else a prompt)."
    ),
]
Registrant = Annotated[
    str,
    typer.Option(
        "--registrant",
        help="The public key (hex) that registered it, as 'gridnet keys show --public-key' prints it: "
        "each registrant's names are its own.",
    ),
]


def shown_name(name: str) -> str:
    """A registered name as a line of output shows it: itself, or its repr when it holds a
    character that does not print (a newline in a name split the line in two)."""
    return name if name.isprintable() else repr(name)


def public_key_in(text: str) -> bytes | None:
    """The 32-byte public key ``text`` gives in hex (None: it gives none)."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        return None
    return key if len(key) == PUBLIC_KEY_BYTES else None


def parse_registrant(text: str) -> bytes:
    """A ``--registrant``: the 32-byte public key, in hex, whose registration named the group
    (its id is that key and the name); one clear line if it is not one."""
    key = public_key_in(text)
    if key is None:
        raise ConfigError(
            f"--registrant {text[:70]!r}: give the 32-byte public key, in hex, that registered it "
            "('gridnet keys show --key FILE --public-key')"
        )
    return key


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?", re.ASCII)


def parse_gnc(text: str) -> int:
    """'1.5' -> 150000000 base units; refuses more than 8 decimals or negatives, and what
    Decimal reads but a person would not mean as an amount ('1_000', '1e3', '.5', non-ASCII
    digits)."""
    if not AMOUNT.fullmatch(text):
        raise ConfigError(f"amount {text!r} is not a number of GNC (digits, e.g. 12.5)")
    # Read exactly, in integers: a Decimal product is rounded to 28 digits before it can be
    # found not to be whole (1 followed by 30 decimals was signed as 1 GNC).
    whole, _, decimals = text.partition(".")
    whole, decimals = whole.lstrip("0"), decimals.rstrip("0")
    most = MAX_UNITS // UNITS_PER_GNC
    if len(decimals) > DECIMALS:
        raise ConfigError(f"amount {text!r} must be positive with at most {DECIMALS} decimals")
    if len(whole) > len(str(most)):
        raise ConfigError(f"amount {text!r} is more than a transaction can carry (at most {most:,} GNC)")
    units = int(whole or "0") * UNITS_PER_GNC + int(decimals.ljust(DECIMALS, "0"))
    if units <= 0:
        raise ConfigError(f"amount {text!r} must be positive with at most {DECIMALS} decimals")
    if units > MAX_UNITS:
        raise ConfigError(f"amount {text!r} is more than a transaction can carry (at most {most:,} GNC)")
    return units


def progress_bar() -> Progress:
    """A progress bar on stderr (nothing at all when stderr is not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


def connect(node: str | None, data_dir: Path | None, token_file: Path | None = None) -> NodeClient | None:
    """The running node a command talks to: ``--node URL``, else the node that runs on
    ``--data-dir`` (found through its node.json); None when no node runs there. Both given
    must name one node (else which chain is meant?). The token: ``--api-token-file``, else
    ``GRIDNET_API_TOKEN``, else the one the node on ``--data-dir`` uses."""
    from gridnet.node.auth import read_token_file, token_problem
    from gridnet.node.client import NodeClient, running_node

    if token_file is not None:
        token: str | None = read_token_file(token_file)
    elif os.environ.get(TOKEN_ENV):
        token = os.environ[TOKEN_ENV].strip()
        problem = token_problem(token)
        if problem is not None:
            raise ConfigError(f"${TOKEN_ENV} is not an API token: {problem}; set it to the node's token")
    else:
        token = None
    if node is None:
        return None if data_dir is None else NodeClient.for_data_dir(data_dir, token=token)
    client = NodeClient(node, token)
    if data_dir is not None:
        local = running_node(data_dir)
        if local is None or local.api is None or NodeClient(local.api).url != client.url:
            running = (
                "no node runs there" if local is None or local.api is None else f"its node is {local.api}"
            )
            raise ConfigError(
                f"--node {client.url} is not the node on --data-dir {data_dir} ({running}): give one of them"
            )
        if token is None:
            client.token = local.token()
    return client


def require_node(node: str | None, data_dir: Path | None, token_file: Path | None = None) -> NodeClient:
    """Like :func:`connect`, for commands that only talk to a running node."""
    if node is None and data_dir is None:
        raise ConfigError("say which node: --node URL (e.g. http://127.0.0.1:8330) or --data-dir DIR")
    client = connect(node, data_dir, token_file)
    if client is None:
        raise NodeUnavailable(
            f"no node runs on {data_dir} (start one with 'gridnet node --data-dir {data_dir}')"
        )
    return client
