"""Participants are agents: a new kind joins with its module and its scenario table alone,
and a home's device acts only on commands the chain vouches for."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from gridnet.agents.base import Agent
from gridnet.agents.home import Home
from gridnet.agents.roles import Role, register, roles, unregister
from gridnet.agents.world import World
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import ConfigError
from gridnet.grid.commands import CommandKind, DsoCommand, sign_command
from gridnet.ledger.params import Allocation
from gridnet.ledger.txs.transfer import Transfer
from gridnet.sim.neighbourhood import Neighbourhood, memory_network, simulate
from gridnet.sim.relaynet import CommandNote
from gridnet.sim.scenario import gnc, load_scenario, scenario_from_dict
from gridnet.units import Interval

TINY: dict[str, Any] = {
    "simulation": {"intervals": 3, "start": "2026-06-21T11:00:00Z"},
    "homes": {"count": 6},
}


@dataclass(frozen=True)
class DonorTable:
    gift_gnc: float = 1.0
    """What the donor gives the government at the end of the day [GNC]."""


class Donor(Agent):
    role = "donor"

    def __init__(self, world: World) -> None:
        super().__init__("donor", world.key("donor"), world.node_for(2))
        self.table: DonorTable = world.s.tables["donor"]
        self.seen: list[Interval] = []

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(10))]

    def measure(self, world: World, interval: Interval) -> None:
        self.seen.append(interval)

    def day_end(self, world: World, intervals: list[Interval]) -> None:
        world.submit(self, Transfer(world.with_role("government").address, gnc(self.table.gift_gnc)))


def donor_report(world: World, agents: Sequence[Agent]) -> dict[str, Any]:
    donor = agents[0]
    assert isinstance(donor, Donor)
    return {"intervals_seen": len(donor.seen), "gift_gnc": donor.table.gift_gnc}


@pytest.fixture
def donor_role() -> Iterator[Role]:
    role = Role("donor", 90, lambda world: [Donor(world)], DonorTable, donor_report)
    register(role)
    yield role
    unregister("donor")


def test_a_new_kind_of_participant_is_a_module_and_a_table(donor_role: Role, tmp_path: Path) -> None:
    assert donor_role in roles()
    report = simulate(scenario_from_dict({**TINY, "donor": {"gift_gnc": 2.5}}, "with donor"), tmp_path / "d")
    assert report["converged"] and report["verify"]["ok"] and report["transactions"]["refused"] == {}
    assert report["chain"]["transactions_by_type"]["Transfer"] == 1
    assert report["roles"]["donor"] == {"intervals_seen": 3, "gift_gnc": 2.5}
    with pytest.raises(ConfigError, match=r"\[donor\]: unknown key\(s\) \['gift'\]"):
        scenario_from_dict({**TINY, "donor": {"gift": 1}}, "s.toml")


def test_without_its_module_the_table_is_unknown() -> None:
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['donor'\]"):
        scenario_from_dict({**TINY, "donor": {"gift_gnc": 1.0}}, "s.toml")


def test_the_core_roles_each_have_a_module() -> None:
    names = [r.name for r in roles()]
    assert names == [
        "manufacturer",
        "security",
        "advisor",
        "government",
        "dso",
        "home",
        "meters",
        "line_owner",
        "collector",
        "helios",
        "credit_bank",
        "aggregators",
        "maintenance",
        "generation",
        "carrier",
        "privacy",
        "ev",
    ]


def test_a_home_follows_only_commands_the_chain_vouches_for(tmp_path: Path) -> None:
    """A command signed by a key that is no DSO authority on chain, or addressed to another
    meter, is refused by the home's device (no curtailment, no override); the DSO's own
    command is followed by a home whose policy trusts the DSO, and overridden (on chain) by
    one whose policy does not."""
    scenario = scenario_from_dict({**TINY, "dso": {"override_share": 0.5}}, "tiny")
    sim = Neighbourhood(scenario, memory_network(scenario, tmp_path / "t"))
    try:
        sim.run()
        world = sim.world
        dso = world.with_role("dso")
        homes = [h for h in world.of(Home) if h.pv_kw]
        trusting = next(h for h in homes if h.policy.trusted.get("dso"))
        overriding = next(h for h in homes if not h.policy.trusted.get("dso"))

        def command(
            key: PrivateKey, meters: tuple[bytes, ...], nonce: int, chain_id: bytes = world.backend.chain_id
        ) -> CommandNote:
            c = DsoCommand(
                key.public_key, world.area, meters, int(CommandKind.CURTAIL_EXPORT), 500, 1, 2, nonce
            )
            return CommandNote(sign_command(key, c, chain_id))

        assert trusting.meter is not None and overriding.meter is not None
        impostor = PrivateKey.from_label("not the dso")
        trusting.inbox += [
            command(impostor, (trusting.meter.meter_id,), 1),
            command(dso.key, (overriding.meter.meter_id,), 2),
        ]
        trusting.tick(world)
        assert trusting.commands_refused == 1 and trusting.commands == []  # the other: not its meter
        trusting.inbox.append(command(dso.key, (), 3))
        trusting.tick(world)
        assert [c.nonce for c in trusting.commands] == [3] and trusting.overrides == 0
        # The DSO's own key, but signed for another chain (its test chain's drill): refused.
        refused, overridden = overriding.commands_refused, overriding.overrides
        trusting.inbox.append(command(dso.key, (), 5, chain_id=bytes(32)))
        overriding.inbox.append(command(dso.key, (), 6, chain_id=bytes(32)))
        trusting.tick(world)
        overriding.tick(world)
        assert trusting.commands_refused == 2 and [c.nonce for c in trusting.commands] == [3]
        assert overriding.commands_refused == refused + 1 and overriding.overrides == overridden
        overrides = world.tally.submitted["RecordOverride"]
        overriding.inbox.append(command(dso.key, (), 4))
        overriding.tick(world)
        assert overriding.commands == [] and overriding.overrides == 1
        assert world.tally.submitted["RecordOverride"] == overrides + 1
    finally:
        sim.close()


def test_a_home_runs_its_owners_policy_file(tmp_path: Path) -> None:
    """[policies] names a home's own policy file: its scheduled check (every minute, below a
    stored energy, buy up to a target under a price cap, in Ah at the battery's voltage)
    orders energy for the battery at the check's price, and the battery fills."""
    (tmp_path / "n0.toml").write_text(
        '[[buy]]\nfrom = "00:00"\nto = "24:00"\nmax_price = 35000000\n'
        "[battery]\nnominal_v = 48.0\n"
        '[[check]]\nevery = "1m"\nif_stored_below = "400 Ah"\nbuy_until = "400 Ah"\nmax_price = 40000000\n'
    )
    scenario_file = tmp_path / "night.toml"
    scenario_file.write_text(
        '[simulation]\nintervals = 4\nstart = "2026-06-21T00:00:00Z"\n[homes]\ncount = 6\n'
        '[policies]\nhome-0 = "n0.toml"\n'
    )
    report = simulate(load_scenario(scenario_file), tmp_path / "out")
    assert report["converged"] and report["transactions"]["refused"] == {}
    orders = pq.read_table(tmp_path / "out" / "series" / "orders.parquet").to_pylist()
    checked = [o for o in orders if o["owner"] == "home-0" and o["price_gnc_per_kwh"] == 0.40]
    assert len(checked) == 4 and all(o["side"] == "bid" and 0 < o["traded_wh"] == o["wh"] for o in checked)
    homes = [
        r
        for r in pq.read_table(tmp_path / "out" / "series" / "homes.parquet").to_pylist()
        if r["home"] == "home-0"
    ]
    soc = [r["battery_soc_percent"] for r in homes]
    assert soc == sorted(soc) and soc[-1] > soc[0]  # it charges all night on its check's purchases
    assert report["scenario"]["resolved"]["policies"] == {"home-0": "n0.toml"}
    with pytest.raises(ConfigError, match=r"\[policies\] names 'home-9', which is no home"):
        scenario_file.write_text('[homes]\ncount = 6\n[policies]\nhome-9 = "n0.toml"\n')
        simulate(load_scenario(scenario_file), tmp_path / "out2")


class Batcher(Agent):
    """At the end of the day: three gifts handed over together, the second more than it has."""

    role = "batcher"

    def __init__(self, world: World) -> None:
        super().__init__("batcher", world.key("batcher"), world.node_for(1))
        self.taken: list[bool] = []

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(10))]

    def day_end(self, world: World, intervals: list[Interval]) -> None:
        government = world.with_role("government").address
        self.taken = world.submit_all([(self, Transfer(government, gnc(g))) for g in (1, 100, 2)])


def test_transactions_submitted_together_get_their_nonces_and_outcomes_in_order(tmp_path: Path) -> None:
    """``World.submit_all``: an agent's items get consecutive nonces; the one its node refuses
    (more than the balance) is counted refused by name, and the one after it (a nonce gap
    then) is submitted again with the right nonce and taken."""
    role = Role("batcher", 91, lambda world: [Batcher(world)], DonorTable, lambda _w, _a: {})
    register(role)
    try:
        scenario = scenario_from_dict({**TINY, "batcher": {}}, "with batcher")
        sim = Neighbourhood(scenario, memory_network(scenario, tmp_path / "b"))
        try:
            report = sim.run()
            batcher = sim.world.with_role("batcher")
        finally:
            sim.close()
    finally:
        unregister("batcher")
    assert isinstance(batcher, Batcher)
    assert batcher.taken == [True, False, True]
    assert report["transactions"]["refused"] == {"InsufficientBalance": 1}
    assert report["chain"]["transactions_by_type"]["Transfer"] == 2
    assert batcher.nonce == 2
