"""``gridnet keys``: key files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gridnet.cli.common import KeyFile, console
from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey, read_key_file, write_key_file

app = typer.Typer(help="Key files.", no_args_is_help=True)


@app.command("new")
def keys_new(out: Annotated[Path, typer.Option("--out", help="Where to write the key (mode 0600).")]) -> None:
    """Create a new Ed25519 key file and print its address."""
    key = PrivateKey.generate()
    write_key_file(out, key)
    console.print(address_to_text(key.address))


@app.command("show")
def keys_show(key: KeyFile) -> None:
    """Print the address of a key file."""
    console.print(address_to_text(read_key_file(key).address))
