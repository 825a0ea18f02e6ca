"""Privacy-preserving aggregation in the simulator (seed 003, section 3.3; ``ledger/txs/privacy.py``).

``[privacy] enabled = true`` adds a key-management centre (``key-centre``, an authority). It
divides the homes by yearly consumption into ``groups`` groups, makes ``pseudonyms`` pseudonym
keys per member and hands each member its own, sealed to the member's key (only the member
opens them), and publishes each group as a Bloom filter of its pseudonyms. At the end of
every slot of ``slot_intervals`` intervals the group's rule picks its aggregator: the member
whose slot pseudonym (its ``slot mod pseudonyms``-th) has the lowest hash with the slot. The
members hand it their consumption over the slot (what their meters imported); it publishes the
group's total and average under that pseudonym, with the proof of knowledge of its key, and
the readings collector carries the transaction (no member's account ever touches it). After
the last slot the DSO, as billing centre, bills each member off chain and records the bills'
commitment, which the chain checks against the group's aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gridnet.agents.base import Agent
from gridnet.agents.manufacturer import register_identity
from gridnet.agents.roles import Role
from gridnet.crypto.boxes import open_sealed, seal
from gridnet.crypto.hashing import hash32
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import ConfigError
from gridnet.ledger.params import Allocation
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.authority import AUTHORITIES, RegisterAuthority
from gridnet.ledger.txs.privacy import (
    AGGREGATES,
    GROUPS,
    MAX_BLOOM_BYTES,
    MAX_BLOOM_HASHES,
    PublishAggregate,
    PublishGroup,
    RecordBills,
    compute_bloom_bytes,
    group_id,
    is_bloom_tight,
    make_bloom,
    prove,
    slot_key,
)
from gridnet.security.roles import Role as AuthorityRole
from gridnet.sim.scenario import MAX_HOMES, bounded, gnc
from gridnet.units import interval_start

if TYPE_CHECKING:
    from gridnet.agents.home import Home
    from gridnet.agents.world import Look, World

SUBMIT_AFTER_MS = 2 * 60_000
"""The aggregate goes on chain this long after its slot ended (its block must be later)."""


@dataclass(frozen=True)
class PrivacyTable:
    enabled: bool = False
    groups: int = bounded(2, 1, MAX_HOMES // 2)
    pseudonyms: int = bounded(3, 1, 16)
    """Pseudonym keys per member."""
    slot_intervals: int = bounded(4, 1, 96, "intervals")
    bloom_bytes: int = bounded(0, 0, MAX_BLOOM_BYTES, "bytes")
    """Each group's filter; 0: the smallest the chain takes for the group's pseudonyms."""
    bloom_hashes: int = bounded(MAX_BLOOM_HASHES, 1, MAX_BLOOM_HASHES)


@dataclass
class Member:
    home: Home
    pseudonyms: list[PrivateKey]
    """What it opened from the key centre's sealed boxes."""


@dataclass
class PrivacyGroup:
    name: str
    members: list[Member]
    bloom: bytes
    """The filter of its members' pseudonyms, as the key centre publishes it."""


class KeyCentre(Agent):
    role = "privacy"

    def __init__(self, world: World, homes: list[Home]) -> None:
        super().__init__("key-centre", world.key("key-centre"), world.node_for(0))
        self.t: PrivacyTable = world.s.tables["privacy"]
        ranked = sorted(homes, key=lambda h: (h.annual_kwh, h.name))
        self.groups: list[PrivacyGroup] = []
        n, count = len(ranked), self.t.groups
        for g in range(count):  # as even as can be: at least 2 members each
            chunk = ranked[g * n // count : (g + 1) * n // count]
            members = []
            for home in chunk:  # the key centre makes the keys and seals each to its member
                boxes = [
                    seal(home.key.public_key, hash32(f"{world.s.simulation.seed}/{home.name}/{n}".encode()))
                    for n in range(self.t.pseudonyms)
                ]
                members.append(Member(home, [PrivateKey(open_sealed(home.key, b)) for b in boxes]))
            name = f"group-{g}"
            self.groups.append(PrivacyGroup(name, members, self._bloom(world, name, members)))
        self.first_slot = world.first
        self.published = 0
        self.figures: dict[str, Any] = {}

    def _bloom(self, world: World, name: str, members: list[Member]) -> bytes:
        """The group's filter: ``bloom_bytes`` (0: the smallest the chain takes), refused before
        the run when the chain would refuse it (``PublishGroup``: too full)."""
        keys = [p.public_key for m in members for p in m.pseudonyms]
        hashes = self.t.bloom_hashes
        needed = compute_bloom_bytes(keys, hashes)
        size = self.t.bloom_bytes or needed
        if size is None or not is_bloom_tight(bloom := make_bloom(keys, size, hashes), hashes):
            fix = (
                f"set bloom_bytes to {needed:,} or more (or 0)"
                if needed is not None
                else f"use more hashes (at most {MAX_BLOOM_HASHES}), fewer pseudonyms or more groups"
            )
            raise ConfigError(
                f"{world.s.source}: [privacy] {name}'s filter of its {len(keys)} pseudonyms would admit "
                f"outsiders' keys too often for the chain (bloom_bytes {self.t.bloom_bytes or 'as needed'}, "
                f"bloom_hashes {hashes}): {fix}"
            )
        return bloom

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(10))]

    def bootstrap(self, world: World) -> None:
        register_identity(world, self)
        world.submit(self, RegisterAuthority(int(AuthorityRole.KEY_MANAGEMENT), "Key Management Centre"))
        for group in self.groups:
            act = PublishGroup(
                group.name,
                world.with_role("dso").address,
                group.bloom,
                self.t.bloom_hashes,
                len(group.members),
                self.t.slot_intervals,
                self.first_slot,
            )

            def ready(view: StateView) -> bool:
                return view.get(AUTHORITIES, self.address) is not None

            world.later(self, act, ready)

    def aggregator(self, group: PrivacyGroup, slot: int) -> tuple[Member, PrivateKey]:
        """The group's rule: the member whose slot pseudonym hashes lowest with the slot."""
        n = (slot - self.first_slot) // self.t.slot_intervals % self.t.pseudonyms
        member = min(
            group.members, key=lambda m: hash32(slot.to_bytes(8, "big") + m.pseudonyms[n].public_key)
        )
        return member, member.pseudonyms[n]

    def measure(self, world: World, interval: int) -> None:
        """After a slot's last interval: the chosen member aggregates its group."""
        if (interval - self.first_slot + 1) % self.t.slot_intervals:
            return
        slot = interval - self.t.slot_intervals + 1
        collector = world.with_role("collector")
        for group in self.groups:
            total = sum(world.metered(m.home, i)[1] for m in group.members for i in range(slot, interval + 1))
            _, pseudonym = self.aggregator(group, slot)
            count = len(group.members)
            gid = group_id(self.key.public_key, group.name)
            act = PublishAggregate(gid, slot, total, count, total // count, b"\x00" * 32, b"\x00" * 64)
            self.carry(world, collector, prove(pseudonym, world.backend.chain_id, act), interval)

    def carry(self, world: World, collector: Agent, signed: PublishAggregate, last: int) -> None:
        """The collector submits the aggregate a little after its slot ended."""
        ends = interval_start(last + 1) + SUBMIT_AFTER_MS

        def ended(_look: Look) -> bool:
            return world.now() >= ends

        def submit(_look: Look) -> None:
            if world.submit(collector, signed):
                self.published += 1

        world.when(collector, ended, submit)

    def wrap_up(self, world: World) -> None:
        """The billing centre (the DSO) bills each group's members for the slots aggregated
        and records the bills' commitment."""
        dso = world.with_role("dso")
        view = world.look(dso.node).view
        groups = []
        for group in self.groups:
            gid = group_id(self.key.public_key, group.name)
            record = view.get(GROUPS, gid)
            slots = []
            if record is not None:
                s = record.billed_through
                while view.get(AGGREGATES, slot_key(gid, s)) is not None:
                    slots.append(s)
                    s += self.t.slot_intervals
            billed = 0
            if slots:
                bills = sorted(  # what each member owes: its own data, off chain
                    (
                        m.home.name,
                        sum(
                            world.metered(m.home, i)[1]
                            for i in range(slots[0], slots[-1] + self.t.slot_intervals)
                        ),
                    )
                    for m in group.members
                )
                billed = sum(wh for _, wh in bills)
                commitment = hash32(repr(bills).encode())
                world.submit(dso, RecordBills(gid, slots[-1], commitment, billed))
            aggregates = [view.get(AGGREGATES, slot_key(gid, s)) for s in slots]
            metered = sum(
                world.metered(m.home, i)[1]
                for m in group.members
                for s in slots
                for i in range(s, s + self.t.slot_intervals)
            )
            groups.append(
                {
                    "name": group.name,
                    "members": len(group.members),
                    "pseudonyms": len(group.members) * self.t.pseudonyms,
                    "bloom_bits": len(group.bloom) * 8,
                    "slots_aggregated": len(slots),
                    "aggregators_used": len({a.pseudonym for a in aggregates if a is not None}),
                    "aggregated_wh": sum(a.total_wh for a in aggregates if a is not None),
                    "metered_wh": metered,
                    "billed_wh": billed,
                }
            )
        self.figures = {
            "enabled": True,
            "groups": groups,
            "aggregates_published": self.published,
            "totals_match_meters": all(
                g["aggregated_wh"] == g["metered_wh"] == g["billed_wh"] for g in groups
            ),
        }


def report(world: World, agents: Sequence[Agent]) -> dict[str, Any]:
    centre = agents[0] if agents else None
    return centre.figures if isinstance(centre, KeyCentre) else {"enabled": False}


def build(world: World) -> list[Agent]:
    from gridnet.agents.home import Home

    t: PrivacyTable = world.s.tables["privacy"]
    if not t.enabled:
        return []
    homes = world.of(Home)
    where = f"{world.s.source}: [privacy]"
    if not 1 <= t.groups <= len(homes) // 2 or not 1 <= t.pseudonyms <= 16:
        raise ConfigError(
            f"{where} groups must be 1 to half the homes (2 members each at least), pseudonyms 1 to 16"
        )
    if (
        not 1 <= t.slot_intervals <= 96
        or not 0 <= t.bloom_bytes <= MAX_BLOOM_BYTES
        or not 1 <= t.bloom_hashes <= MAX_BLOOM_HASHES
    ):
        raise ConfigError(
            f"{where} slot_intervals 1 to 96, bloom_bytes 0 (as needed) to {MAX_BLOOM_BYTES:,}, "
            f"bloom_hashes 1 to {MAX_BLOOM_HASHES}"
        )
    return [KeyCentre(world, homes)]


ROLE = Role("privacy", 81, build, table=PrivacyTable, report=report)
