"""Subsidies (never twice for a reading) and recorded overrides of DSO commands (only
commands signed by a registered DSO authority)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.hashing import hash32
from gridnet.crypto.keys import Domain, PrivateKey
from gridnet.encoding import encode
from gridnet.errors import (
    CommandNotForMeter,
    CommandSignatureInvalid,
    IdentityRevoked,
    MalformedTransaction,
    MeterNotOwned,
    MissingReading,
    NotAuthorized,
    OverrideAlreadyRecorded,
    SubsidyAlreadyPaid,
)
from gridnet.grid.commands import CommandKind, DsoCommand, SignedCommand, sign_command
from gridnet.ledger.genesis import chain_id_of
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.base import BlockEnv
from gridnet.ledger.txs.grid import (
    OVERRIDES,
    PaySubsidy,
    RecordOverride,
    apply_pay_subsidy,
    check_dso_command,
)
from gridnet.ledger.txs.identity import revoke_identity
from gridnet.ledger.txs.meter import SubmitReadings, registration
from gridnet.meter.certificate import issue_certificate
from gridnet.meter.telemetry import SimulatedMeter
from gridnet.node.commands import CommandBoard
from gridnet.security.roles import Role
from gridnet.units import UNITS_PER_GNC, energy_cost
from tests.helpers import Actors, extend, new_chain, register_identity, test_params

MAKER, GOV, DSO, OWNER, OTHER = (PrivateKey.from_label(f"grid-{n}") for n in range(5))
PEOPLE = (MAKER, GOV, DSO, OWNER, OTHER)
METER = SimulatedMeter(PrivateKey.from_label("grid-meter"))
T0 = 1_970_000
RATE = 5 * UNITS_PER_GNC // 100  # per exported kWh
CHAIN = chain_id_of(test_params(PEOPLE, gnc=1_000))
"""The ``grid`` fixture's chain."""


class Grid(Actors):
    """Government, DSO, manufacturer and a meter owner on one chain."""


@pytest.fixture
def grid(tmp_path: Path) -> Grid:
    g = Grid(new_chain(tmp_path / "c", test_params(PEOPLE, gnc=1_000)), PEOPLE)
    extend(g.chain, [g.tx(k, register_identity(g.chain, k).payload) for k in PEOPLE])
    extend(
        g.chain,
        [
            g.tx(MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Acme")),
            g.tx(GOV, RegisterAuthority(int(Role.GOVERNMENT), "Ministry of Energy")),
            g.tx(DSO, RegisterAuthority(int(Role.DSO), "Grid Co")),
            g.tx(OTHER, RegisterAuthority(int(Role.SECURITY), "Not a DSO")),
        ],
    )
    cert = issue_certificate(MAKER, METER.key.public_key, vendor="Acme", model="M", firmware="1", serial="g")
    extend(g.chain, [g.tx(OWNER, registration(METER.key, cert, "north", OWNER.address, g.chain.chain_id))])
    batch = (METER.read(T0, 2_000, 0), METER.read(T0 + 1, 1_000, 0))
    extend(g.chain, [g.tx(OTHER, SubmitReadings(batch))])
    return g


def test_subsidy_pays_the_owner_per_exported_kwh_once(grid: Grid) -> None:
    before = grid.chain.account(OWNER.address).balance
    extend(grid.chain, [grid.tx(GOV, PaySubsidy(METER.meter_id, (T0, T0 + 1), RATE))])
    assert grid.chain.account(OWNER.address).balance == before + energy_cost(3_000, RATE)
    twice = PaySubsidy(METER.meter_id, (T0 + 1,), RATE)
    assert isinstance(grid.refused(GOV, twice), SubsidyAlreadyPaid)


def test_only_a_government_pays_subsidies_for_readings_on_chain(grid: Grid) -> None:
    assert isinstance(grid.refused(DSO, PaySubsidy(METER.meter_id, (T0,), RATE)), NotAuthorized)
    assert isinstance(grid.refused(GOV, PaySubsidy(METER.meter_id, (T0 + 7,), RATE)), MissingReading)


def command(key: PrivateKey, chain_id: bytes = CHAIN, **changes: object) -> SignedCommand:
    c = DsoCommand(
        issuer=key.public_key,
        area="north",
        meters=(),
        kind=int(CommandKind.CURTAIL_EXPORT),
        limit_w=500,
        first_interval=T0 + 48,
        last_interval=T0 + 49,
        nonce=1,
    )
    return sign_command(key, msgspec.structs.replace(c, **changes), chain_id)  # type: ignore[arg-type]


def test_dso_command_with_a_non_dso_key_is_rejected(grid: Grid) -> None:
    fake = command(OTHER)  # a registered authority, but not a DSO
    with pytest.raises(NotAuthorized):
        check_dso_command(grid.chain.view(), fake, grid.chain.chain_id)
    assert isinstance(grid.refused(OWNER, RecordOverride(fake, METER.meter_id, "no")), NotAuthorized)
    stranger = command(PrivateKey.from_label("nobody"))
    assert isinstance(grid.refused(OWNER, RecordOverride(stranger, METER.meter_id, "no")), NotAuthorized)


def test_forged_command_signature(grid: Grid) -> None:
    real = command(DSO)
    forged = msgspec.structs.replace(real, signature=bytes(64))
    assert isinstance(
        grid.refused(OWNER, RecordOverride(forged, METER.meter_id, "x")), CommandSignatureInvalid
    )
    with pytest.raises(CommandSignatureInvalid):
        check_dso_command(grid.chain.view(), forged, grid.chain.chain_id)


def test_a_command_signed_for_another_chain_is_refused(grid: Grid) -> None:
    """A DSO signs the chain id with each command: the same DSO key's drill on its test chain
    is no command here (the board, the devices and the chain's rules all refuse it), and no
    override of it is recorded."""
    assert grid.chain.chain_id == CHAIN
    drill = command(
        DSO, chain_id=hash32(b"the DSO's test chain"), kind=int(CommandKind.DISCONNECT), limit_w=0
    )
    with pytest.raises(CommandSignatureInvalid, match="for this chain"):
        check_dso_command(grid.chain.view(), drill, grid.chain.chain_id)
    check_dso_command(grid.chain.view(), drill, hash32(b"the DSO's test chain"))  # (valid there)
    override = RecordOverride(drill, METER.meter_id, "no outage here")
    assert isinstance(grid.refused(OWNER, override), CommandSignatureInvalid)
    unbound = SignedCommand(drill.command, DSO.sign(Domain.COMMAND, encode(drill.command)))  # (no chain)
    assert isinstance(
        grid.refused(OWNER, RecordOverride(unbound, METER.meter_id, "x")), CommandSignatureInvalid
    )
    with pytest.raises(CommandSignatureInvalid):
        CommandBoard().post(drill, grid.chain.view(), grid.chain.chain_id)
    here = command(DSO, kind=int(CommandKind.DISCONNECT), limit_w=0)
    assert CommandBoard().post(here, grid.chain.view(), grid.chain.chain_id)[1] is False


def test_overrides_are_recorded_once_and_only_by_the_owner_for_addressed_meters(grid: Grid) -> None:
    real = command(DSO)
    assert isinstance(grid.refused(OTHER, RecordOverride(real, METER.meter_id, "x")), MeterNotOwned)
    elsewhere = command(DSO, area="south")
    assert isinstance(grid.refused(OWNER, RecordOverride(elsewhere, METER.meter_id, "x")), CommandNotForMeter)
    extend(grid.chain, [grid.tx(OWNER, RecordOverride(real, METER.meter_id, "battery nearly full"))])
    record = grid.chain.view().get(OVERRIDES, METER.meter_id + hash32(encode(real)))
    assert record is not None and record.reason == "battery nearly full"
    again = RecordOverride(real, METER.meter_id, "again")
    assert isinstance(grid.refused(OWNER, again), OverrideAlreadyRecorded)


def test_an_override_of_a_malformed_command_is_refused(grid: Grid) -> None:
    for bad in (command(DSO, kind=9), command(DSO, first_interval=T0 + 50, last_interval=T0 + 49)):
        tx = grid.pending(OWNER, RecordOverride(bad, METER.meter_id, "x"))
        with pytest.raises(MalformedTransaction):
            validate_transaction(tx, grid.chain.params, grid.chain.chain_id)


def test_no_subsidy_for_a_meter_whose_owner_was_revoked(grid: Grid) -> None:
    """A proven fraud revoked the owner's identity (ledger/txs/bond.py forfeit_stake): the
    government's subsidy for its meter is refused by name."""
    chain = grid.chain
    view = chain.view()
    env = BlockEnv(chain.params, chain.chain_id, chain.height + 1, GOV.address, chain.head.header.timestamp)
    revoke_identity(view, env, OWNER.address)
    with pytest.raises(IdentityRevoked):
        apply_pay_subsidy(view, env, GOV.address, PaySubsidy(METER.meter_id, (T0,), RATE))
