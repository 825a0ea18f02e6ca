"""What every simulation writes: a fresh output directory, the audit of its chain, and
``report.json``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gridnet.errors import ConfigError
from gridnet.ledger.verify import verify_chain

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


def write_report(out: Path, report: dict[str, Any]) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
