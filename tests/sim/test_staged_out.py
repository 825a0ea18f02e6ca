"""A run's output directory is replaced only by a complete run, whatever stops the swap.

``StagedOut.commit`` moves the earlier results aside and the complete run's files in. A kill
anywhere in that swap (here: an exception no handler takes, at the Nth rename, which leaves
the files as a kill would, and the lock released as a dead process's is) is finished by the
next run's ``begin``: before, it deleted both runs, the earlier one aside and the complete
one staged, and ``out`` kept a part of the new run and no report. Ctrl-C during the swap
waits for its end, whoever called, and says the new run is in place."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from gridnet.sim.output import ASIDE, MOVING_ASIDE, REPORT, STAGING, RunInterrupted, staged_out_dir


class Killed(BaseException):
    """The process dies here (no handler takes it)."""


def run(out: Path, name: str, files: dict[str, str]) -> None:
    """A complete run ``name`` into ``out``: its files, then its report."""
    with staged_out_dir(out, "simulate") as staged:
        where = staged.begin()
        for file, text in files.items():
            (where / file).parent.mkdir(parents=True, exist_ok=True)
            (where / file).write_text(text)
        (where / REPORT).write_text(name)


def held(out: Path) -> dict[str, str]:
    """What ``out`` holds besides gridnet's own entries, file by file."""
    own = {".gridnet-output", ".lock", STAGING, ASIDE, MOVING_ASIDE}
    return {
        str(p.relative_to(out)): p.read_text()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.relative_to(out).parts[0] not in own
    }


def renames(monkeypatch: pytest.MonkeyPatch, then: Callable[[int], None]) -> None:
    """Every ``Path.rename`` calls ``then`` with its count (from 1) first."""
    original = Path.rename
    count = 0

    def rename(self: Path, target: str | os.PathLike[str]) -> Path:
        nonlocal count
        count += 1
        then(count)
        return original(self, target)

    monkeypatch.setattr(Path, "rename", rename)


EARLIER = {"series/a.parquet": "A", "only-a.txt": "A", REPORT: "run A"}
LATER = {"series/a.parquet": "B", "plots/b.png": "B", REPORT: "run B"}


@pytest.mark.parametrize("killed_at", range(1, 8))
def test_a_swap_cut_short_anywhere_is_finished_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_at: int
) -> None:
    """Renames: 3 earlier entries aside (the report first), the aside directory, then 3 of the
    new run in (its report last): a kill before each, and the next run finds the new run whole."""
    out = tmp_path / "out"
    run(out, "run A", {k: v for k, v in EARLIER.items() if k != REPORT})
    assert held(out) == EARLIER

    def kill(n: int) -> None:
        if n == killed_at:
            raise Killed

    with monkeypatch.context() as m:
        renames(m, kill)
        with pytest.raises(Killed):
            run(out, "run B", {k: v for k, v in LATER.items() if k != REPORT})
    assert (out / STAGING).exists() or (out / REPORT).read_text() == "run B"
    with pytest.raises(RuntimeError, match="the next run failed"), staged_out_dir(out, "simulate") as staged:
        staged.begin()  # (finishes the swap first)
        raise RuntimeError("the next run failed")
    assert held(out) == LATER  # the complete run B, whole; nothing of A
    assert not (out / ASIDE).exists() and not (out / MOVING_ASIDE).exists()


def test_a_swap_cut_short_whose_run_was_deleted_since_puts_the_earlier_run_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed as the earlier files were moved away (the report first), then the staged run
    deleted by hand: finishing the swap would have moved the rest of the earlier run away
    with nothing to take its place. The earlier run is put back whole."""
    out = tmp_path / "out"
    run(out, "run A", {k: v for k, v in EARLIER.items() if k != REPORT})

    def kill(n: int) -> None:
        if n == 2:
            raise Killed

    with monkeypatch.context() as m:
        renames(m, kill)
        with pytest.raises(Killed):
            run(out, "run B", {k: v for k, v in LATER.items() if k != REPORT})
    shutil.rmtree(out / STAGING)
    with pytest.raises(RuntimeError, match="the next run failed"), staged_out_dir(out, "simulate") as staged:
        staged.begin()
        raise RuntimeError("the next run failed")
    assert held(out) == EARLIER


def test_ctrl_c_during_the_swap_waits_for_its_end_and_says_the_run_is_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ledger-demo installed no handler of its own, so Ctrl-C in the swap stopped it half
    way; a simulation's waited, then said 'OUT keeps the earlier run's results' of the new run."""
    out = tmp_path / "out"
    run(out, "run A", {"only-a.txt": "A"})

    def ctrl_c(n: int) -> None:
        if n == 2:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # (SIG_IGN where the runner ignores Ctrl-C)
    with monkeypatch.context() as m:
        renames(m, ctrl_c)
        with pytest.raises(RunInterrupted) as info:
            run(out, "run B", {"plots/b.png": "B"})
    assert info.value.complete
    assert held(out) == {"plots/b.png": "B", REPORT: "run B"}
    assert signal.getsignal(signal.SIGINT) == before  # (put back)
