"""How a ``gridnet`` command gets a key file's passphrase, and loads or creates a key with it.

The passphrase comes from the first of: ``--passphrase-file FILE`` (its first line without the
line ending; the file must be private, like a key file), the ``GRIDNET_PASSPHRASE`` environment
variable, or a prompt on the terminal when standard input is one (asked twice for a new
passphrase). With none of them the command fails with one line naming the three. An empty
passphrase is refused from every source. Nothing here prints a seed or a passphrase.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Final

from gridnet.cli.common import err_console
from gridnet.crypto.keys import (
    PrivateKey,
    check_key_path_free,
    key_file_info,
    read_key_file,
    read_private_file,
    write_key_file,
)
from gridnet.errors import KeyFileError

PASSPHRASE_ENV: Final = "GRIDNET_PASSPHRASE"


def load_key(path: Path, passphrase_file: Path | None = None) -> PrivateKey:
    """The key in the key file at ``path``, in any format. The passphrase is asked for only when
    the file is encrypted; a plain file of the first format loads with a warning on stderr."""
    key = read_key_file(path, lambda: obtain_passphrase(path, passphrase_file, new=False))
    if key_file_info(path).encryption == "legacy":
        err_console.print(
            f"warning: key file {path} is not encrypted; encrypt it with 'gridnet keys encrypt --key {path}'"
        )
    return key


def create_key(
    path: Path,
    *,
    unencrypted: bool,
    passphrase_file: Path | None = None,
    given_by: tuple[str, str] = ("--unencrypted", "--passphrase-file"),
) -> PrivateKey:
    """A new random key, written to a new key file at ``path``: encrypted with a passphrase, or
    plain when ``unencrypted`` (devnets and tests). ``given_by``: where ``unencrypted`` and
    ``passphrase_file`` came from (the flags, or a config file's key), for the message when
    both are given."""
    if unencrypted and passphrase_file is not None:
        raise KeyFileError(
            f"{given_by[0]} and {given_by[1]} contradict each other (a key written in clear takes no "
            "passphrase); leave out one of them"
        )
    check_key_path_free(path)  # before asking for a passphrase that could not be used
    passphrase = None if unencrypted else obtain_passphrase(path, passphrase_file, new=True)
    key = PrivateKey.generate()
    write_key_file(path, key, passphrase)
    return key


def obtain_passphrase(key_path: Path, passphrase_file: Path | None, *, new: bool) -> bytes:
    """The passphrase for the key file at ``key_path``, from the first source given; ``new``
    when it is to encrypt the file (a prompt then asks twice)."""
    if passphrase_file is not None:
        raw = read_private_file(passphrase_file, "passphrase file", "check the --passphrase-file path")
        first_line = raw.split(b"\n", 1)[0].removesuffix(b"\r")
        return _refuse_empty(first_line, f"the first line of passphrase file {passphrase_file}")
    if PASSPHRASE_ENV in os.environ:
        return _refuse_empty(os.fsencode(os.environ[PASSPHRASE_ENV]), f"${PASSPHRASE_ENV}")
    if sys.stdin.isatty():
        return _prompt(key_path, new=new)
    task = f"to encrypt key file {key_path}" if new else f"for encrypted key file {key_path}"
    raise KeyFileError(
        f"no passphrase {task}: give --passphrase-file FILE, set {PASSPHRASE_ENV}, "
        "or run the command in a terminal to be asked"
    )


def _prompt(key_path: Path, *, new: bool) -> bytes:
    try:
        if not new:
            return _refuse_empty(getpass.getpass(f"passphrase for {key_path}: ").encode(), "the prompt")
        first = _refuse_empty(getpass.getpass(f"new passphrase for {key_path}: ").encode(), "the prompt")
        if getpass.getpass("the same passphrase again: ").encode() != first:
            raise KeyFileError(
                f"the two passphrases for key file {key_path} differ; nothing was written, try again"
            )
        return first
    except EOFError:
        raise KeyFileError(f"no passphrase entered for key file {key_path}") from None
    except UnicodeDecodeError:
        raise KeyFileError(
            f"the passphrase typed for key file {key_path} is not text in the terminal's encoding "
            f"({sys.stdin.encoding}); use a terminal of that encoding, or give --passphrase-file FILE"
        ) from None


def _refuse_empty(passphrase: bytes, source: str) -> bytes:
    if not passphrase:
        raise KeyFileError(f"the passphrase from {source} is empty; an empty passphrase protects nothing")
    return passphrase
