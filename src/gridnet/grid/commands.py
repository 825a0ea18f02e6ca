"""DSO emergency commands: signed by a DSO authority, addressed to the meters of an area.

They are informative: a meter's owner may override a command on its own responsibility,
and every override is recorded on chain (``RecordOverride``), with the signed command,
so anyone can check that the command was real and who ignored it.

A command is for one chain: the DSO signs the chain id, then the encoded command
(``Domain.COMMAND``), as every chain-bound signature in GRIDNET. A DSO key is often an
authority on more than one chain (a test chain beside the production one), and a command
that named no chain (a disconnect drill on the test chain) was a valid command, and an override
of it a recorded one, on every chain where that key is a DSO. Every check takes the chain's id:
the chain's rules (``check_dso_command``), a node's command board and a device's own check.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from gridnet.crypto.keys import Domain, PrivateKey, SignatureCheck, verify_signature
from gridnet.encoding import U63, AddressBytes, Area, PublicKeyBytes, SignatureBytes, Wire, encode
from gridnet.units import Address, Hash32, Interval


class CommandKind(enum.IntEnum):
    CURTAIL_EXPORT = 0
    """Export at most ``limit_w``."""
    LIMIT_IMPORT = 1
    """Import at most ``limit_w``."""
    DISCONNECT = 2


class DsoCommand(Wire, frozen=True):
    issuer: PublicKeyBytes
    """The DSO authority's key."""
    area: Area
    meters: Annotated[tuple[AddressBytes, ...], msgspec.Meta(max_length=1024)]
    """Meters addressed; empty = every meter of the area."""
    kind: U63
    limit_w: U63
    """Power limit [W] for curtail and limit commands (0 for disconnect)."""
    first_interval: U63
    last_interval: U63
    nonce: U63


class SignedCommand(Wire, frozen=True):
    command: DsoCommand
    signature: SignatureBytes
    """The issuer's signature (``Domain.COMMAND``) of the chain id, then the encoded command."""


def command_message(chain_id: Hash32, command: DsoCommand) -> bytes:
    """What the DSO signs: the chain id, then the encoded command."""
    return chain_id + encode(command)


def sign_command(dso: PrivateKey, command: DsoCommand, chain_id: Hash32) -> SignedCommand:
    """``dso``'s command for the meters of chain ``chain_id`` (valid on no other chain)."""
    return SignedCommand(command, dso.sign(Domain.COMMAND, command_message(chain_id, command)))


def command_check(signed: SignedCommand, chain_id: Hash32) -> SignatureCheck:
    """Checking a command's signature by the issuer it names, for chain ``chain_id``."""
    c = signed.command
    return (Domain.COMMAND, c.issuer, command_message(chain_id, c), signed.signature)


def is_signed_command(signed: SignedCommand, chain_id: Hash32) -> bool:
    """True when the issuer key named in the command signed it for chain ``chain_id``."""
    return verify_signature(*command_check(signed, chain_id))


def addresses(command: DsoCommand, meter: Address, meter_area: str) -> bool:
    """Whether ``command`` is addressed to ``meter`` (in ``meter_area``)."""
    return meter_area == command.area and (not command.meters or meter in command.meters)


def covers(command: DsoCommand, interval: Interval) -> bool:
    return command.first_interval <= interval <= command.last_interval
