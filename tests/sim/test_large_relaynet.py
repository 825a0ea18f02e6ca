"""Large areas on the data network: however many homes a feeder has, every route to the hub
passes at most MAX_ONION_HOPS relays (a long feeder is cut into runs of at most 17 homes,
the first of each wired to the hub through its street cabinet), and a relayed scenario with
more homes on a feeder than one line could serve runs end to end, every datagram delivered
and every relay that carried one paid."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gridnet.errors import ConfigError
from gridnet.relay.onion import MAX_ONION_HOPS
from gridnet.sim.neighbourhood import Neighbourhood, memory_network
from gridnet.sim.relaynet import CARRIER, RUN_HOMES, Topology, cabinet_homes
from gridnet.sim.scenario import load_scenario, scenario_from_dict

HUB = "dso"
LIBRARY = Path(__file__).parents[2] / "scenarios"


def area(homes: int, feeders: int, hill: int = 0) -> tuple[list[list[str]], list[str]]:
    """The simulator's layout: ``home-i`` on feeder ``i mod feeders``, the last ``hill``
    homes on the hill (off every feeder)."""
    wired = homes - hill
    lines = [[f"home-{i}" for i in range(wired) if i % feeders == f] for f in range(feeders)]
    return lines, [f"home-{i}" for i in range(wired, homes)]


def check_routes(net: Topology, feeders: Sequence[Sequence[str]], hill: Sequence[str]) -> list[int]:
    """Every home reaches the hub over links of the network, through distinct relays, at most
    MAX_ONION_HOPS of them, and the hub reaches it back the same way; the relays per route."""
    lengths = []
    for home in [*(h for f in feeders for h in f), *hill]:
        route = net.path(home, HUB)
        assert len(route) <= MAX_ONION_HOPS, (home, route)
        assert len(set(route)) == len(route) and home not in route and HUB not in route
        hops = [home, *route, HUB]
        for a, b in itertools.pairwise(hops):
            assert b in net.graph[a], f"{home}'s route steps from {a} to {b}, which are not linked"
        assert net.path(HUB, home) == route[::-1]  # the hub's datagrams come down the same branch
        lengths.append(len(route))
    return lengths


def test_a_feeder_is_cut_into_runs_of_at_most_17_homes() -> None:
    assert RUN_HOMES == MAX_ONION_HOPS + 1 == 17
    assert cabinet_homes(0) == [] and cabinet_homes(1) == [0] and cabinet_homes(17) == [0]
    assert cabinet_homes(18) == [0, 9]  # two runs of 9
    assert cabinet_homes(35) == [0, 12, 24]  # three runs of 12, 12 and 11
    assert cabinet_homes(100) == [0, 17, 34, 51, 68, 85]
    for n in range(1, 400):
        cabinets = cabinet_homes(n)
        assert len(cabinets) == -(-n // RUN_HOMES)  # the fewest runs that fit
        runs = [b - a for a, b in zip(cabinets, [*cabinets[1:], n], strict=True)]
        assert max(runs) <= RUN_HOMES and runs[:-1] == [runs[0]] * (len(runs) - 1) and runs[-1] <= runs[0]


def test_a_short_feeder_is_the_line_it_always_was() -> None:
    """Up to 17 homes a feeder has no cabinet: the k-th home sends through the k - 1 before it."""
    feeders, hill = area(20 + 2, 2, hill=2)  # (the default scenario's shape)
    net = Topology.build(HUB, feeders, hill)
    assert net.wired == [(a, b) for f in feeders for a, b in zip([HUB, *f], f, strict=False)]
    for feeder in feeders:
        for k, home in enumerate(feeder):
            assert net.path(home, HUB) == feeder[:k][::-1]
    assert net.stops == [*hill, feeders[0][0]]
    assert net.path(hill[0], HUB) == [CARRIER, feeders[0][0]]
    line = [f"home-{i}" for i in range(17)]
    assert Topology.build(HUB, [line], []).depth() == MAX_ONION_HOPS  # the longest line that fits


def test_a_1000_home_area_on_10_feeders_keeps_every_route_within_the_onion_limit() -> None:
    feeders, hill = area(1000, 10, hill=2)
    net = Topology.build(HUB, feeders, hill)
    lengths = check_routes(net, feeders, hill)
    assert len(lengths) == 1000
    assert max(lengths) == net.depth() == 14  # the tail of a feeder's last run (15 homes)
    assert sum(lengths) / len(lengths) < 5
    cabinets = [b for a, b in net.wired if a == HUB]
    assert len(cabinets) == 10 * 6  # 100 (or 99) homes a feeder: six runs each


@pytest.mark.parametrize(
    ("homes", "feeders", "hill"),
    [
        (300, 1, 0),  # one very long feeder
        (300, 1, 5),
        (40, 40, 0),  # forty feeders of one home each
        (41, 40, 1),
        (3, 2, 3),  # everyone on the hill: the carrier's last stop is the hub
        (18, 1, 0),  # one home more than a line holds
        (34, 1, 0),
        (1000, 1, 2),
    ],
)
def test_odd_shapes_keep_every_route_within_the_onion_limit(homes: int, feeders: int, hill: int) -> None:
    lines, hills = area(homes, feeders, hill)
    net = Topology.build(HUB, lines, hills)
    lengths = check_routes(net, lines, hills)
    assert len(lengths) == homes


def test_uneven_feeders_and_an_empty_first_feeder() -> None:
    lines = [
        [],
        [f"a-{i}" for i in range(50)],
        ["b-0"],
        [f"c-{i}" for i in range(17)],
        [f"d-{i}" for i in range(18)],
    ]
    hill = ["hill-0", "hill-1"]
    net = Topology.build(HUB, lines, hill)
    check_routes(net, lines, hill)
    assert net.stops == [*hill, HUB]  # the first feeder is empty: the carrier rides to the hub
    with pytest.raises(ValueError, match="twice"):
        Topology.build(HUB, [["x", "y"], ["y"]], [])


# --- a simulated feeder of 30 homes ---------------------------------------------------------

LONG_LINE: dict[str, Any] = {
    "simulation": {"name": "long-line", "intervals": 4, "start": "2026-06-21T11:00:00Z"},
    "homes": {"count": 30},
    "network": {"nodes": 2},
    "relay": {"hill_homes": 2},
    "line_owner": [{"name": "One Line", "fee": 0.01}],
}
"""30 homes on one feeder (28 wired, 2 on the hill): the old loader refused more than 17."""


def test_the_loader_takes_any_number_of_homes_on_a_feeder() -> None:
    scenario = scenario_from_dict(LONG_LINE, "long-line")
    assert scenario.relay.enabled and len(scenario.line_owners) == 1 and scenario.homes.count == 30
    big = load_scenario(LIBRARY / "area-1000.toml")
    assert big.relay.enabled and big.homes.count == 1000 and len(big.line_owners) == 10
    owners = [{"name": f"L{i}", "fee": 0.01} for i in range(3)]
    with pytest.raises(ConfigError, match="at most one per home"):
        scenario_from_dict({"homes": {"count": 2}, "line_owner": owners}, "s.toml")


def test_a_relayed_feeder_of_30_homes_delivers_every_datagram_and_pays_its_relays(tmp_path: Path) -> None:
    scenario = scenario_from_dict(LONG_LINE, "long-line")
    sim = Neighbourhood(scenario, memory_network(scenario, tmp_path / "out"))
    try:
        run = sim.run()
        rn = sim.world.relaynet
        assert rn is not None
        relay = run["relay"]
        assert relay["dropped"] == {} and relay["late_orders"] == 0
        assert relay["datagrams_delivered"] == relay["datagrams_sent"] > 0
        assert max(rn.tally.hops) <= MAX_ONION_HOPS and rn.tally.routes == {}  # none left in flight
        feeder = [f"home-{i}" for i in range(28)]
        assert [b for a, b in rn.topology.wired if a == HUB] == ["home-0", "home-14"]  # two runs of 14
        assert rn.path("home-27", HUB) == feeder[14:27][::-1]  # to the second run's cabinet
        assert rn.path("home-20", HUB) == feeder[14:20][::-1]
        # Every relay that carried a datagram is paid for it by the claims on chain.
        pay = relay["reward_per_relay_gnc"]
        carried = [name for name, peer in rn.peers.items() if name != HUB and peer.stats.forwarded]
        assert "home-14" in carried and CARRIER in carried
        assert all(pay.get(name, 0) > 0 for name in carried), {n: pay.get(n) for n in carried}
        assert set(pay) == set(carried)
        assert relay["connections_claimed"] > 0 and run["transactions"]["refused"] == {}
        assert run["converged"]
    finally:
        sim.close()
