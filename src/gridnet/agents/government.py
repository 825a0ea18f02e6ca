"""The government: an authority that subsidises every exported kWh read on chain."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridnet.agents.base import Agent
from gridnet.agents.manufacturer import register_identity
from gridnet.agents.roles import Role
from gridnet.crypto.keys import PrivateKey
from gridnet.ledger.params import Allocation
from gridnet.ledger.txs.advisory import vulnerable_meter
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.grid import PaySubsidy
from gridnet.ledger.txs.meter import READINGS, reading_key
from gridnet.security.roles import Role as AuthorityRole
from gridnet.sim.scenario import gnc
from gridnet.units import Interval

if TYPE_CHECKING:
    from gridnet.agents.world import Look, World

SUBSIDY_BATCH = 96
"""Intervals one PaySubsidy covers."""


class Government(Agent):
    role = "government"

    def __init__(self, name: str, key: PrivateKey, node: str) -> None:
        super().__init__(name, key, node)
        self.withheld = 0
        """Subsidy batches it did not pay: the meter was vulnerable (security layer)."""

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(world.s.government.start_gnc))]

    def bootstrap(self, world: World) -> None:
        register_identity(world, self)
        world.submit(self, RegisterAuthority(int(AuthorityRole.GOVERNMENT), "Government"))

    def day_end(self, world: World, intervals: list[Interval]) -> None:
        """Subsidise every interval a home's meter read an export in (from the public readings)."""
        rate = gnc(world.s.government.subsidy)
        if rate == 0:
            return
        for agent in world.agents:
            if agent.meter is None or agent.feeder is None:
                continue
            meter = agent.meter.meter_id
            exported = [i for i in intervals if world.metered(agent, i)[0] > 0]
            for start in range(0, len(exported), SUBSIDY_BATCH):
                batch = tuple(exported[start : start + SUBSIDY_BATCH])
                self.pay_once_read(world, PaySubsidy(meter, batch, rate))

    def pay_once_read(self, world: World, payment: PaySubsidy) -> None:
        """Pay ``payment`` once the readings it names are on chain, unless the meter is then
        vulnerable (the chain pays no subsidy for a meter an advisory bans)."""
        keys = [reading_key(payment.meter, i) for i in payment.intervals]

        def ready(look: Look) -> bool:
            return all(look.view.get(READINGS, k) is not None for k in keys)

        def pay(look: Look) -> None:
            assert world.params is not None
            if vulnerable_meter(look.view, world.params, payment.meter) is None:
                world.submit(self, payment)
            else:
                self.withheld += 1

        world.when(self, ready, pay)


def build(world: World) -> list[Agent]:
    return [Government("government", world.key("government"), world.node_for(1))]


ROLE = Role("government", 30, build)
