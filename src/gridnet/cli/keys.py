"""``gridnet keys``: key files, encrypted with a passphrase unless made with --unencrypted."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gridnet.cli.common import KeyFile, PassphraseFile, console, err_console
from gridnet.cli.passphrase import create_key, load_key, obtain_passphrase
from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import KeyEncryption, encrypt_key_file, key_file_info, read_key_file
from gridnet.errors import ConfigError

app = typer.Typer(help="Key files.", no_args_is_help=True)

_ENCRYPTION_TEXT: dict[KeyEncryption, str] = {
    "argon2id-secretbox": "encrypted (argon2id + SecretBox)",
    "none": "not encrypted (made with --unencrypted)",
    "legacy": "not encrypted (first key file format)",
}


@app.command("new")
def keys_new(
    out: Annotated[Path, typer.Option("--out", help="Where to write the key (mode 0600).")],
    unencrypted: Annotated[
        bool,
        typer.Option("--unencrypted", help="Write the key in clear, without a passphrase (devnets, tests)."),
    ] = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Create a new Ed25519 key file, encrypted with a passphrase, and print its address."""
    if out.is_dir():
        raise ConfigError(
            f"--out {str(out) or '.'} is a directory; give the key file's path, e.g. --out my.key"
        )
    if not out.parent.is_dir():
        what = "is not a directory" if out.parent.exists() else "does not exist; create it first"
        raise ConfigError(f"--out {out}: {out.parent} {what}")
    key = create_key(out, unencrypted=unencrypted, passphrase_file=passphrase_file)
    console.print(address_to_text(key.address))


@app.command("show")
def keys_show(
    key: KeyFile,
    passphrase_file: PassphraseFile = None,
    public_key: Annotated[
        bool,
        typer.Option(
            "--public-key",
            help="Print the public key (hex: what --dso and --member take) instead of the address; "
            "an encrypted file needs its passphrase.",
        ),
    ] = False,
) -> None:
    """Print the address of a key file (no passphrase needed) and, on stderr, whether it is encrypted.

    With --passphrase-file, also check that the passphrase decrypts an encrypted file.
    """
    info = key_file_info(key)
    if public_key:
        console.print(load_key(key, passphrase_file).public_key.hex())
        return
    status = _ENCRYPTION_TEXT[info.encryption]
    if info.encryption == "legacy":
        status += f"; encrypt it with 'gridnet keys encrypt --key {key}'"
    if passphrase_file is not None and info.encryption == "argon2id-secretbox":
        read_key_file(key, lambda: obtain_passphrase(key, passphrase_file, new=False))
        status += "; the passphrase decrypts it"
    console.print(info.address)
    err_console.print(f"key file {key}: {status}")


@app.command("encrypt")
def keys_encrypt(key: KeyFile, passphrase_file: PassphraseFile = None) -> None:
    """Encrypt a plain key file in place with a passphrase (the address stays the same)."""
    encrypt_key_file(key, lambda: obtain_passphrase(key, passphrase_file, new=True))
    console.print(f"key file {key} is now encrypted")
