"""The same simulated day on a proof-of-work chain and on a permissioned chain (``[chain]
consensus = "poa"``): every kind of transaction the day uses works on both, the market makes
the same contracts, and on the permissioned chain blocks become final as they go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridnet.ledger.chain import Chain
from gridnet.ledger.poa import validator_set
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import scenario_from_dict

DAY: dict[str, Any] = {
    "simulation": {"intervals": 6, "start": "2026-06-21T10:00:00Z"},
    "homes": {"count": 6, "battery_share": 0.5},
    "chain": {"block_interval_s": 60},
}


def test_the_day_runs_alike_on_both_chains(tmp_path: Path) -> None:
    reports = {}
    for kind in ("pow", "poa"):
        doc = {**DAY, "chain": {**DAY["chain"], "consensus": kind}}
        reports[kind] = simulate(scenario_from_dict(doc, f"{kind}.toml"), tmp_path / kind)
    pow_day, poa_day = reports["pow"], reports["poa"]
    for r in (pow_day, poa_day):
        assert r["converged"] and r["verify"]["ok"] and r["transactions"]["refused"] == {}
        assert r["transactions"]["abandoned"] == 0
    assert set(poa_day["transactions"]["submitted"]) == set(pow_day["transactions"]["submitted"])
    assert poa_day["contracts"]["opened"] == pow_day["contracts"]["opened"] > 0
    assert poa_day["energy"]["contracted_p2p_wh"] == pow_day["energy"]["contracted_p2p_wh"] > 0
    chain = Chain.open(tmp_path / "poa" / "chain", readonly=True)
    try:
        final = chain.finalized()
        assert chain.params.permissioned and len(validator_set(chain.view()).members) == 3
        assert final is not None and final.height >= chain.height - 3, (final, chain.height)
    finally:
        chain.close()
