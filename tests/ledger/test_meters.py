"""Authorities, flags, meter registration and revocation, and reading batches on chain:
each rule broken, asserting its named rejection."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import (
    AuthorityAlreadyRegistered,
    BlockTransactionInvalid,
    ConflictingReading,
    CountersWentBackwards,
    DuplicateReading,
    InconsistentCounters,
    InvalidCertificate,
    MalformedTransaction,
    MeterAlreadyRegistered,
    MeterBindingInvalid,
    NotAuthorized,
    ReadingGapEarly,
    ReadingOutOfOrder,
    ReadingSignatureInvalid,
    RevokedMeter,
    UnknownIdentity,
    UnknownMeter,
)
from gridnet.ledger.chain import Chain
from gridnet.ledger.registry import Payload
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.transition import ahead_checks, validate_transaction
from gridnet.ledger.txs.authority import PublishFlag, RegisterAuthority, flagged_by
from gridnet.ledger.txs.meter import (
    GAP_GRACE_INTERVALS,
    METERS,
    READINGS,
    RegisterMeter,
    RevokeMeter,
    SubmitReadings,
    reading_key,
    registration,
)
from gridnet.meter.binding import binding_check, sign_binding
from gridnet.meter.certificate import SignedCertificate, issue_certificate
from gridnet.meter.reading import Reading, SignedReading, sign_reading
from gridnet.meter.telemetry import SimulatedMeter
from gridnet.security.roles import FlagTarget, Role
from gridnet.units import interval_of, interval_start
from tests.helpers import (
    ahead_checks_answered,
    extend,
    new_chain,
    register_identity,
    rejection,
    sign,
    test_keys,
    test_params,
)
from tests.ledger.forge import forge_block
from tests.ledger.vectors import record_rejection, snapshot

MAKER, OWNER, COLLECTOR, OTHER, DSO = test_keys(5)
METER_KEY = PrivateKey.from_label("meter-1")
FOREIGN_KEY = PrivateKey.from_label("not-the-meter")
M5 = PrivateKey.from_label("m5")
INTERVAL = 1_960_000  # some interval in 2025


class World:
    """A chain with a manufacturer authority, an owner identity and one meter."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.nonces = {k.address: 0 for k in test_keys(5)}

    def tx(self, key: PrivateKey, payload: Payload) -> Transaction:
        tx = sign(self.chain, key, payload, self.nonces[key.address])
        self.nonces[key.address] += 1
        return tx

    def mine(self, *txs: Transaction) -> None:
        extend(self.chain, list(txs))

    def pending(self, key: PrivateKey, payload: Payload) -> Transaction:
        """A signed transaction with the next nonce, not counted as sent."""
        return sign(self.chain, key, payload, self.nonces[key.address])


def cert_for(meter: PrivateKey, maker: PrivateKey = MAKER) -> SignedCertificate:
    return issue_certificate(
        maker, meter.public_key, vendor="Acme", model="M1", firmware="1.0.0", serial=meter.address.hex()[:8]
    )


def make_world(path: Path, **params: object) -> World:
    w = World(new_chain(path, test_params(test_keys(5), **params)))
    w.mine(*(register_identity(w.chain, k) for k in (MAKER, OWNER, DSO)))
    for k in (MAKER, OWNER, DSO):
        w.nonces[k.address] = 1
    w.mine(
        w.tx(MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Acme Meters")),
        w.tx(DSO, RegisterAuthority(int(Role.DSO), "Grid Co")),
    )
    w.mine(
        w.tx(OWNER, registration(METER_KEY, cert_for(METER_KEY), "north", OWNER.address, w.chain.chain_id))
    )
    return w


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path / "c")


def test_meter_is_bound_to_owner_without_the_owner_holding_its_key(world: World) -> None:
    record = world.chain.view().get(METERS, METER_KEY.address)
    assert record is not None
    assert record.owner == OWNER.address and record.meter_key == METER_KEY.public_key
    assert record.manufacturer == MAKER.address and not record.revoked


def test_authority_needs_identity_once_and_known_roles(world: World) -> None:
    assert isinstance(
        rejection(world.chain, world.pending(OTHER, RegisterAuthority(1, "X"))), UnknownIdentity
    )
    again = world.pending(MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Acme again"))
    assert isinstance(rejection(world.chain, again), AuthorityAlreadyRegistered)
    bad = world.pending(MAKER, RegisterAuthority(1 << 10, "?"))
    with pytest.raises(MalformedTransaction):
        validate_transaction(bad, world.chain.params, world.chain.chain_id)


def test_certificate_rules(world: World) -> None:
    forged = msgspec.structs.replace(cert_for(PrivateKey.from_label("m2")), signature=bytes(64))
    with pytest.raises(InvalidCertificate):
        validate_transaction(
            world.pending(
                OWNER,
                registration(
                    PrivateKey.from_label("m2"), forged, "north", OWNER.address, world.chain.chain_id
                ),
            ),
            world.chain.params,
            world.chain.chain_id,
        )
    by_stranger = cert_for(PrivateKey.from_label("m3"), maker=OTHER)  # OTHER is no manufacturer
    assert isinstance(
        rejection(
            world.chain,
            world.pending(
                OWNER,
                registration(
                    PrivateKey.from_label("m3"), by_stranger, "north", OWNER.address, world.chain.chain_id
                ),
            ),
        ),
        InvalidCertificate,
    )
    dso_cert = cert_for(PrivateKey.from_label("m4"), maker=DSO)  # an authority, but not a manufacturer
    assert isinstance(
        rejection(
            world.chain,
            world.pending(
                OWNER,
                registration(
                    PrivateKey.from_label("m4"), dso_cert, "north", OWNER.address, world.chain.chain_id
                ),
            ),
        ),
        InvalidCertificate,
    )
    twice = world.pending(
        OWNER, registration(METER_KEY, cert_for(METER_KEY), "north", OWNER.address, world.chain.chain_id)
    )
    assert isinstance(rejection(world.chain, twice), MeterAlreadyRegistered)
    no_identity = world.pending(
        COLLECTOR, registration(M5, cert_for(M5), "north", COLLECTOR.address, world.chain.chain_id)
    )
    assert isinstance(rejection(world.chain, no_identity), UnknownIdentity)


def test_a_registration_names_its_sender_as_the_meters_owner(world: World) -> None:
    """The meter binds its registration to one owner: sent by anyone else it is refused."""
    for_owner = registration(M5, cert_for(M5), "north", OWNER.address, world.chain.chain_id)
    error = rejection(world.chain, world.pending(DSO, for_owner))  # (DSO: a registered identity)
    assert isinstance(error, MeterBindingInvalid)
    # An owner's own key (not the meter's) binding the meter to itself is no binding.
    forged = msgspec.structs.replace(for_owner, binding=sign_binding(DSO, world.chain.chain_id, DSO.address))
    assert isinstance(rejection(world.chain, world.pending(DSO, forged)), MeterBindingInvalid)
    # The meter's status signature is no binding either (another domain).
    as_status = msgspec.structs.replace(for_owner, binding=for_owner.status.signature)
    assert isinstance(rejection(world.chain, world.pending(OWNER, as_status)), MeterBindingInvalid)
    # The binding is checked ahead, in a node's batch with the transaction's own signature:
    # the rules find it in the signature cache (and check it themselves, and refuse a copy).
    tx = world.tx(OWNER, for_owner)
    chain_id = world.chain.chain_id
    assert ahead_checks(tx, chain_id, world.chain.view()) == [
        binding_check(M5.public_key, chain_id, OWNER.address, for_owner.binding)
    ]
    with ahead_checks_answered(tx, world.chain):
        world.mine(tx)
    record = world.chain.view().get(METERS, M5.address)
    assert record is not None and record.owner == OWNER.address


def test_a_registration_names_its_chain(world: World, tmp_path: Path) -> None:
    """A registration mined on one chain, copied to another by its very owner, is refused
    there: certificates are valid on any chain, the meter's binding names one."""
    elsewhere = make_world(tmp_path / "d", name="elsewhere")
    assert elsewhere.chain.chain_id != world.chain.chain_id
    here = registration(M5, cert_for(M5), "north", OWNER.address, world.chain.chain_id)
    world.mine(world.tx(OWNER, here))
    assert isinstance(rejection(elsewhere.chain, elsewhere.pending(OWNER, here)), MeterBindingInvalid)
    pre = snapshot(elsewhere.chain)
    block = forge_block(elsewhere.chain, [elsewhere.pending(OWNER, here)])
    with pytest.raises(BlockTransactionInvalid) as info:
        elsewhere.chain.add_block(block, now=block.header.timestamp)
    assert type(info.value.error) is MeterBindingInvalid and info.value.index == 1
    record_rejection(
        "meter_registration_copied_from_another_chain",
        "the owner sends, on a second chain, the RegisterMeter its meter bound to it on the first",
        pre,
        block,
        block.header.timestamp,
        info.value,
    )
    there = registration(M5, cert_for(M5), "north", OWNER.address, elsewhere.chain.chain_id)
    assert isinstance(rejection(world.chain, world.pending(OWNER, there)), MeterBindingInvalid)
    elsewhere.mine(elsewhere.tx(OWNER, there))
    record = elsewhere.chain.view().get(METERS, M5.address)
    assert record is not None and record.owner == OWNER.address


def test_a_registration_copied_out_of_the_mempool_is_refused_and_its_owner_registers(world: World) -> None:
    """The front-running attack: the owner's registration is pending; another identity copies
    its payload and offers a higher fee. The copy is refused; the
    owner's own transaction is then mined and the chain records the owner."""
    victim = world.pending(
        OWNER, registration(M5, cert_for(M5), "north", OWNER.address, world.chain.chain_id)
    )
    copied = victim.payload
    assert isinstance(copied, RegisterMeter)
    copy = sign(world.chain, DSO, copied, world.nonces[DSO.address], fee=10 * victim.fee)
    assert isinstance(rejection(world.chain, copy), MeterBindingInvalid)
    assert world.chain.view().get(METERS, M5.address) is None
    world.mine(victim)
    record = world.chain.view().get(METERS, M5.address)
    assert record is not None and record.owner == OWNER.address
    # Copied again once mined: still not the copier's (the binding is checked first).
    assert isinstance(rejection(world.chain, copy), MeterBindingInvalid)


def test_a_meter_area_the_chain_takes_is_any_1_to_32_characters(world: World) -> None:
    """The plain-name rule of areas (docs/protocol.md section 11) is the tools' and the order
    book's, not a validity rule of RegisterMeter: chains written before it keep verifying."""
    validate_transaction(
        world.pending(
            OWNER, registration(M5, cert_for(M5), "north street", OWNER.address, world.chain.chain_id)
        ),
        world.chain.params,
        world.chain.chain_id,
    )


def readings(
    meter: SimulatedMeter, energy: list[tuple[int, int]], start: int = INTERVAL
) -> list[SignedReading]:
    return [meter.read(start + i, exp, imp) for i, (exp, imp) in enumerate(energy)]


def test_a_batch_of_readings_is_recorded(world: World) -> None:
    meter = SimulatedMeter(METER_KEY)
    batch = readings(meter, [(500, 0), (700, 20), (0, 300)])
    world.mine(world.tx(COLLECTOR, SubmitReadings(tuple(batch))))
    view = world.chain.view()
    rec = view.get(READINGS, reading_key(METER_KEY.address, INTERVAL + 1))
    assert rec is not None and (rec.exported_wh, rec.imported_wh) == (700, 20)
    meter_rec = view.get(METERS, METER_KEY.address)
    assert meter_rec is not None and meter_rec.last_interval == INTERVAL + 2
    assert meter_rec.last_total_exported_wh == 1200


def submit_rejection(world: World, *signed: SignedReading) -> Exception:
    return rejection(world.chain, world.pending(COLLECTOR, SubmitReadings(tuple(signed))))


def test_reading_with_a_foreign_key(world: World) -> None:
    r = Reading(METER_KEY.address, INTERVAL, 100, 0, 100, 0, "1.0.0")
    assert isinstance(submit_rejection(world, sign_reading(FOREIGN_KEY, r)), ReadingSignatureInvalid)


def test_reading_replayed_for_another_interval(world: World) -> None:
    signed = SimulatedMeter(METER_KEY).read(INTERVAL, 400, 0)
    moved = msgspec.structs.replace(
        signed, reading=msgspec.structs.replace(signed.reading, interval=INTERVAL + 5)
    )
    assert isinstance(submit_rejection(world, moved), ReadingSignatureInvalid)


def test_reading_from_an_unregistered_meter(world: World) -> None:
    signed = SimulatedMeter(PrivateKey.from_label("unregistered")).read(INTERVAL, 1, 0)
    assert isinstance(submit_rejection(world, signed), UnknownMeter)


def test_revoked_meter_is_refused_and_only_its_maker_revokes(world: World) -> None:
    not_maker = world.pending(DSO, RevokeMeter(METER_KEY.address))
    assert isinstance(rejection(world.chain, not_maker), NotAuthorized)
    world.mine(world.tx(MAKER, RevokeMeter(METER_KEY.address)))
    assert isinstance(submit_rejection(world, SimulatedMeter(METER_KEY).read(INTERVAL, 1, 0)), RevokedMeter)


def test_second_reading_for_an_interval(world: World) -> None:
    meter = SimulatedMeter(METER_KEY)
    first = meter.read(INTERVAL, 300, 0)
    world.mine(world.tx(COLLECTOR, SubmitReadings((first,))))
    assert isinstance(submit_rejection(world, first), DuplicateReading)
    other = sign_reading(METER_KEY, msgspec.structs.replace(first.reading, exported_wh=299))
    assert isinstance(submit_rejection(world, other), ConflictingReading)


def test_reading_out_of_order(world: World) -> None:
    meter = SimulatedMeter(METER_KEY)
    world.mine(world.tx(COLLECTOR, SubmitReadings((meter.read(INTERVAL + 3, 10, 0),))))
    assert isinstance(submit_rejection(world, meter.read(INTERVAL + 1, 10, 0)), ReadingOutOfOrder)


def test_a_reading_copied_out_of_a_pending_batch_loses_no_reading(world: World) -> None:
    """Anyone may submit a meter's signed readings. A reading copied out of a collector's
    pending batch and mined first had the batch refused as a whole (DuplicateReading), and one
    copied from its end made its earlier readings out of order: lost for good, so a seller was
    never paid for energy it delivered. Now the reading already recorded is passed over in the
    batch, and one that leaves an interval without a reading waits until that interval has
    been over for GAP_GRACE_INTERVALS."""
    meter = SimulatedMeter(METER_KEY)
    k = interval_of(world.chain.head.header.timestamp) + 1
    world.mine(world.tx(COLLECTOR, SubmitReadings((meter.read(k - 1, 10, 0),))))
    batch = (meter.read(k, 20, 0), meter.read(k + 1, 30, 0), meter.read(k + 2, 40, 0))
    last_copied = world.pending(OTHER, SubmitReadings((batch[2],)))
    early = interval_start(k + 1 + GAP_GRACE_INTERVALS) - 1
    error = rejection(world.chain, last_copied, early)
    assert isinstance(error, ReadingGapEarly) and f"leaves interval {k} without a reading" in str(error)
    extend(world.chain, [world.tx(OTHER, SubmitReadings((batch[0],)))], timestamp=early)
    extend(world.chain, [world.tx(COLLECTOR, SubmitReadings(batch))], timestamp=early + 1_000)
    view = world.chain.view()
    assert [view.get(READINGS, reading_key(METER_KEY.address, k + i)) is not None for i in range(3)] == [
        True,
        True,
        True,
    ]
    assert isinstance(submit_rejection(world, *batch), DuplicateReading)  # (nothing new in it)


def test_a_reading_across_a_gap_is_taken_once_the_missing_one_is_late(world: World) -> None:
    meter = SimulatedMeter(METER_KEY)
    k = interval_of(world.chain.head.header.timestamp) + 1
    world.mine(world.tx(COLLECTOR, SubmitReadings((meter.read(k - 1, 10, 0),))))
    meter.read(k, 20, 0)  # (never submitted: the meter was offline, or it was withheld)
    across = world.tx(COLLECTOR, SubmitReadings((meter.read(k + 1, 30, 0),)))
    extend(world.chain, [across], timestamp=interval_start(k + 1 + GAP_GRACE_INTERVALS))
    meter_rec = world.chain.view().get(METERS, METER_KEY.address)
    assert meter_rec is not None and meter_rec.last_interval == k + 1


def test_readings_in_order_leave_the_block_time_unread(world: World) -> None:
    """Only a reading across a gap asks the block's time: a template of readings in order is
    re-stamped rather than built again (a miner's block every few seconds holds one), which
    the time read for every batch had stopped."""
    meter = SimulatedMeter(METER_KEY)
    k = interval_of(world.chain.head.header.timestamp) + 1
    world.mine(world.tx(COLLECTOR, SubmitReadings((meter.read(k - 1, 10, 0),))))
    at = interval_start(k + 1)
    for batch, reads_time in (((meter.read(k, 1, 0),), False), ((meter.read(k + 1, 1, 0),), True)):
        tx = validate_transaction(
            world.pending(COLLECTOR, SubmitReadings(batch)), world.chain.params, world.chain.chain_id
        )
        template = world.chain.build_block(OTHER.address, [tx], now=at, timestamp=at)
        assert template.timestamp_read is reads_time  # (the second leaves interval k without one)
        assert not template.included if reads_time else template.included


def test_counters_going_backwards_or_not_covering_the_interval(world: World) -> None:
    meter = SimulatedMeter(METER_KEY)
    world.mine(world.tx(COLLECTOR, SubmitReadings((meter.read(INTERVAL, 1000, 50),))))
    back = Reading(METER_KEY.address, INTERVAL + 1, 0, 0, 900, 50, "1.0.0")
    assert isinstance(submit_rejection(world, sign_reading(METER_KEY, back)), CountersWentBackwards)
    short = Reading(METER_KEY.address, INTERVAL + 1, 200, 0, 1100, 50, "1.0.0")
    assert isinstance(submit_rejection(world, sign_reading(METER_KEY, short)), InconsistentCounters)


def test_a_first_reading_whose_counters_hold_less_than_its_interval(world: World) -> None:
    """A meter's counters start at 0: its first reading's hold at least that interval's energy."""
    for exported, imported in ((500, 0), (0, 40)):
        short = Reading(METER_KEY.address, INTERVAL, exported, imported, 499, 39, "1.0.0")
        assert isinstance(submit_rejection(world, sign_reading(METER_KEY, short)), InconsistentCounters)
    world.mine(
        world.tx(
            COLLECTOR,
            SubmitReadings(
                (sign_reading(METER_KEY, Reading(METER_KEY.address, INTERVAL, 500, 40, 500, 40, "1.0.0")),)
            ),
        )
    )
    meter_rec = world.chain.view().get(METERS, METER_KEY.address)
    assert meter_rec is not None and meter_rec.last_total_exported_wh == 500


def test_one_bad_reading_rejects_the_whole_batch(world: World) -> None:
    meter = SimulatedMeter(METER_KEY)
    good = meter.read(INTERVAL, 10, 0)
    bad = sign_reading(FOREIGN_KEY, Reading(METER_KEY.address, INTERVAL + 1, 1, 0, 11, 0, "1.0.0"))
    assert isinstance(submit_rejection(world, good, bad), ReadingSignatureInvalid)
    assert world.chain.view().get(READINGS, reading_key(METER_KEY.address, INTERVAL)) is None


def test_flags_are_published_and_withdrawn_by_authorities_only(world: World) -> None:
    flag = PublishFlag(int(FlagTarget.METER), METER_KEY.address, "tampered seal", True)
    assert isinstance(rejection(world.chain, world.pending(OWNER, flag)), NotAuthorized)
    world.mine(world.tx(DSO, flag))
    assert flagged_by(world.chain.view(), FlagTarget.METER, METER_KEY.address) == {DSO.address}
    world.mine(world.tx(DSO, msgspec.structs.replace(flag, active=False)))
    assert flagged_by(world.chain.view(), FlagTarget.METER, METER_KEY.address) == frozenset()
