"""Reading the files a person writes (scenarios, genesis, settings, sweeps): one-line errors
that name the file and what is wrong with it, whatever is wrong with it."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Final

from gridnet.errors import ConfigError, GridnetError

MAX_TOML_BYTES: Final = 16 << 20
"""A TOML file a person writes is at most this large (a scenario, a genesis: a few kB)."""


def check_regular_file(
    path: Path, what: str, most_bytes: int, error: type[GridnetError] = ConfigError
) -> None:
    """``error`` naming ``path`` unless it is a regular file of at most ``most_bytes`` (a FIFO
    or a device, /dev/zero say, would be read for ever; a directory is no file)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{what} {path} is a directory; give a file")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is not a regular file (a pipe or a device?); give a file")
    if info.st_size > most_bytes:
        raise error(
            f"{what} {path} is {info.st_size:,} bytes: at most {most_bytes:,} are read; give another file"
        )


def read_toml(path: Path, what: str, error: type[GridnetError] = ConfigError) -> dict[str, Any]:
    """The TOML document in ``path`` (``what``: "scenario file", ...). A missing or unreadable
    file, one that is not a regular file of at most ``MAX_TOML_BYTES``, not UTF-8 text or not
    valid TOML is ``error`` naming it. A byte-order mark (as some editors write) is not taken
    for a statement."""
    check_regular_file(path, what, MAX_TOML_BYTES, error)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {path} is not valid TOML: {exc}") from None
