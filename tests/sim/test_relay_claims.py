"""Every relayed datagram delivered is in a transit claim on chain: the receivers end their
connections only once the last datagrams arrived (the last interval's contract and
balancing states, the DSO's commands after the last interval), so the relays are paid for
all they carried. The only datagrams in no claim are those between the hub and the feeders'
first homes (no relay carried them: no hop)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridnet.ledger.txs.relay import ClaimTransit
from gridnet.sim.neighbourhood import Neighbourhood, memory_network
from gridnet.sim.scenario import scenario_from_dict
from tests.sim.test_meter_devices import FEEDER

NO_PV_STREET: dict[str, Any] = {  # scenarios/no-pv-street.toml, smaller: the carrier serves a hill home
    "simulation": {"seed": 3, "start": "2026-06-22T00:00:00Z", "intervals": 12},
    "homes": {"count": 8, "pv_share": 0.0, "businesses": 0},
    "relay": {"hill_homes": 1},
}
COMMANDED = {**FEEDER, "meters": {"devices": "model"}}  # the DSO commands homes down the feeder too


@pytest.mark.parametrize("doc", [NO_PV_STREET, COMMANDED], ids=["no-pv-street", "commanded"])
def test_every_relayed_datagram_delivered_is_claimed(doc: dict[str, Any], tmp_path: Path) -> None:
    scenario = scenario_from_dict(doc, "claims.toml")
    sim = Neighbourhood(scenario, memory_network(scenario, tmp_path / "out"))
    try:
        report = sim.run()
        rn = sim.world.relaynet
        assert rn is not None
        chain = sim.world.backend.chain()
        claimed = sum(
            tx.payload.claim.claim.datagrams
            for height in range(1, chain.height + 1)
            for tx in chain.block_at(height).txs  # type: ignore[union-attr]
            if isinstance(tx.payload, ClaimTransit) and tx.payload.claim is not None
        )
    finally:
        sim.close()
    relay = report["relay"]
    direct = rn.tally.hops.count(0)  # between the hub and a feeder's first home
    assert relay["datagrams_sent"] == relay["datagrams_delivered"] == len(rn.tally.hops) > direct > 0
    assert claimed + direct == relay["datagrams_delivered"]
    assert rn.in_flight() == 0 and relay["dropped"] == {}
    assert report["converged"] and report["transactions"]["refused"] == {}
    if doc is COMMANDED:
        assert report["dso"]["commands"] > 0
    else:
        assert relay["carrier_forwarded"] > 0
