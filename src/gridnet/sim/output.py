"""What every simulation writes: a fresh output directory, the audit of its chain, and
``report.json``."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gridnet.crypto.ops import OPS, CryptoOps, snapshot
from gridnet.errors import ConfigError
from gridnet.ledger.verify import verify_chain
from gridnet.system import usable_cores

MARKER = ".gridnet-output"
EARLIER_MARKERS = (".gridnet-simulation", ".gridnet-demo")
"""Markers written by earlier versions (their output may be replaced too)."""


def prepare_out_dir(out: Path, command: str) -> None:
    """Start from a fresh ``out``; only ever deletes what an earlier GRIDNET run wrote there."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; choose a directory for the results")
    try:
        if out.exists() and any(out.iterdir()):
            if not any((out / m).exists() for m in (MARKER, *EARLIER_MARKERS)):
                raise ConfigError(
                    f"{out} is not empty and was not written by 'gridnet {command}'; choose another --out"
                )
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text(f"written by gridnet {command}; safe to delete\n")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the output directory {out}: {exc.strerror}; choose another --out"
        ) from None


def audit(chain_dir: Path) -> dict[str, Any]:
    """Replay the chain from genesis (``gridnet chain verify``), as report figures."""
    report = verify_chain(chain_dir)
    return {
        "ok": report.ok,
        "blocks": report.blocks,
        "transactions": report.transactions,
        "seconds": round(report.seconds, 3),
        "tx_per_s": round(report.tx_per_s, 1),
        "rule": report.rule,
        "bad_height": report.bad_height,
    }


@contextlib.contextmanager
def audit_beside(chain_dir: Path) -> Iterator[Callable[[], dict[str, Any]]]:
    """``with audit_beside(dir) as audited:`` the audit of the (finished) chain in ``dir``
    runs in a child process while this one goes on (writing the run's series and plots), when
    this process may use more than one core; ``audited()`` waits for its figures and adds the
    child's cryptographic work to this process's counts (``crypto/ops.py``). On one core it
    runs in this process when asked. A child not waited for is stopped on leaving the block."""
    if usable_cores() < 2:
        yield lambda: audit(chain_dir)
        return
    child = subprocess.Popen(
        [sys.executable, "-m", "gridnet.sim.output", str(chain_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def audited() -> dict[str, Any]:
        out, err = child.communicate()
        if child.returncode != 0:
            last = err.strip().splitlines()[-1] if err.strip() else f"exit code {child.returncode}"
            raise RuntimeError(f"the audit of {chain_dir} stopped: {last}")
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


def _audit_child(chain_dir: str) -> None:
    """``python -m gridnet.sim.output DIR``: ``audit`` of DIR and its cryptographic work, as
    one JSON object (``audit_beside``'s child)."""
    before = snapshot()
    figures = audit(Path(chain_dir))
    print(json.dumps({**figures, "ops": OPS.since(before).as_dict()}))


if __name__ == "__main__":
    _audit_child(sys.argv[1])
