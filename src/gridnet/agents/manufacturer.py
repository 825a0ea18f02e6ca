"""The meter manufacturer: an authority that certifies every meter it builds and publishes
its firmware releases on chain (seed 004's SEL: a meter's status may only name one of them).

``[manufacturer]`` sets the firmware its meters ship with (published as a release at the
start, so an older meter can install it), the homes whose meters still run an older version,
and those whose meters cannot install anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gridnet.agents.base import Agent
from gridnet.agents.roles import Role
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import ConfigError, shown
from gridnet.identity import find_identity_proof
from gridnet.ledger.params import Allocation
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.authority import AUTHORITIES, RegisterAuthority
from gridnet.ledger.txs.firmware import PublishFirmware
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.meter import registration
from gridnet.meter.certificate import Label, issue_certificate
from gridnet.meter.status import firmware_image_hash
from gridnet.meter.telemetry import SimulatedMeter
from gridnet.security.roles import Role as AuthorityRole
from gridnet.sim.scenario import gnc, on_chain

if TYPE_CHECKING:
    from gridnet.agents.world import World

VENDOR = "GridMeter"
MODEL = "GM-15"


@dataclass(frozen=True)
class ManufacturerTable:
    firmware: str = on_chain("1.0.0", Label)
    """Firmware its meters ship with, published as a release when the run starts."""
    outdated: tuple[str, ...] = ()
    """Participants (e.g. "home-3") whose meter still runs ``old_firmware``."""
    old_firmware: str = on_chain("0.9.0", Label)
    """What the ``outdated`` meters run until they install ``firmware``."""
    not_updatable: tuple[str, ...] = ()
    """Participants whose meter fails to install any release (it keeps what it runs)."""


def firmware_image(version: str) -> bytes:
    """The image of one of its releases (what it distributes; the chain holds its hash)."""
    return f"{VENDOR} {MODEL} firmware {version}".encode()


def build_meter(world: World, owner: str, key: PrivateKey) -> SimulatedMeter:
    """The meter it builds for ``owner`` (by name): the scenario says what it runs."""
    t: ManufacturerTable = world.s.tables["manufacturer"]
    firmware = t.old_firmware if owner in t.outdated else t.firmware
    return SimulatedMeter(key, firmware, vendor=VENDOR, model=MODEL, updatable=owner not in t.not_updatable)


class Manufacturer(Agent):
    role = "manufacturer"

    def allocations(self, world: World) -> list[Allocation]:
        return [Allocation(self.address, gnc(10))]

    def bootstrap(self, world: World) -> None:
        register_identity(world, self)
        world.submit(self, RegisterAuthority(int(AuthorityRole.MANUFACTURER), "Meter Manufacturer"))
        version = world.s.tables["manufacturer"].firmware
        release = PublishFirmware(VENDOR, MODEL, version, firmware_image_hash(firmware_image(version)))
        world.later(self, release, self.registered)

    def registered(self, view: StateView) -> bool:
        return view.get(AUTHORITIES, self.address) is not None

    def fit_meter(self, world: World, owner: Agent) -> None:
        """Certify ``owner``'s meter (for the firmware it ships with); the owner registers it,
        with the status its meter signs now (at the device's own status number) and the meter's
        binding of it to ``owner`` on this chain, once the manufacturer is an authority on chain."""
        meter = owner.meter
        assert meter is not None
        cert = issue_certificate(
            self.key,
            meter.key.public_key,
            vendor=meter.vendor,
            model=meter.model,
            firmware=meter.firmware,
            serial=owner.name,
        )
        world.later(
            owner,
            registration(meter.key, cert, world.area, owner.address, world.backend.chain_id, meter.status()),
            self.registered,
        )


def register_identity(world: World, agent: Agent) -> None:
    """Find ``agent``'s identity proof (its proof-of-work) and register it."""
    assert world.params is not None
    proof = find_identity_proof(agent.address, world.params.identity_target_int)
    world.proofs[agent.address] = proof
    world.submit(agent, RegisterIdentity(proof))


def build(world: World) -> list[Agent]:
    t: ManufacturerTable = world.s.tables["manufacturer"]
    if t.outdated and t.old_firmware == t.firmware:
        raise ConfigError(f"{world.s.source}: [manufacturer] old_firmware must differ from firmware")
    return [Manufacturer("manufacturer", world.key("manufacturer"), world.node_for(0))]


def check(world: World) -> None:
    """The meters ``[manufacturer]`` names are participants' (once every role is built)."""
    t: ManufacturerTable = world.s.tables["manufacturer"]
    for key in ("outdated", "not_updatable"):
        unknown = sorted(set(getattr(t, key)) - {a.name for a in world.agents if a.meter is not None})
        if unknown:
            raise ConfigError(
                f"{world.s.source}: [manufacturer] {key} names {shown(unknown[0])}, which has no meter "
                "(name homes as home-0, home-1, ...)"
            )


ROLE = Role("manufacturer", 10, build, table=ManufacturerTable, check=check)
