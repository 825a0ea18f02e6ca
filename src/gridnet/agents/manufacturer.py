"""The meter manufacturer: an authority that certifies every meter it builds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridnet.agents.base import Agent
from gridnet.agents.roles import Role
from gridnet.identity import find_identity_proof
from gridnet.ledger.params import Allocation
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.authority import AUTHORITIES, RegisterAuthority
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.meter import RegisterMeter
from gridnet.meter.certificate import issue_certificate
from gridnet.security.roles import Role as AuthorityRole
from gridnet.sim.scenario import gnc

if TYPE_CHECKING:
    from gridnet.agents.world import World


class Manufacturer(Agent):
    role = "manufacturer"

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(10))]

    def bootstrap(self, world: World) -> None:
        register_identity(world, self)
        world.submit(self, RegisterAuthority(int(AuthorityRole.MANUFACTURER), "Meter Manufacturer"))

    def fit_meter(self, world: World, owner: Agent) -> None:
        """Certify ``owner``'s meter; the owner registers it once the manufacturer is an
        authority on chain."""
        assert owner.meter is not None
        cert = issue_certificate(
            self.key,
            owner.meter.key.public_key,
            vendor="GridMeter",
            model="GM-15",
            firmware=owner.meter.firmware,
            serial=owner.name,
        )

        def registered(view: StateView) -> bool:
            return view.get(AUTHORITIES, self.address) is not None

        world.later(owner, RegisterMeter(cert, world.area), registered)


def register_identity(world: World, agent: Agent) -> None:
    """Find ``agent``'s identity proof (its proof-of-work) and register it."""
    assert world.params is not None
    proof = find_identity_proof(agent.address, world.params.identity_target_int)
    world.proofs[agent.address] = proof
    world.submit(agent, RegisterIdentity(proof))


def build(world: World) -> list[Agent]:
    return [Manufacturer("manufacturer", world.key("manufacturer"), world.node_for(0))]


ROLE = Role("manufacturer", 10, build)
