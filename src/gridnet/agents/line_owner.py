"""A power-line owner: signs the contracts whose energy crosses its feeder for a fee per kWh.

Its fee is the scenario's (``[[line_owner]] fee``); with ``cover_losses = true`` it raises
it, whenever needed, to what pays for its cables' losses: the losses it measured (the power
flow of each interval) bought at the DSO's retail price, per kWh its contracts were paid
for. It signs terms only at or above its own fee.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from gridnet.agents.base import Agent
from gridnet.agents.contracts import dues
from gridnet.agents.home import Home
from gridnet.agents.roles import Role
from gridnet.contracts.channel import ContractTerms, PartySignature, sign_terms
from gridnet.crypto.keys import PrivateKey
from gridnet.sim.scenario import gnc
from gridnet.units import Interval, UnitsPerKWh, Wh, energy_cost

if TYPE_CHECKING:
    from gridnet.agents.world import World

RECENT = 4
"""Intervals (the latest hour) whose losses set a loss-covering fee."""


class LineOwner(Agent):
    role = "line_owner"

    def __init__(
        self, name: str, key: PrivateKey, node: str, index: int, fee: UnitsPerKWh, cover_losses: bool
    ) -> None:
        super().__init__(name, key, node)
        self.index = index
        """Its feeder."""
        self.fee = fee
        self.cover_losses = cover_losses
        self.loss_price: UnitsPerKWh = 0
        """What its losses cost it [base units / kWh]: the DSO's retail price."""
        self.cost = 0.0
        """Its cables' losses so far at ``loss_price`` [base units]."""
        self.earned = 0
        """Fees its contracts paid so far (as their meters show) [base units]."""
        self.recent: deque[tuple[float, Wh]] = deque(maxlen=RECENT)
        """(losses cost [base units], energy billed [Wh]) of the latest intervals."""

    def quote(self) -> UnitsPerKWh:
        """Its fee now [base units / kWh]: the scenario's, or, covering its losses, what the
        latest hour's losses cost per kWh billed, plus what it is still short of so far
        spread over the same energy (never more than ten times its own fee, when it has one)."""
        if not self.cover_losses:
            return self.fee
        billed = sum(wh for _, wh in self.recent)
        if billed == 0:
            return self.fee
        short = max(0.0, self.cost - self.earned)
        needed = (sum(c for c, _ in self.recent) + short) * 1000 / billed
        quote = max(self.fee, math.ceil(needed))
        return min(10 * self.fee, quote) if self.fee else quote

    def sign_terms(self, world: World, terms: ContractTerms) -> PartySignature | None:
        fees = [f.fee for f in terms.line_fees if f.owner == self.address]
        return sign_terms(terms, self.key) if fees and fees[0] >= self.fee else None

    def balance(self, world: World, interval: Interval) -> None:
        """Its feeder's losses in the interval that ended (the power flow) and the energy its
        contracts were paid for (the public auction and readings)."""
        flow = world.flows.get(interval)
        if flow is None:
            return
        cost = flow.losses_wh[self.index] * self.loss_price / 1000
        due = dues(world, interval)
        billed = earned = 0
        for deal in world.deals.get(interval, []):
            for f in deal.terms.line_fees:
                if f.owner == self.address:
                    billed += due[deal.cid]
                    earned += energy_cost(due[deal.cid], f.fee)
        for home in world.of(Home):  # the shortfalls the DSO supplied under balancing contracts
            for balancing in home.balancing.values():
                wh = balancing.delivered.get(interval, 0)
                for f in balancing.terms.line_fees:
                    if wh and f.owner == self.address:
                        billed += wh
                        earned += energy_cost(wh, f.fee)
        self.cost += cost
        self.earned += earned
        self.recent.append((cost, billed))


def build(world: World) -> list[Agent]:
    owners: list[Agent] = []
    for j, lo in enumerate(world.s.line_owners):
        owner = LineOwner(
            lo.name, world.key(f"line-owner-{j}"), world.node_for(j), j, gnc(lo.fee), lo.cover_losses
        )
        owner.loss_price = gnc(world.s.dso.sell_price)
        owners.append(owner)
    return owners


ROLE = Role("line_owner", 60, build)
"""(After the DSO: it books an interval once the substation's reading is published.)"""
