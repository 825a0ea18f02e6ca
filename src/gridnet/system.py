"""What this machine gives the process (how many cores it may use), and how often the
process's cycle collector runs."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from typing import Final

GC_THRESHOLDS: Final = (20_000, 20, 20)
"""The cycle collector's thresholds for a long run (Python's: 700, 10, 10)."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under ``taskset``; the
    machine's count where affinity is unknown), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # (not on Linux)
        return max(1, os.cpu_count() or 1)


def settle_gc() -> None:
    """Once a node process has started (a process's own setting: ``node/process.py`` calls it,
    not ``serve``): what it built to start (modules, the API, the chain's index) lives as long
    as it does, so the cycle collector stops scanning it (``gc.freeze``), and the collector
    runs less often (``GC_THRESHOLDS``). Gossip makes objects by the hundred thousand, nearly
    all freed by their reference counts or kept for long (the mempool); with Python's
    thresholds the collector's passes took about 4% of a node's CPU time in ``gridnet bench
    network``."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@contextlib.contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """``GC_THRESHOLDS`` inside the block, the process's own after it (a simulation or a
    chain's replay, which may run inside a longer process: a test, a sweep's worker). Their
    objects are nearly all freed by their reference counts or kept to the end (chains, the
    agents' records); with Python's thresholds, each full pass scans all that is kept, and a
    500-home day spent about 16% of its time in them. The thresholds are the process's, not
    a thread's (a sweep's workers run one simulation each)."""
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
