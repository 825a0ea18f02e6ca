"""Ctrl-C and SIGTERM held back while a child process starts (real signals to this process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from gridnet import interrupts

if threading.current_thread() is not threading.main_thread():  # (handlers: the main thread's only)
    pytest.skip("signal handlers are installed from the main thread only", allow_module_level=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_an_interrupt_within_held_is_raised_once_the_child_is_recorded(sig: signal.Signals) -> None:
    started: list[subprocess.Popen[bytes]] = []
    with pytest.raises(KeyboardInterrupt), interrupts.as_keyboard_interrupt():
        with interrupts.held():
            os.kill(os.getpid(), sig)  # (delivered at once: the handler records it)
            started.append(subprocess.Popen([sys.executable, "-c", "pass"]))
        pytest.fail("the interrupt was not raised when the block ended")
    assert len(started) == 1  # the child was recorded before the interrupt surfaced
    assert started[0].wait(timeout=60) == 0


def test_outside_held_an_interrupt_is_raised_at_once_and_the_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    reached = False
    with pytest.raises(KeyboardInterrupt), interrupts.as_keyboard_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        reached = True
    assert not reached
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
