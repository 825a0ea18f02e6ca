"""The advisory authority (seed 004's SEL knowledge base): a meter CERT that the genesis names
as one of the ``advisory_authorities`` and that publishes a vulnerability advisory on the
manufacturer's meters when ``[advisor]`` says so.

From the block that publishes it, every meter running an affected version is *vulnerable*:
its orders are left out of the auction and no contract, settlement or subsidy involves it
until its device installs the fixing release and the meter's new status is on chain
(``Home.secure``). Its report section counts what the security layer did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gridnet.agents.base import Agent
from gridnet.agents.manufacturer import MODEL, VENDOR, register_identity
from gridnet.agents.roles import Role
from gridnet.encoding import decode, encode
from gridnet.errors import ConfigError, GridnetError
from gridnet.ledger.params import Allocation, default_params, severity_code
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.advisory import PublishAdvisory, Version, validate_publish_advisory, vulnerable_meter
from gridnet.ledger.txs.authority import AUTHORITIES, RegisterAuthority
from gridnet.meter.certificate import Label
from gridnet.security.roles import Role as AuthorityRole
from gridnet.sim.scenario import MAX_INTERVALS, bounded, gnc, on_chain

if TYPE_CHECKING:
    from gridnet.agents.world import World


@dataclass(frozen=True)
class AdvisorTable:
    affected: tuple[str, ...] = on_chain((), Label)
    """Firmware versions of the manufacturer's meters its advisory covers (none: no advisory)."""
    severity: str = "high"
    """low, medium, high or critical."""
    fixed_in: str = on_chain("", Version)
    """The version that fixes it ('' = no fix known)."""
    after_min: int = bounded(0, 0, MAX_INTERVALS * 15, "min")
    """When it publishes, in minutes after the run starts (0: before the first interval)."""
    id: str = on_chain("GN-SIM-0001", Label)


class Advisor(Agent):
    role = "advisor"

    def __init__(self, name: str, world: World) -> None:
        super().__init__(name, world.key(name), world.node_for(2))
        self.t: AdvisorTable = world.s.tables["advisor"]
        self.due: int | None = None
        """When its advisory is due [ms]; None once submitted (or when it has none)."""
        self.banned: list[str] = []
        """Participants whose meter is vulnerable on its node's head once the day is over."""

    def genesis(self, world: World) -> dict[str, tuple[bytes, ...]]:
        return {"advisory_authorities": (self.address,)}

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(10))]

    def bootstrap(self, world: World) -> None:
        register_identity(world, self)
        world.submit(self, RegisterAuthority(int(AuthorityRole.ADVISORY), "Meter CERT"))
        if self.t.affected:
            self.due = world.s.start_ms + self.t.after_min * 60_000 if self.t.after_min else 0
            self.tick(world)

    def tick(self, world: World) -> None:
        if self.due is None or world.now() < self.due:
            return
        self.due = None
        t = self.t
        severity = severity_code(t.severity, f"{world.s.source}: [advisor] severity")
        advisory = PublishAdvisory(t.id, VENDOR, MODEL, t.affected, severity, t.fixed_in, True)

        def registered(view: StateView) -> bool:
            return view.get(AUTHORITIES, self.address) is not None

        world.later(self, advisory, registered)

    def wrap_up(self, world: World) -> None:
        """Note which meters the day ends with banned (the report is written after the nodes
        stop, so it cannot ask them)."""
        assert world.params is not None
        view, params = world.look(self.node).view, world.params
        self.banned = sorted(
            a.name for a in world.agents if a.meter and vulnerable_meter(view, params, a.meter.meter_id)
        )


def report(world: World, agents: Sequence[Agent]) -> dict[str, Any]:
    """What the security layer did: the advisory, the meters it still bans at the end, the
    updates installed or failed, and the orders and transactions it refused."""
    from gridnet.agents.government import Government
    from gridnet.agents.home import Home

    advisor = agents[0]
    assert isinstance(advisor, Advisor)
    homes = world.of(Home)
    t: AdvisorTable = world.s.tables["advisor"]
    tally = world.tally
    return {
        "advisory": {"id": t.id, "affected": list(t.affected), "severity": t.severity, "fixed_in": t.fixed_in}
        if t.affected
        else None,
        "meters_banned_at_end": advisor.banned,
        "updates_installed": sum(h.updates_installed for h in homes),
        "update_failures": sum(h.update_failures for h in homes),
        "orders_left_out": tally.orders_refused["OrderFromVulnerableMeter"] + tally.orders_left_out,
        "transactions_refused": tally.refused["VulnerableMeter"],
        "orders_withheld": sum(h.orders_withheld for h in homes),
        "subsidies_withheld": sum(g.withheld for g in world.of(Government)),
    }


def build(world: World) -> list[Agent]:
    t: AdvisorTable = world.s.tables["advisor"]
    severity = severity_code(t.severity, f"{world.s.source}: [advisor] severity")  # a bad name fails now
    if t.affected:  # what the chain would refuse is refused now, not silently in the run
        advisory = PublishAdvisory(t.id, VENDOR, MODEL, t.affected, severity, t.fixed_in, True)
        try:
            validate_publish_advisory(decode(encode(advisory), PublishAdvisory), default_params())
        except GridnetError as exc:
            raise ConfigError(
                f"{world.s.source}: [advisor]: the chain would refuse this advisory: {exc}"
            ) from None
    return [Advisor("advisor", world)]


ROLE = Role("advisor", 25, build, table=AdvisorTable, report=report)
