"""The API token: a cookie file written at each start, or a token file the operator keeps.

As bitcoind's ``.cookie``: a running node writes a fresh random token into
``DATA_DIR/.cookie`` (mode 0600) and deletes it when it stops; a local client that can read
the data directory reads the token there. An operator who serves the API beyond loopback
configures ``api_token_file`` instead (a file only its owner can read), and gives the same
token to remote clients. Endpoints that make the node sign or change its state need the
token as ``Authorization: Bearer TOKEN``; read-only endpoints do not.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from gridnet.errors import ConfigError

COOKIE_NAME: Final = ".cookie"
MIN_TOKEN_CHARS: Final = 16


def write_cookie(data_dir: Path) -> str:
    """A new random token in ``DATA_DIR/.cookie`` (mode 0600, replacing any earlier one)."""
    token = secrets.token_hex(32)
    path = data_dir / COOKIE_NAME
    temporary = path.with_name(f"{COOKIE_NAME}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.replace(temporary, path)
    return token


def remove_cookie(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / COOKIE_NAME).unlink()


def read_token_file(path: Path) -> str:
    """The token in ``path`` (its first line); refuses a file others may read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"API token file {path} not found") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"API token file {path} is not text: give the file holding the node's token"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read API token file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"API token file {path} is accessible by other users (mode {stat.S_IMODE(mode):o}); "
            f"run 'chmod 600 {path}'"
        )
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"API token file {path} must hold a token of at least {MIN_TOKEN_CHARS} characters")
    return token


def tokens_match(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())
