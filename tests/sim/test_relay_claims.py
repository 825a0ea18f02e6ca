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
from gridnet.relay.datagram import POOL_EXPIRY_MARGIN
from gridnet.sim.neighbourhood import Neighbourhood, memory_network
from gridnet.sim.scenario import POOL_EXPIRY, pool_expiry, scenario_from_dict
from gridnet.units import INTERVAL_MS
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


def test_the_runs_pools_outlive_its_blocks_by_the_relays_margin() -> None:
    """The run's claims come at its end, and relays carry a pool's datagrams only while claims
    on it can be mined for ``POOL_EXPIRY_MARGIN`` more blocks: the pools expire at 1,000,000,
    or, for a run of more blocks (31 days of 1-second blocks: 2.7 million), far beyond its
    last block."""
    assert pool_expiry(scenario_from_dict(NO_PV_STREET, "claims.toml")) == POOL_EXPIRY
    longest = {"simulation": {"intervals": 96 * 31}, "chain": {"block_interval_s": 1}}
    scenario = scenario_from_dict(longest, "long.toml")
    run_blocks = (96 * 31 + 1) * INTERVAL_MS // 1000 + 2 * 6 * 3600  # the run, then its two claim waits
    assert pool_expiry(scenario) > 2 * run_blocks + POOL_EXPIRY_MARGIN > POOL_EXPIRY
