"""Generation monitoring in the simulator (seed 003, section 3.4; ``ledger/txs/monitoring.py``).

``[generation] enabled = true`` adds a generating station (``world/smib.py``: a generator on
an infinite bus, its load behind SL, a PSS engaged through SC) and its operator, who registers
the station's four meters and the station. Its meters sample the machine every ``sample_s``
seconds of simulated time and the operator submits their signed records every simulated
minute, for the run's intervals. ``operator_opens_sl_s`` after the start the operator opens SL
(a load rejection the PSS damps: a real transient) and ``operator_closes_sl_s`` closes it
again. ``attack_s`` after the start an attacker opens SL and SC (their
meters report them failed) and the compromised generator meter keeps reporting the values it
measured just before, to hide the swing; the chain flags those records. -1: never.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gridnet.agents.base import Agent
from gridnet.agents.manufacturer import Manufacturer, register_identity
from gridnet.agents.roles import Role
from gridnet.errors import ConfigError
from gridnet.ledger.params import Allocation
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.meter import METERS, registration
from gridnet.ledger.txs.monitoring import (
    FDI_FLAGS,
    SC,
    SL,
    STATIONS,
    Flag,
    Measurement,
    Name,
    RegisterStation,
    SignedRecord,
    SubmitMonitoring,
    SwitchState,
    flag_key,
    sign_record,
    station_id,
)
from gridnet.meter.certificate import issue_certificate
from gridnet.sim.scenario import MAX_INTERVALS, bounded, gnc, on_chain
from gridnet.world.smib import Machine, Sample

if TYPE_CHECKING:
    from gridnet.agents.world import World


MAX_OFFSET_S: Final = MAX_INTERVALS * 900
"""The latest a scheduled event may be [s after the start]: the longest run."""


@dataclass(frozen=True)
class GenerationTable:
    enabled: bool = False
    name: str = on_chain("Plant", Name)
    sample_s: int = bounded(2, 1, 60, "s")
    operator_opens_sl_s: int = bounded(-1, -1, MAX_OFFSET_S, "s")
    """When the operator opens the load switch (a real load rejection) [s after the start]."""
    operator_closes_sl_s: int = bounded(-1, -1, MAX_OFFSET_S, "s")
    """When the operator closes it again [s after the start]."""
    attack_s: int = bounded(-1, -1, MAX_OFFSET_S, "s")
    """When the attacker opens SL and SC and the generator meter starts lying [s after the start]."""


class GenerationStation(Agent):
    role = "generation"

    def __init__(self, world: World) -> None:
        super().__init__("generation-operator", world.key("generation-operator"), world.node_for(1))
        self.t: GenerationTable = world.s.tables["generation"]
        self.meters = [world.key(f"generation/{n}-meter") for n in ("generator", "SL", "SC", "PSS")]
        self.sid = station_id(self.key.public_key, self.t.name)
        self.chain_id = b""
        """The chain the records are signed for (known once the chain exists: at the bootstrap)."""
        self.machine = Machine()
        self.clock_ms = world.first * 900_000
        self.start_ms = self.clock_ms
        self.seq = 0
        self.switch_seq = [0, 0, 0]
        self.pending: list[SignedRecord] = []
        self.frozen: Sample | None = None
        """What the compromised meter keeps reporting once the attack began."""
        self.events: list[tuple[int, str]] = []
        self.first_false_seq: int | None = None
        self.figures: dict[str, Any] = {}

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(10))]

    def bootstrap(self, world: World) -> None:
        self.chain_id = world.backend.chain_id
        register_identity(world, self)
        maker = world.one(Manufacturer)
        for n, key in enumerate(self.meters):
            cert = issue_certificate(
                maker.key,
                key.public_key,
                vendor="Grid Instruments",
                model="PMU-1",
                firmware="1.0",
                serial=f"G{n}",
            )
            world.later(
                self, registration(key, cert, world.area, self.address, self.chain_id), maker.registered
            )
        act = RegisterStation(
            self.t.name,
            self.meters[0].address,
            (self.meters[1].address, self.meters[2].address, self.meters[3].address),
        )

        def ready(view: StateView) -> bool:
            return all(view.get(METERS, k.address) is not None for k in self.meters)

        world.later(self, act, ready)

    def switch(self, n: int, closed: bool, failed: bool) -> None:
        self.switch_seq[n] += 1
        record = SwitchState(self.sid, n, closed, failed, self.switch_seq[n], self.clock_ms)
        self.pending.append(sign_record(self.meters[1 + n], self.chain_id, record))

    def sample(self) -> None:
        s = self.frozen or self.machine.measure()
        self.seq += 1
        m = Measurement(
            self.sid, self.seq, self.clock_ms, round(s.frequency_hz * 1000), round(s.voltage_pu * 1e6),
            round(s.current_pu * 1e6), round(s.power_pu * 1e6), round(s.load_current_pu * 1e6),
        )  # fmt: skip
        if self.frozen is not None and self.first_false_seq is None:
            self.first_false_seq = self.seq
        self.pending.append(sign_record(self.meters[0], self.chain_id, m))

    def tick(self, world: World) -> None:
        now = min(world.now(), (world.last + 1) * 900_000)  # (the run's intervals only)
        step = self.t.sample_s * 1000
        while self.clock_ms + step <= now:
            self.machine.run(self.t.sample_s)
            self.clock_ms += step
            elapsed = (self.clock_ms - self.start_ms) // 1000
            if elapsed == self.t.operator_opens_sl_s:
                self.machine.sl_closed = False
                self.switch(SL, False, failed=False)
                self.events.append((self.seq + 1, "operator opened SL"))
            if elapsed == self.t.operator_closes_sl_s:
                self.machine.sl_closed = True
                self.switch(SL, True, failed=False)
                self.events.append((self.seq + 1, "operator closed SL"))
            if elapsed == self.t.attack_s:
                self.frozen = self.machine.measure()  # what it reports from now on
                self.machine.sl_closed = self.machine.sc_closed = False
                self.switch(SL, False, failed=True)
                self.switch(SC, False, failed=True)
                self.events.append((self.seq + 1, "attack: SL and SC opened, generator meter lies"))
            self.sample()
        view = world.look(self.node).view
        if self.pending and view.get(STATIONS, self.sid) is not None:
            batch, self.pending = tuple(self.pending[:256]), self.pending[256:]
            if not world.submit(self, SubmitMonitoring(self.chain_id, batch)):
                self.pending = [*batch, *self.pending]

    def wrap_up(self, world: World) -> None:
        view = world.look(self.node).view
        station = view.get(STATIONS, self.sid)
        flagged = []
        if station is not None:
            for seq in range(1, station.measurements + 1):
                f = view.get(FDI_FLAGS, flag_key(self.sid, seq))
                if f is not None:
                    flagged.append((seq, f.reasons))
        reasons: dict[str, int] = {}
        for _, bits in flagged:
            for flag in Flag:
                if bits & flag and flag.name:
                    reasons[flag.name.lower()] = reasons.get(flag.name.lower(), 0) + 1
        false_seqs = range(self.first_false_seq, self.seq + 1) if self.first_false_seq else range(0)
        self.figures = {
            "enabled": True,
            "station": self.t.name,
            "registered": station is not None,
            "measurements": 0 if station is None else station.measurements,
            "switch_violations": 0 if station is None else station.violations,
            "flagged": len(flagged),
            "flags_by_reason": reasons,
            "false_records": len(false_seqs),
            "false_records_flagged": sum(1 for seq, _ in flagged if seq in false_seqs),
            "true_records_flagged": sum(1 for seq, _ in flagged if seq not in false_seqs),
            "events": [{"first_seq": s, "what": what} for s, what in self.events],
        }


def report(world: World, agents: Sequence[Agent]) -> dict[str, Any]:
    station = agents[0] if agents else None
    return station.figures if isinstance(station, GenerationStation) else {"enabled": False}


def build(world: World) -> list[Agent]:
    t: GenerationTable = world.s.tables["generation"]
    if not t.enabled:
        return []
    if not 1 <= t.sample_s <= 60 or min(t.operator_opens_sl_s, t.operator_closes_sl_s, t.attack_s) < -1:
        raise ConfigError(
            f"{world.s.source}: [generation] sample_s must be 1 to 60; operator_opens_sl_s, "
            "operator_closes_sl_s and attack_s -1 (never) or seconds after the start"
        )
    return [GenerationStation(world)]


ROLE = Role("generation", 79, build, table=GenerationTable, report=report)
