"""The reading collector: batches every meter's signed reading of an interval into one
transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gridnet.agents.base import Agent
from gridnet.agents.roles import Role
from gridnet.ledger.params import Allocation
from gridnet.ledger.txs.meter import SubmitReadings
from gridnet.meter.mqtt import MqttTelemetry
from gridnet.sim.scenario import gnc
from gridnet.units import Interval

if TYPE_CHECKING:
    from gridnet.agents.world import World


class Collector(Agent):
    role = "collector"

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(100))]

    def collect(self, world: World, interval: Interval) -> None:
        if isinstance(world.telemetry, MqttTelemetry):
            world.telemetry.flush(len(world.readings.get(interval, {})))  # bounded wait: all arrived
        # Canonical order, whatever order the transport delivered them in.
        batch = tuple(sorted(world.telemetry.collect(), key=lambda r: (r.reading.meter, r.reading.interval)))
        if batch:
            world.submit(self, SubmitReadings(batch))


def build(world: World) -> list[Agent]:
    return [Collector("collector", world.key("collector"), world.node_for(2))]


ROLE = Role("collector", 70, build)
