"""The homes' meters as devices (``gridnet.meter.device``; docs/meter.md): ``[meters] devices``.

With ``"model"`` (the default) a home's meter is the simulator's model: it signs what the home's
energy balance says flowed. With ``"memory"`` or ``"process"`` each home's meter is a device
with the meter's key, the home as owner and the DSO as the authority it obeys, run in this
process or as a ``gridnet meter run`` process on 127.0.0.1 driven over HTTP (the same calls
either way). The device has AC meter 0 (the home's connection: relay 0) and DC meter 0 (its PV
array: relay 1). Every interval the simulated world first asks the device which relays are
closed, then feeds it what flowed: an open relay 1 keeps the PV off, an open relay 0 cuts the
home off the grid (what the battery cannot take is curtailed, what it cannot serve is shed),
and the signed reading the home publishes is what its device measured.

The relays are how commands act: a DSO command whose limit is 0 W opens the relay it needs on
every meter it addresses (a curtailment to 0 opens the PV's, an import limit of 0 the
connection's) from the command's first interval and closes it after its last, each a relay
command signed by the DSO's key; a home whose policy overrides the command closes its relay
again with its own key (and records the override on chain, as without devices).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridnet.agents.base import Agent
from gridnet.agents.roles import Role
from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.errors import ConfigError
from gridnet.grid.commands import CommandKind, DsoCommand
from gridnet.meter.client import MeterClient, MeterUnavailable
from gridnet.meter.device import Meter, MeterDevice, SignedRelayCommand, SimClock, sign_relay_command
from gridnet.units import INTERVAL_MS

if TYPE_CHECKING:
    from gridnet.agents.home import Home
    from gridnet.agents.world import World

AC_METERS, DC_METERS = 2, 1
CONNECTION, RELEASE, PV_RELAY = 0, 1, 2
"""The relays: AC meter 0's (the home's connection to the line), AC meter 1's (the feeder a
Helios controller releases redeemed energy through: open until a release) and DC meter 0's
(its PV array)."""
START_S = 60.0
"""How long a meter process may take to answer [s]."""


@dataclass(frozen=True)
class MetersTable:
    devices: str = "model"
    """``"model"``, ``"memory"`` (devices in this process) or ``"process"`` (``gridnet meter``)."""


class MeterFleet(Agent):
    """The devices the world runs, and the processes it started for them."""

    role = "meters"

    def __init__(self, world: World, kind: str) -> None:
        super().__init__("meter-fleet", world.key("meter-fleet"), world.node_for(0))
        self.kind = kind
        self.devices: dict[str, MeterDevice] = {}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.workdir: tempfile.TemporaryDirectory[str] | None = None
        self.figures: dict[str, Any] = {}

    def start(self, world: World, homes: list[Home]) -> None:
        authorities = self.authorities(world)
        origin = world.first * INTERVAL_MS
        if self.kind == "memory":
            for home in homes:
                key = world.key(f"{home.name}/meter")
                clock = SimClock(origin)
                self.devices[home.name] = Meter(
                    key, home.address, authorities, ac=AC_METERS, dc=DC_METERS, clock=clock
                )
            return
        self.workdir = tempfile.TemporaryDirectory(prefix="gridnet-meters-")
        work = Path(self.workdir.name)
        infos = []
        for home in homes:
            key = world.key(f"{home.name}/meter")
            write_key_file(work / f"{home.name}.key", key)
            info = work / f"{home.name}.json"
            cmd = [
                *(sys.executable, "-m", "gridnet", "meter", "run", "--key", str(work / f"{home.name}.key")),
                *("--owner", address_to_text(home.address)),
                *(arg for key in sorted(authorities) for arg in ("--dso", key.hex())),
                *("--ac", str(AC_METERS), "--dc", str(DC_METERS), "--listen", "127.0.0.1:0"),
                *("--clock", "sim", "--clock-origin", str(origin), "--info-file", str(info)),
            ]
            with (work / f"{home.name}.log").open("ab") as out:
                self.processes.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))
            infos.append((home, key, info))
        deadline = time.monotonic() + START_S
        for (home, key, info), process in zip(infos, self.processes, strict=True):
            while not info.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (work / f"{home.name}.log").read_text(errors="replace").strip().splitlines()
                    raise MeterUnavailable(
                        f"the meter process of {home.name} did not start: {log[-1] if log else 'no output'}"
                    )
                time.sleep(0.05)
            self.devices[home.name] = MeterClient(json.loads(info.read_text())["url"], key.public_key)

    @staticmethod
    def authorities(world: World) -> frozenset[bytes]:
        """The keys the meters obey besides their owners': the DSO's, and on a Helios island the
        controller's (it releases redeemed energy through the release relay)."""
        from gridnet.agents.helios import HELIOS_CONTROLLER

        keys = {world.with_role("dso").key.public_key}
        helios = world.s.tables["helios"]
        if helios.enabled and helios.island:
            keys.add(world.key(HELIOS_CONTROLLER).public_key)
        return frozenset(keys)

    def close(self) -> None:
        """Stop the meter processes (by PID) and remove their files."""
        for client in self.devices.values():
            if isinstance(client, MeterClient):
                client.close()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None

    def wrap_up(self, world: World) -> None:
        logs = {name: device.log() for name, device in self.devices.items()}
        dso = world.with_role("dso").key.public_key
        self.figures = {
            "devices": self.kind,
            "meters": len(self.devices),
            "processes": len(self.processes),
            "relay_commands": sum(len(entries) for entries in logs.values()),
            "opened_by_dso": sum(
                1
                for entries in logs.values()
                for e in entries
                if e.signed.command.issuer == dso and e.signed.command.action == "open"
            ),
            "closed_by_owner": sum(
                1
                for entries in logs.values()
                for e in entries
                if e.role == "owner" and e.signed.command.action == "close"
            ),
            "relays_open_at_end": sum(
                1 for device in self.devices.values() for r in device.relays() if not r.closed
            ),
        }


def relay_command(
    key: PrivateKey, meter: bytes, relay: int, open_: bool, nonce: int, reason: str
) -> SignedRelayCommand:
    return sign_relay_command(key, meter, relay, "open" if open_ else "close", nonce, reason)


def relay_for(command: DsoCommand) -> int | None:
    """The relay a DSO command acts through: a curtailment to 0 W opens the PV's, an import
    limit of 0 W (or a disconnection) the connection's; None for a command with a limit."""
    if command.kind == CommandKind.DISCONNECT:
        return CONNECTION
    if command.limit_w:
        return None
    return PV_RELAY if command.kind == CommandKind.CURTAIL_EXPORT else CONNECTION


def report(world: World, agents: Sequence[Agent]) -> dict[str, Any]:
    if not agents:
        return {"devices": "model"}
    fleet = agents[0]
    assert isinstance(fleet, MeterFleet)
    return fleet.figures


def build(world: World) -> list[Agent]:
    from gridnet.agents.home import Home

    t: MetersTable = world.s.tables["meters"]
    if t.devices not in ("model", "memory", "process"):
        raise ConfigError(f'{world.s.source}: [meters] devices must be "model", "memory" or "process"')
    if t.devices == "model":
        return []
    fleet = MeterFleet(world, t.devices)
    homes = world.of(Home)
    world.closers.append(fleet.close)
    fleet.start(world, homes)
    for home in homes:
        home.device_meter = fleet.devices[home.name]
    return [fleet]


ROLE = Role("meters", 55, build, table=MetersTable, report=report)
