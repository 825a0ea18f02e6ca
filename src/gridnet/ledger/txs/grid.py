"""Government subsidies and recorded overrides of DSO commands.

PaySubsidy: a government authority pays a meter's owner a rate per exported kWh for
readings on chain; a reading is never subsidised twice.

RecordOverride: a meter's owner records that it overrode a DSO command for its meter.
The command must be signed by a registered DSO authority, for this chain: a command signed
by any other key, or for another chain, is rejected (``CommandSignatureInvalid``).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec.structs import replace

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.crypto.hashing import hash32
from gridnet.encoding import U63, AddressBytes, HashBytes, Wire, encode
from gridnet.errors import (
    CommandNotForMeter,
    CommandSignatureInvalid,
    InsufficientBalance,
    MalformedTransaction,
    MeterNotOwned,
    MissingReading,
    NotAuthorized,
    OverrideAlreadyRecorded,
    SubsidyAlreadyPaid,
    UnknownMeter,
)
from gridnet.grid.commands import CommandKind, SignedCommand, addresses, command_check, is_signed_command
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import ACCOUNTS, StateView, register_table
from gridnet.ledger.txs.advisory import refuse_vulnerable
from gridnet.ledger.txs.authority import AUTHORITIES
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.identity import refuse_revoked
from gridnet.ledger.txs.meter import METERS, READINGS, reading_key
from gridnet.security.roles import Role
from gridnet.units import Address, Hash32, energy_cost

MAX_SUBSIDY_INTERVALS = 96


class Override(Wire, frozen=True):
    meter: AddressBytes
    command: HashBytes
    """Digest of the signed command."""
    reason: Annotated[str, msgspec.Meta(max_length=200)]
    height: U63


OVERRIDES = register_table("overrides", b"O", Override)


class PaySubsidy(Wire, frozen=True, tag=14):
    meter: AddressBytes
    intervals: Annotated[tuple[U63, ...], msgspec.Meta(min_length=1, max_length=MAX_SUBSIDY_INTERVALS)]
    rate: U63
    """Subsidy [base units per exported kWh]."""


class RecordOverride(Wire, frozen=True, tag=15):
    command: SignedCommand
    meter: AddressBytes
    reason: Annotated[str, msgspec.Meta(max_length=200)]


def validate_pay_subsidy(payload: PaySubsidy, params: ChainParams) -> None:
    if len(set(payload.intervals)) != len(payload.intervals) or payload.rate == 0:
        raise MalformedTransaction("a subsidy lists each interval once, at a positive rate")


def apply_pay_subsidy(state: StateView, env: BlockEnv, sender: Address, payload: PaySubsidy) -> None:
    authority = state.get(AUTHORITIES, sender)
    if authority is None or not authority.roles & Role.GOVERNMENT:
        raise NotAuthorized(f"{address_to_text(sender)} is not a government authority")
    meter = state.get(METERS, payload.meter)
    if meter is None:
        raise UnknownMeter(f"meter {address_to_text(payload.meter)} is not registered")
    refuse_revoked(state, meter.owner, "receiving a subsidy")  # (a proven fraud lost its stake)
    refuse_vulnerable(state, env.params, payload.meter, "paying a subsidy")
    total = 0
    records = []
    for interval in payload.intervals:
        key = reading_key(payload.meter, interval)
        reading = state.get(READINGS, key)
        if reading is None:
            raise MissingReading(f"no reading of the meter for interval {interval} is on chain")
        if reading.subsidised:
            raise SubsidyAlreadyPaid(f"the reading of interval {interval} was already subsidised")
        total += energy_cost(reading.exported_wh, payload.rate)
        records.append((key, reading))
    acct = state.account(sender)
    if acct.balance < total:
        raise InsufficientBalance(f"the subsidy of {total} exceeds the government's balance {acct.balance}")
    for key, reading in records:
        state.put(READINGS, key, replace(reading, subsidised=True))
    state.put(ACCOUNTS, sender, replace(acct, balance=acct.balance - total))
    state.credit(meter.owner, total)


def validate_record_override(payload: RecordOverride, params: ChainParams) -> None:
    command = payload.command.command
    if command.kind not in set(CommandKind) or command.first_interval > command.last_interval:
        raise MalformedTransaction("a DSO command has a known kind and first_interval <= last_interval")


def check_dso_command(state: StateView, signed: SignedCommand, chain_id: Hash32) -> Address:
    """A command the meters of chain ``chain_id`` (``state``'s) may act on: signed by its
    issuer, a registered DSO authority, for this chain. Returns the issuer's address."""
    if not is_signed_command(signed, chain_id):
        raise CommandSignatureInvalid(
            "the command is not signed by the issuer it names for this chain (a DSO signs the "
            "chain id with each command: one signed for another chain is refused)"
        )
    issuer = address_from_public_key(signed.command.issuer)
    authority = state.get(AUTHORITIES, issuer)
    if authority is None or not authority.roles & Role.DSO:
        raise NotAuthorized(f"command signed by {address_to_text(issuer)}, which is not a DSO authority")
    return issuer


def apply_record_override(state: StateView, env: BlockEnv, sender: Address, payload: RecordOverride) -> None:
    check_dso_command(state, payload.command, env.chain_id)
    meter = state.get(METERS, payload.meter)
    if meter is None or meter.owner != sender:
        raise MeterNotOwned(f"meter {address_to_text(payload.meter)} is not registered to the sender")
    if not addresses(payload.command.command, payload.meter, meter.area):
        raise CommandNotForMeter("the command does not address this meter (area or meter list)")
    digest = hash32(encode(payload.command))
    key = payload.meter + digest
    if state.get(OVERRIDES, key) is not None:
        raise OverrideAlreadyRecorded("this override is already recorded")
    state.put(OVERRIDES, key, Override(payload.meter, digest, payload.reason, env.height))


SUBSIDY_RULES = TxRules(PaySubsidy, validate_pay_subsidy, apply_pay_subsidy)
OVERRIDE_RULES = TxRules(
    RecordOverride,
    validate_record_override,
    apply_record_override,
    carried=lambda p, chain_id, _sender: [command_check(p.command, chain_id)],
)
