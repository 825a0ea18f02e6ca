"""Authority roles (a bit set) and what a flag can target."""

from __future__ import annotations

import enum


class Role(enum.IntFlag):
    """What an authority says it is. Self-declared on chain: each participant's policy
    decides whom it trusts for what. Consensus uses a role only where the rule is about
    who signed (a DSO command, a subsidy payment)."""

    MANUFACTURER = 1
    DSO = 2
    SECURITY = 4
    GOVERNMENT = 8
    POLICE = 16
    ADVISORY = 32
    """Publishes vulnerability advisories (only if the genesis also names it)."""
    MAINTENANCE = 64
    """A maintenance team: it may bid on maintenance tenders (``ledger/txs/maintenance.py``)."""
    KEY_MANAGEMENT = 128
    """A key-management centre: it publishes privacy groups (``ledger/txs/privacy.py``)."""
    VEHICLE_REGISTRY = 256
    """A trusted authority for electric vehicles: it registers vehicles and the charging
    hotspots that trade among them (``ledger/txs/vehicle.py``)."""

    @classmethod
    def parse(cls, names: list[str]) -> Role:
        role = cls(0)
        for name in names:
            try:
                role |= cls[name.strip().upper()]
            except KeyError:
                known = ", ".join(m.name.lower() for m in cls if m.name)
                raise ValueError(f"unknown authority role {name!r} (known: {known})") from None
        return role


ALL_ROLES = (
    Role.MANUFACTURER
    | Role.DSO
    | Role.SECURITY
    | Role.GOVERNMENT
    | Role.POLICE
    | Role.ADVISORY
    | Role.MAINTENANCE
    | Role.KEY_MANAGEMENT
    | Role.VEHICLE_REGISTRY
)


class FlagTarget(enum.IntEnum):
    METER = 0
    IDENTITY = 1
