"""The meter security lab: an authority that flags meters reported tampered."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridnet.agents.base import Agent
from gridnet.agents.manufacturer import register_identity
from gridnet.agents.roles import Role
from gridnet.ledger.params import Allocation
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.authority import PublishFlag, RegisterAuthority
from gridnet.ledger.txs.meter import METERS
from gridnet.security.roles import FlagTarget
from gridnet.security.roles import Role as AuthorityRole
from gridnet.sim.scenario import gnc
from gridnet.units import Address

if TYPE_CHECKING:
    from gridnet.agents.world import World


class SecurityLab(Agent):
    role = "security"

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(10))]

    def bootstrap(self, world: World) -> None:
        register_identity(world, self)
        world.submit(self, RegisterAuthority(int(AuthorityRole.SECURITY), "Meter Security Lab"))
        for meter in flagged_meters(world):

            def registered(view: StateView, meter: Address = meter) -> bool:
                return view.get(METERS, meter) is not None

            world.later(
                self, PublishFlag(int(FlagTarget.METER), meter, "tampered seal reported", True), registered
            )


def flagged_meters(world: World) -> list[Address]:
    """The meters the lab flags: those of the cheapest sellers (a tampered meter selling
    cheap energy is what a buyer should be warned about), ``[security] flagged_meters`` of them."""
    sellers = [a for a in world.agents if a.meter is not None and getattr(a, "sell_floor", None) is not None]
    sellers.sort(key=lambda a: a.sell_floor)  # type: ignore[attr-defined]
    return [a.meter.meter_id for a in sellers[: world.s.security.flagged_meters] if a.meter is not None]


def build(world: World) -> list[Agent]:
    return [SecurityLab("security", world.key("security"), world.node_for(1))]


ROLE = Role("security", 20, build)
