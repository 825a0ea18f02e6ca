"""A node's log: stdlib ``logging``, configured once per process.

Loggers are named ``gridnet.<category>``: ``net`` (links, peers, faults), ``sync`` (blocks
imported, reorgs), ``mempool``, ``mine``, ``api``, ``relay``, and ``node`` (start, stop).
``configure`` sends every record at the chosen level to a rotating ``node.log`` in the data
directory (UTC timestamps, level, category) and a concise line to the console (stderr);
``--debug CATEGORY`` lowers one category to debug level, as bitcoind's ``-debug=net`` does.
Without ``configure`` (the simulator, tests, other commands) nothing is printed: the package
logger has a NullHandler.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import time
from collections.abc import Iterable
from io import TextIOWrapper
from pathlib import Path
from typing import Final

from gridnet.files import open_file
from gridnet.node.config import LOG_CATEGORIES

LOG_NAME: Final = "node.log"
_ROOT: Final = "gridnet"


class _LogFile(logging.handlers.RotatingFileHandler):
    """The node's log file, opened (and reopened at each rotation) with at most
    ``SHARED_FILE_MODE``: a plain ``open`` under ``umask 000`` lets every user rewrite it."""

    def _open(self) -> TextIOWrapper:
        fd = open_file(Path(self.baseFilename), os.O_WRONLY | os.O_APPEND)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


def logger(category: str) -> logging.Logger:
    """The logger of one category (``net``, ``sync``, ...)."""
    return logging.getLogger(f"{_ROOT}.{category}")


def short(name: str) -> str:
    """A peer's address shortened for a log line (gnkgyuv2qdus…)."""
    return name if len(name) <= 14 else name[:12] + "…"


class _Category(logging.Filter):
    """Adds ``record.category``: the logger name without the package prefix."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        record.category = name[len(_ROOT) + 1 :] if name.startswith(_ROOT + ".") else name
        return True


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


_handlers: list[logging.Handler] = []


def reset() -> None:
    """Undo :func:`configure`: the package logs nothing again (a node stopped in-process)."""
    root = logging.getLogger()
    for handler in _handlers:
        root.removeHandler(handler)
        handler.close()
    _handlers.clear()
    logging.getLogger(_ROOT).setLevel(logging.NOTSET)
    for name in LOG_CATEGORIES:
        logger(name).setLevel(logging.NOTSET)


def configure(
    data_dir: Path | None,
    *,
    level: str = "info",
    debug: Iterable[str] = (),
    console: bool = True,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
) -> None:
    """Route the process's log records: to ``DATA_DIR/node.log`` (rotated at ``max_bytes``,
    ``backups`` kept) and, with ``console``, to stderr. Calling it again replaces what an
    earlier call set up (one configuration per process)."""
    reset()
    root = logging.getLogger()
    category = _Category()
    if data_dir is not None:
        file_handler = _LogFile(
            data_dir / LOG_NAME, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        file_handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)-7s %(category)-7s %(message)s"))
        _handlers.append(file_handler)
    if console:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(asctime)s %(category)-7s %(message)s", datefmt="%H:%M:%S"))
        _handlers.append(stream)
    for handler in _handlers:
        handler.addFilter(category)
        root.addHandler(handler)
    root.setLevel(logging.WARNING)  # other libraries: warnings and errors only
    logging.getLogger(_ROOT).setLevel(level.upper())
    chosen = set(LOG_CATEGORIES) if "all" in debug else set(debug)
    for name in LOG_CATEGORIES:
        logger(name).setLevel(logging.DEBUG if name in chosen else logging.NOTSET)
