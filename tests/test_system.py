"""The process's settings (``gridnet/system.py``): cores and the cycle collector."""

from __future__ import annotations

import gc
import os

import pytest

from gridnet.system import GC_THRESHOLDS, fewer_gc_passes, settle_gc, usable_cores


def test_usable_cores_is_the_affinity() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0))


def test_settle_gc_freezes_what_start_up_built() -> None:
    thresholds = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_fewer_gc_passes_restores_the_process_thresholds() -> None:
    thresholds = gc.get_threshold()
    assert thresholds != GC_THRESHOLDS
    with fewer_gc_passes():
        assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_threshold() == thresholds
    with pytest.raises(RuntimeError), fewer_gc_passes():  # (restored when the run fails too)
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == thresholds
