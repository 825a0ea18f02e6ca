"""Reading the files a person writes (scenarios, genesis, settings, sweeps): one-line errors
that name the file and what is wrong with it, whatever is wrong with it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from gridnet.errors import ConfigError, GridnetError


def read_toml(path: Path, what: str, error: type[GridnetError] = ConfigError) -> dict[str, Any]:
    """The TOML document in ``path`` (``what``: "scenario file", ...). A missing or unreadable
    file, one that is not UTF-8 text or not valid TOML is ``error`` naming it. A byte-order
    mark (as some editors write) is not taken for a statement."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a directory; give a file") from None
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {path} is not valid TOML: {exc}") from None
