"""Ctrl-C and SIGTERM as ``KeyboardInterrupt``, held back while a child process starts.

A command that starts node processes stops them on its way out; it must know every one. An
interrupt raised inside ``subprocess.Popen`` after the child was created, but before the
command holds its ``Popen``, would leave that child running, unknown (it was seen: a devnet
stopped by SIGTERM while starting its second node). Within :func:`held`, an interrupt is
recorded and raised as the block ends, once the child is recorded.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_held = 0
_pending = False


def interrupt(_signum: int, _frame: FrameType | None) -> None:
    """A handler for SIGINT and SIGTERM: ``KeyboardInterrupt`` now, or as :func:`held` ends."""
    global _pending
    if _held:
        _pending = True
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def held() -> Iterator[None]:
    """An interrupt arriving within the block is raised when the block ends (with the
    :func:`interrupt` handler installed: see :func:`as_keyboard_interrupt`)."""
    global _held, _pending
    _held += 1
    try:
        yield
    finally:
        _held -= 1
    if not _held and _pending:
        _pending = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def as_keyboard_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM is taken as Ctrl-C (``KeyboardInterrupt``), and both are held
    back within :func:`held`: what the block started is stopped on the way out (a devnet's
    node processes), not left running. (Only the main thread may install handlers: elsewhere
    the block runs as it is.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
