"""DSO emergency commands: signed by a DSO authority, addressed to the meters of an area.

They are informative: a meter's owner may override a command on its own responsibility,
and every override is recorded on chain (``RecordOverride``), with the signed command,
so anyone can check that the command was real and who ignored it.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import U63, AddressBytes, Area, PublicKeyBytes, SignatureBytes, Wire, encode
from gridnet.units import Address, Interval


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


def sign_command(dso: PrivateKey, command: DsoCommand) -> SignedCommand:
    return SignedCommand(command, dso.sign(Domain.COMMAND, encode(command)))


def is_signed_command(signed: SignedCommand) -> bool:
    """True when the issuer key named in the command signed it."""
    c = signed.command
    return verify_signature(Domain.COMMAND, c.issuer, encode(c), signed.signature)


def addresses(command: DsoCommand, meter: Address, meter_area: str) -> bool:
    """Whether ``command`` is addressed to ``meter`` (in ``meter_area``)."""
    return meter_area == command.area and (not command.meters or meter in command.meters)


def covers(command: DsoCommand, interval: Interval) -> bool:
    return command.first_interval <= interval <= command.last_interval
