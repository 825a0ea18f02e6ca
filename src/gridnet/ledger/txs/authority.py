"""Authorities and their flags.

RegisterAuthority: the sender (a registered identity) declares itself an authority
with roles and a name. PublishFlag: an authority flags (or clears its flag on) a meter
or an identity, with a reason. Flags change nothing in consensus: each participant's
policy decides whether it trusts the authority that published them.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gridnet.crypto.address import address_to_text
from gridnet.encoding import U63, AddressBytes, PublicKeyBytes, Wire
from gridnet.errors import AuthorityAlreadyRegistered, MalformedTransaction, NotAuthorized
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import StateView, register_table
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.identity import refuse_revoked, require_identity
from gridnet.security.roles import ALL_ROLES, FlagTarget
from gridnet.units import Address

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
MAX_FLAGS_PER_TARGET = 64


class Authority(Wire, frozen=True):
    public_key: PublicKeyBytes
    roles: U63
    """A ``security.roles.Role`` bit set."""
    name: Name
    registered_at: U63


class FlagEntry(Wire, frozen=True):
    authority: AddressBytes
    reason: Reason
    height: U63
    """Block that published the flag."""


class Flags(Wire, frozen=True):
    """Every authority's current flag on one meter or identity."""

    entries: tuple[FlagEntry, ...]


AUTHORITIES = register_table("authorities", b"T", Authority)
FLAGS = register_table("flags", b"F", Flags)


def flag_key(kind: FlagTarget, target: Address) -> bytes:
    return bytes([kind]) + target


class RegisterAuthority(Wire, frozen=True, tag=5):
    roles: U63
    name: Name


class PublishFlag(Wire, frozen=True, tag=6):
    target_kind: U63
    """``FlagTarget``: 0 = meter, 1 = identity."""
    target: AddressBytes
    reason: Reason
    active: bool
    """True to flag; False to withdraw this authority's flag."""


def validate_register_authority(payload: RegisterAuthority, params: ChainParams) -> None:
    if payload.roles == 0 or payload.roles & ~int(ALL_ROLES):
        raise MalformedTransaction(f"authority roles {payload.roles} are empty or unknown")


def apply_register_authority(
    state: StateView, env: BlockEnv, sender: Address, payload: RegisterAuthority
) -> None:
    require_identity(state, sender, "becoming an authority")
    if state.get(AUTHORITIES, sender) is not None:
        raise AuthorityAlreadyRegistered(f"{address_to_text(sender)} is already an authority")
    key = env.sender_key
    state.put(AUTHORITIES, sender, Authority(key, payload.roles, payload.name, env.height))


def validate_publish_flag(payload: PublishFlag, params: ChainParams) -> None:
    if payload.target_kind not in (FlagTarget.METER, FlagTarget.IDENTITY):
        raise MalformedTransaction(f"flag target kind {payload.target_kind} is unknown")


def apply_publish_flag(state: StateView, env: BlockEnv, sender: Address, payload: PublishFlag) -> None:
    if state.get(AUTHORITIES, sender) is None:
        raise NotAuthorized(f"{address_to_text(sender)} is not a registered authority and cannot flag")
    refuse_revoked(state, sender, "publishing a flag")  # (an authority whose fraud was proven)
    key = flag_key(FlagTarget(payload.target_kind), payload.target)
    current = state.get(FLAGS, key)
    others = tuple(e for e in (current.entries if current else ()) if e.authority != sender)
    if payload.active:
        if len(others) >= MAX_FLAGS_PER_TARGET:
            raise MalformedTransaction(f"target already carries {len(others)} flags (limit)")
        entries = (*others, FlagEntry(sender, payload.reason, env.height))
    else:
        entries = others
    state.put(FLAGS, key, Flags(entries) if entries else None)


def flagged_by(state: StateView, kind: FlagTarget, target: Address) -> frozenset[Address]:
    """Authorities that currently flag ``target``."""
    flags = state.get(FLAGS, flag_key(kind, target))
    return frozenset(e.authority for e in flags.entries) if flags else frozenset()


REGISTER_AUTHORITY_RULES = TxRules(RegisterAuthority, validate_register_authority, apply_register_authority)
PUBLISH_FLAG_RULES = TxRules(PublishFlag, validate_publish_flag, apply_publish_flag)
