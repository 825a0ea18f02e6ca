"""The government: an authority that subsidises every exported kWh read on chain."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridnet.agents.base import Agent
from gridnet.agents.manufacturer import register_identity
from gridnet.agents.roles import Role
from gridnet.ledger.params import Allocation
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.grid import PaySubsidy
from gridnet.ledger.txs.meter import READINGS, reading_key
from gridnet.security.roles import Role as AuthorityRole
from gridnet.sim.scenario import gnc
from gridnet.units import Interval

if TYPE_CHECKING:
    from gridnet.agents.world import World

SUBSIDY_BATCH = 96
"""Intervals one PaySubsidy covers."""


class Government(Agent):
    role = "government"

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
                keys = [reading_key(meter, i) for i in batch]

                def ready(view: StateView, keys: list[bytes] = keys) -> bool:
                    return all(view.get(READINGS, k) is not None for k in keys)

                world.later(self, PaySubsidy(meter, batch, rate), ready)


def build(world: World) -> list[Agent]:
    return [Government("government", world.key("government"), world.node_for(1))]


ROLE = Role("government", 30, build)
