"""The ledger demo: converges, audits clean, and is reproducible from its seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gridnet.errors import AuditFailed, ConfigError
from gridnet.ledger.verify import verify_chain
from gridnet.sim import ledger_demo
from gridnet.sim.ledger_demo import DemoConfig, run_demo
from gridnet.sim.output import STAGING

SMALL = DemoConfig(participants=6, duration_s=120, partition_start_s=30, partition_s=60)


def test_demo_converges_verifies_and_is_deterministic(tmp_path: Path) -> None:
    first = run_demo(tmp_path / "a", SMALL)
    second = run_demo(tmp_path / "b", SMALL)
    assert first["converged"] and first["verify"]["ok"]
    assert first["chain"]["head"] == second["chain"]["head"]
    assert first["chain"]["transactions_by_type"]["RegisterIdentity"] == 6
    assert first["participants"]["identities_registered"] == 6
    assert json.loads((tmp_path / "a" / "report.json").read_text())["chain"]["head"] == first["chain"]["head"]
    assert verify_chain(tmp_path / "a" / "chain").ok
    # The partition really split the network: some node switched branches (a minute apart:
    # the lone node mines about 4 blocks meanwhile, so none is a chance of about 2 %).
    assert sum(n["reorgs"] for n in first["nodes"].values()) >= 1


def test_demo_reruns_into_its_own_output_but_never_into_foreign_files(tmp_path: Path) -> None:
    run_demo(tmp_path / "out", SMALL)
    run_demo(tmp_path / "out", SMALL)  # its own earlier output is replaced
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError):
        run_demo(foreign, SMALL)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_a_negative_seed_is_refused_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gridnet", "ledger-demo", "--seed", "-1", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: Invalid value for '--seed'") and "greater than or equal to 0" in line
    assert not (tmp_path / "out").exists()


def test_a_demo_that_fails_leaves_the_earlier_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo deleted the earlier results as it began: one that failed (here its audit, the
    last step) left none. It writes in OUT/.gridnet-new, moved in place only once complete."""
    out = tmp_path / "out"
    first = run_demo(out, SMALL)

    def files() -> dict[str, bytes]:
        found = (p for p in sorted(out.rglob("*")) if p.is_file() and STAGING not in p.relative_to(out).parts)
        return {str(p.relative_to(out)): p.read_bytes() for p in found}

    before = files()

    def audit_stops(chain_dir: Path) -> dict[str, object]:
        raise AuditFailed(f"the audit of {chain_dir} stopped: MemoryError")

    monkeypatch.setattr(ledger_demo, "audit", audit_stops)
    with pytest.raises(AuditFailed, match=f"^the audit of {out / STAGING / 'chain'} stopped: "):
        run_demo(out, SMALL)
    assert files() == before
    assert json.loads((out / "report.json").read_text())["chain"]["head"] == first["chain"]["head"]
    monkeypatch.undo()
    run_demo(out, SMALL)
    assert not (out / STAGING).exists() and files().keys() == before.keys()
