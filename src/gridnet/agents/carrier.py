"""The carrier (seed 001's bicycle driver): rides past the homes no wire reaches and then to
the first home of the first feeder, carrying their datagrams; paid per hop like any relay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridnet.agents.base import Agent
from gridnet.agents.manufacturer import register_identity
from gridnet.agents.roles import Role
from gridnet.ledger.params import Allocation
from gridnet.ledger.txs.relay import MAX_HOP_CLAIMS, ClaimTransit
from gridnet.sim.relaynet import CARRIER
from gridnet.sim.scenario import gnc

if TYPE_CHECKING:
    from gridnet.agents.world import World


class Carrier(Agent):
    role = CARRIER

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(1))]  # for its claims' fees

    def attach(self, world: World) -> None:
        world.build_relaynet(world.with_role("dso"), self)

    def bootstrap(self, world: World) -> None:
        if world.relaynet is not None:
            register_identity(world, self)  # a relay is a registered identity

    def tick(self, world: World) -> None:
        if world.relaynet is not None:
            world.relaynet.move_carrier(world.now())

    def wrap_up(self, world: World) -> None:
        claim_hops(world, self)


def claim_hops(world: World, relay: Agent) -> None:
    """``relay`` claims what the senders whose datagrams it carried owe it."""
    if world.relaynet is None:
        return
    hops = world.relaynet.hop_claims(relay.name)
    for i in range(0, len(hops), MAX_HOP_CLAIMS):
        world.submit(relay, ClaimTransit(None, tuple(hops[i : i + MAX_HOP_CLAIMS])))


def claim_receipts(world: World, receiver: Agent) -> None:
    """``receiver`` ends the connections it received datagrams on: one claim each."""
    if world.relaynet is None:
        return
    for claim in world.relaynet.claims(receiver.name):
        world.submit(receiver, ClaimTransit(claim))


def build(world: World) -> list[Agent]:
    if not world.s.relay.enabled:
        return []
    return [Carrier(CARRIER, world.key(CARRIER), world.node_for(0))]


ROLE = Role(CARRIER, 80, build)
