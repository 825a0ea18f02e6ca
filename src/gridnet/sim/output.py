"""What every simulation writes: a fresh output directory, the audit of its chain, and
``report.json``.

A run replaces the results in its ``--out`` only once it is complete (``staged_out_dir``): it
writes in ``OUT/.gridnet-new/``, and its files take the place of the earlier ones as its last
step. A run that fails, however late (its plots), or is interrupted leaves the earlier results
as they were, and what it wrote in ``OUT/.gridnet-new/`` until the next run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from gridnet.crypto.keys import CORES_ENV
from gridnet.crypto.ops import OPS, CryptoOps, snapshot
from gridnet.errors import AuditFailed, ConfigError, StoreError
from gridnet.files import replace_file
from gridnet.interrupts import as_keyboard_interrupt, held
from gridnet.ledger.lock import LOCK_NAME, DataDirLock, acquire, ensure_free
from gridnet.ledger.store import DB_NAME, Store
from gridnet.ledger.verify import Replay, VerifyReport, verify_chain
from gridnet.system import fewer_gc_passes, usable_cores

MARKER = ".gridnet-output"
EARLIER_MARKERS = (".gridnet-simulation", ".gridnet-demo")
"""Markers written by earlier versions (their output may be replaced too)."""


STAGING = ".gridnet-new"
"""Where a run writes inside its ``--out`` until it is complete (``staged_out_dir``); what a
run that failed or was interrupted wrote stays there, until the next run into ``--out`` begins."""
ASIDE = ".gridnet-old"
"""Where the earlier results are, once all moved away, while a complete run's files take their
place."""
MOVING_ASIDE = ".gridnet-old-moving"
"""Where the earlier results are moved, one by one, before it becomes ``ASIDE``."""
REPORT = "report.json"
"""A run's report: written last, moved in last (a directory without it holds no complete run)."""

SAME_RESULTS = {"simulate", "devnet"}
"""Commands whose output directories hold the same kind of results (a scenario's run, on the
in-memory network or on a devnet): either replaces the other's."""


def unwritable(out: Path, exc: OSError) -> ConfigError:
    """The error of an output directory that cannot be written (``exc`` says why)."""
    return ConfigError(f"cannot write the output directory {out}: {exc.strerror}; choose another --out")


@contextlib.contextmanager
def made_for_the_run(out: Path) -> Iterator[None]:
    """A run whose ``out`` did not exist: if the run fails and left it empty (refused while it
    built, before anything was written there), it is removed, not left behind."""
    existed = out.exists() or out.is_symlink()
    try:
        yield
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):
                out.rmdir()  # (only an empty directory: whatever was written there stays)
        raise


def refuse_inputs_inside(out: Path, inputs: Iterable[tuple[str, Path]], command: str) -> None:
    """A ConfigError naming the first of ``inputs`` (what each is, its path) that is ``out``
    or lies inside it: ``command`` replaces (or writes into) ``out``, and would delete it (the
    scenario file a run was given, in the earlier run's directory it was to replace)."""
    try:
        root = out.resolve()
    except (OSError, RuntimeError):  # (a loop of links: the run says so as it writes there)
        return
    for what, path in inputs:
        try:
            inside = path.resolve().is_relative_to(root)
        except (OSError, RuntimeError):
            continue
        if inside:
            raise ConfigError(
                f"{what} {path} is inside --out {out}, where 'gridnet {command}' deletes what an earlier run "
                "wrote; choose another --out (or move the file out of it)"
            )


def check_out_dir(
    out: Path, command: str, *, results: bool = True, inputs: Mapping[str, Path] | None = None
) -> bool:
    """Whether ``out`` holds the results of an earlier run of ``command`` (which
    ``prepare_out_dir`` replaces); it is created (empty) when missing. A ConfigError when it
    cannot be written, is a file, holds one of ``inputs`` (the files the run reads, by what
    each is: ``refuse_inputs_inside``) or holds something else (another command's results too;
    or any run's report, for a run that writes none: ``results`` False, a devnet's nodes only)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; choose a directory for the results")
    refuse_inputs_inside(out, (inputs or {}).items(), command)
    try:
        out.mkdir(parents=True, exist_ok=True)  # (an empty directory, to know it can be written)
        if not os.access(out, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        if not any(p.name != LOCK_NAME for p in out.iterdir()):
            return False
    except OSError as exc:
        raise unwritable(out, exc) from None
    ensure_free(out, "output directory")  # (another run writing there: said now, not after the build)
    marker = out / MARKER
    if not any((out / m).exists() for m in (MARKER, *EARLIER_MARKERS)):
        raise ConfigError(
            f"{out} is not empty and was not written by 'gridnet {command}'; choose another --out"
        )
    if marker.exists():
        written = (
            marker.read_text(errors="replace").partition(";")[0].strip().removeprefix("written by gridnet ")
        )
        if (written != command and {written, command} != SAME_RESULTS) or (
            not results and (out / "report.json").exists()
        ):
            raise ConfigError(
                f"{out} holds the results of 'gridnet {written[:40]}', not of 'gridnet {command}'; choose "
                "another --out (or delete it)"
            )
    return True


def prepare_out_dir(
    out: Path, command: str, *, results: bool = True, inputs: Mapping[str, Path] | None = None
) -> DataDirLock:
    """Start from a fresh ``out``; only ever deletes what an earlier GRIDNET run wrote there.
    Call it once the run's inputs are checked: a run refused after it has lost the earlier
    results. ``out`` is locked as a data directory is (``DataDirLocked`` while another run
    writes it: a second run would delete the first's results under it); the caller holds the
    lock while it writes there, or to its exit."""
    earlier = check_out_dir(out, command, results=results, inputs=inputs)
    lock = acquire(out, "output directory")
    try:
        if earlier:
            for entry in out.iterdir():  # (the directory stays: its lock is on it)
                if entry.name == LOCK_NAME:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        (out / MARKER).write_text(f"written by gridnet {command}; safe to delete\n")
    except OSError as exc:
        lock.release()
        raise unwritable(out, exc) from None
    except BaseException:
        lock.release()
        raise
    return lock


def _marker_text(command: str) -> str:
    return f"written by gridnet {command}; safe to delete\n"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run once it had begun to write (``StagedOut.begin``):
    what it wrote is in ``partial`` (``OUT/.gridnet-new``, its partial chain there); ``OUT``
    holds what it held. ``complete``: it came as the complete run's files took their place,
    and waited for the end: ``OUT`` holds the new run."""

    def __init__(self, partial: Path, *, complete: bool = False) -> None:
        super().__init__()
        self.partial = partial
        self.complete = complete


class StagedOut:
    """A run's output directory ``out``, replaced only by a complete run (``staged_out_dir``)."""

    def __init__(self, out: Path, command: str, inputs: Mapping[str, Path] | None) -> None:
        self.out = out
        self.command = command
        self.inputs = inputs
        self.path = out / STAGING
        """Where the run writes (once ``begin`` has made it)."""
        self.lock: DataDirLock | None = None
        check_out_dir(out, command, inputs=inputs)

    def begin(self) -> Path:
        """Lock ``out`` (``DataDirLocked`` while another run writes it) and make the run's own
        directory in it, empty (what a run that failed or was interrupted left there deleted);
        call it once the run's inputs are checked. ``out`` keeps what it holds, but a swap a
        kill cut short (``commit``) is finished first: its run was complete (one whose run's
        files were deleted since, before all the earlier ones were moved away, is undone). A
        directory made for the run gets its marker now (one left by a run killed meanwhile is the next run's
        to replace)."""
        check_out_dir(self.out, self.command, inputs=self.inputs)
        self.lock = acquire(self.out, "output directory")
        try:
            moving = self.out / MOVING_ASIDE
            if _real_dir(moving) and not _real_dir(self.path):  # (the run's files are gone since)
                for entry in moving.iterdir():
                    entry.rename(self.out / entry.name)  # (the earlier run's, back in place)
            elif _real_dir(moving) or _real_dir(self.out / ASIDE):
                self._swap()  # (a complete run's swap, cut short: its files take their place)
            for leftover in (self.path, self.out / ASIDE, self.out / MOVING_ASIDE):
                if leftover.exists() or leftover.is_symlink():
                    _remove(leftover)
            if not (self.out / MARKER).exists():
                (self.out / MARKER).write_text(_marker_text(self.command))
            self.path.mkdir()
        except OSError as exc:
            raise unwritable(self.out, exc) from None
        return self.path

    def commit(self) -> None:
        """The run's files in place of what ``out`` held (``_swap``). Ctrl-C or SIGTERM
        meanwhile waits for the end, whoever called: a ``KeyboardInterrupt`` raised then comes
        after the swap (``staged_out_dir`` says the run is in place)."""
        try:
            with as_keyboard_interrupt(), held():
                self._swap()
        except OSError as exc:
            raise unwritable(self.out, exc) from None

    def _swap(self) -> None:
        """Move the earlier files away one by one (the report first) into ``MOVING_ASIDE``,
        which then becomes ``ASIDE`` at once; then the run's files in (its report last), then
        delete the earlier ones. ``out`` never holds a report beside another run's files, and
        each step can be taken up again where a kill left it (``begin``): before ``ASIDE``
        exists, whatever ``out`` holds besides gridnet's own entries is the earlier run's."""
        out, aside, moving = self.out, self.out / ASIDE, self.out / MOVING_ASIDE
        keep = {LOCK_NAME, MARKER, STAGING, ASIDE, MOVING_ASIDE}
        if not _real_dir(aside):
            if not _real_dir(moving):
                moving.mkdir()
            earlier = [e for e in out.iterdir() if e.name not in keep]
            for entry in sorted(earlier, key=lambda e: e.name != REPORT):
                entry.rename(moving / entry.name)
            moving.rename(aside)
        replace_file(out / MARKER, _marker_text(self.command).encode())
        if _real_dir(self.path):
            written = [e for e in self.path.iterdir() if e.name not in (LOCK_NAME, MARKER)]
            for entry in sorted(written, key=lambda e: e.name == REPORT):
                entry.rename(out / entry.name)
            _remove(self.path)
        _remove(aside)


def _real_dir(path: Path) -> bool:
    """A directory, not a link to one (``_swap`` never moves files through a link)."""
    return path.is_dir() and not path.is_symlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


@contextlib.contextmanager
def staged_out_dir(
    out: Path, command: str, *, inputs: Mapping[str, Path] | None = None
) -> Iterator[StagedOut]:
    """``with staged_out_dir(out, command) as staged:`` a run of ``command`` whose results
    replace what ``out`` holds when, and only when, the block ends without an error. ``out``
    is checked now (``check_out_dir``: a run refused before any work); ``staged.begin()``, once
    the run's inputs are checked, gives the directory the run writes in (``out`` locked from
    then on). An error, however late (the plots), or Ctrl-C (``RunInterrupted``) leaves ``out``
    as it was; what the run wrote stays in ``OUT/.gridnet-new`` (its partial chain, its nodes'
    logs that an error may name) until the next run begins."""
    staged = StagedOut(out, command, inputs)
    try:
        yield staged
    except KeyboardInterrupt:
        if staged.lock is None:
            raise
        raise RunInterrupted(staged.path) from None
    else:
        if staged.lock is not None:
            try:
                staged.commit()
            except KeyboardInterrupt:  # (held until the swap ended: the run is in place)
                raise RunInterrupted(staged.path, complete=True) from None
    finally:
        if staged.lock is not None:
            staged.lock.release()


FOLLOW_POLL_S = 0.5
"""How often [s] the audit beside a simulation looks for blocks stored since."""
FOLLOW_BEHIND = 3
"""Blocks below the head the audit beside a simulation waits with (a reorganisation seldom
reaches that deep; it is followed when it does)."""


def audit(chain_dir: Path) -> dict[str, Any]:
    """Replay the chain from genesis (``gridnet chain verify``), as report figures."""
    return _figures(verify_chain(chain_dir))


def _figures(report: VerifyReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "blocks": report.blocks,
        "transactions": report.transactions,
        "seconds": round(report.seconds, 3),
        "tx_per_s": round(report.tx_per_s, 1),
        "rule": report.rule,
        "bad_height": report.bad_height,
        "supply": None if report.supply is None else report.supply.as_dict(),
    }


@contextlib.contextmanager
def audit_beside(chain_dir: Path) -> Iterator[Callable[[], dict[str, Any]]]:
    """``with audit_beside(dir) as audited:`` the audit of the chain a simulation writes in
    ``dir`` follows it in a child process, on another core, when this process may use more
    than one: it replays each block soon after it is stored (``verify.Replay``), so that
    little is left once the chain is complete. ``audited()``, called then, has it replay the
    last blocks and compare the stored state, waits for its figures and adds the child's
    cryptographic work to this process's counts (``crypto/ops.py``). On one core the audit
    replays the chain in this process when asked. A child not waited for is stopped on
    leaving the block."""
    if usable_cores() < 2:
        yield lambda: audit(chain_dir)
        return
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(
            [sys.executable, "-m", "gridnet.sim.output", str(chain_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env={**os.environ, CORES_ENV: "1"},  # (its core is the one it was started for)
        )

        def audited() -> dict[str, Any]:
            out, _ = child.communicate("finish\n")
            if child.returncode != 0:
                errors.seek(0)
                lines = errors.read().strip().splitlines()
                last = lines[-1] if lines else f"exit code {child.returncode}"
                raise AuditFailed(f"the audit of {chain_dir} stopped: {last}")
            figures: dict[str, Any] = json.loads(out)
            OPS.add(CryptoOps(**figures.pop("ops")))
            return figures

        try:
            yield audited
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def write_report(out: Path, report: dict[str, Any]) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")


def _follow(chain_dir: Path) -> None:
    """``python -m gridnet.sim.output DIR``: follow the chain in DIR as it is written
    (``audit_beside``'s child) until a line comes on stdin, then finish the audit and print
    its figures and cryptographic work as one JSON object. Stdin closing without a line (the
    parent gone) ends it without figures."""
    before = snapshot()
    replay = Replay()
    store: Store | None = None
    try:
        with fewer_gc_passes():
            while True:
                if store is None and (chain_dir / DB_NAME).exists():
                    with contextlib.suppress(StoreError):  # (not readable yet: next time)
                        store = Store(chain_dir, readonly=True)
                if store is not None:
                    with store.snapshot():
                        replay.advance(store, behind=FOLLOW_BEHIND)
                if select.select([sys.stdin], [], [], FOLLOW_POLL_S)[0]:
                    if not sys.stdin.readline():
                        return
                    break
            if store is None:
                store = Store(chain_dir, readonly=True)
            with store.snapshot():
                report = replay.finish(store)
    finally:
        if store is not None:
            store.close()
    print(json.dumps({**_figures(report), "ops": OPS.since(before).as_dict()}))


if __name__ == "__main__":
    _follow(Path(sys.argv[1]))
