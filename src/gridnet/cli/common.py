"""What every ``gridnet`` command shares: the consoles, option types, amounts, progress."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gridnet.errors import ConfigError
from gridnet.units import UNITS_PER_GNC

# markup=False: user text (paths, addresses, messages) is printed verbatim, never parsed.
console = Console(soft_wrap=True, markup=False, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

DataDir = Annotated[Path, typer.Option("--data-dir", help="Data directory of the chain.")]
KeyFile = Annotated[Path, typer.Option("--key", help="Key file (from 'gridnet keys new').")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def count(n: int, noun: str) -> str:
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


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
