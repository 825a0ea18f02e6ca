"""One writer per data directory: an exclusive ``flock`` on the directory itself.

Every process that writes a data directory's store holds the lock while the store is open
(the store takes it, so no writer can forget to). The kernel releases a ``flock`` when its
process dies, so a node killed with SIGKILL never blocks its own restart. The lock is on the
directory, not on a file in it: a file can be deleted while its lock is held (``.lock`` looks
like a stale file after a clean stop), and a second writer would then lock a new one and write
the same store. ``DATA_DIR/.lock`` holds the PID and command of the holder, for the message a
second writer gets. Readers
(``chain show``, ``chain verify``, ``chain account``) take no lock: SQLite's write-ahead log
gives them a consistent snapshot beside a running writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gridnet.errors import DataDirLocked
from gridnet.files import open_file

LOCK_NAME: Final = ".lock"
_RETRIES: Final = 5
"""Attempts before a writer gives up (a reader probing the lock holds it for microseconds)."""


@dataclass(frozen=True)
class LockHolder:
    pid: int | None
    command: str
    """The holder's command line (shortened), as it wrote it into the lock file."""


class DataDirLock:
    """The held lock of one data directory; :meth:`release` (or process exit) frees it."""

    def __init__(self, data_dir: Path, fd: int) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _command() -> str:
    argv = [Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]]
    if argv[0] in ("__main__.py", "-m"):
        argv[0] = "gridnet"
    text = " ".join(argv)
    return text if len(text) <= 120 else text[:117] + "..."


def _read_holder(path: Path) -> LockHolder:
    try:
        pid_text, _, command = path.read_text().partition("\n")
        return LockHolder(int(pid_text), command.strip())
    except (OSError, ValueError):
        return LockHolder(None, "")


def _in_use(data_dir: Path, holder: LockHolder, what: str) -> DataDirLocked:
    who = "another process" if holder.pid is None else f"process {holder.pid}"
    if holder.command:
        who += f" ({holder.command})"
    if " node " in f" {holder.command} ":  # a node: the command line can talk to it
        advice = "stop it first, or send to it through its API (--node URL, or --data-dir)"
    else:
        advice = "wait for it to finish"
    return DataDirLocked(f"{what} {data_dir} is in use by {who}; {advice}", holder.pid)


def ensure_free(data_dir: Path, what: str = "data directory") -> None:
    """:class:`DataDirLocked` naming the holder if a process writes ``data_dir`` now (a probe
    that writes nothing: a run refused later leaves the directory as it found it)."""
    found = holder(data_dir)
    if found is not None:
        raise _in_use(data_dir, found, what)


def acquire(data_dir: Path, what: str = "data directory") -> DataDirLock:
    """Take the data directory's lock or raise :class:`DataDirLocked` naming the holder (and
    the directory as ``what``: a run's output directory is locked the same way)."""
    path = data_dir / LOCK_NAME
    fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for attempt in range(_RETRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt + 1 == _RETRIES:
                os.close(fd)
                raise _in_use(data_dir, _read_holder(path), what) from None
            time.sleep(0.02 * (attempt + 1))
    try:
        info = open_file(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(info, f"{os.getpid()}\n{_command()}\n".encode())
        finally:
            os.close(info)
    except BaseException:
        os.close(fd)
        raise
    return DataDirLock(data_dir, fd)


def holder(data_dir: Path) -> LockHolder | None:
    """Who holds the data directory's lock now (None: nobody writes it)."""
    try:
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(data_dir / LOCK_NAME)
    finally:
        os.close(fd)  # (closing releases the probe's shared lock)
    return None
