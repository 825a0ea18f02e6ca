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
import re
import secrets
from pathlib import Path
from typing import Final

from gridnet.errors import ConfigError
from gridnet.files import read_private, replace_file

COOKIE_NAME: Final = ".cookie"
MIN_TOKEN_CHARS: Final = 16
TOKEN_PATTERN: Final = re.compile(r"[!-~]{16,}")
"""An API token: printable ASCII without spaces (it is sent in an HTTP header)."""
MAX_TOKEN_FILE_BYTES: Final = 4096
"""A token file is read up to this size [bytes] (a token is a line of a few dozen characters)."""


def write_cookie(data_dir: Path) -> str:
    """A new random token in ``DATA_DIR/.cookie`` (mode 0600, replacing any earlier one)."""
    token = secrets.token_hex(32)
    replace_file(data_dir / COOKIE_NAME, f"{token}\n".encode(), 0o600)
    return token


def remove_cookie(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / COOKIE_NAME).unlink()


def token_problem(token: str) -> str | None:
    """What is wrong with ``token`` as an API token (None: nothing). A token is sent in an HTTP
    header, so it is printable ASCII without spaces (a line break or a non-ASCII letter could
    not be sent, and a node started with one would refuse every client)."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"it must be at least {MIN_TOKEN_CHARS} characters long"
    if TOKEN_PATTERN.fullmatch(token) is None:
        return "it may hold only printable ASCII characters without spaces (! to ~)"
    return None


def read_token_file(path: Path) -> str:
    """The token in ``path`` (its first line, spaces around it dropped); refuses a file others
    may read, anything but a regular file of at most ``MAX_TOKEN_FILE_BYTES`` (a FIFO or a
    device, /dev/zero say, would hang or be read for ever), and a token :func:`token_problem`
    finds wrong."""
    what = "API token file"
    raw = read_private(path, what, MAX_TOKEN_FILE_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not text: give the file holding the node's token") from None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    problem = token_problem(token)
    if problem is not None:
        raise ConfigError(
            f"the token in {what} {path} is refused: {problem}; write a token such as "
            "'openssl rand -hex 32' prints"
        )
    return token


def tokens_match(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())
