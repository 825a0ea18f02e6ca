"""What one chain's participants sign cannot be replayed on another chain (the red team's
attacks): a meter's older status (signed before an update) rolls no chain's view of the meter
back, a DSO's command for one chain is no command on another, and a market order for one
chain's market is refused by another's order book and hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridnet.crypto.hashing import hash32
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import (
    BlockTransactionInvalid,
    CommandSignatureInvalid,
    OrderSignatureInvalid,
    StaleMeterStatus,
)
from gridnet.grid.commands import CommandKind, DsoCommand, addresses, sign_command
from gridnet.ledger.chain import AddStatus
from gridnet.ledger.txs.advisory import PublishAdvisory, vulnerable_meter
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.firmware import PublishFirmware
from gridnet.ledger.txs.grid import OVERRIDES, PaySubsidy, RecordOverride, check_dso_command
from gridnet.ledger.txs.meter import METERS, ReportMeterStatus, SubmitReadings, registration
from gridnet.market.orders import Order, Side, admit_orders, sign_order
from gridnet.meter.status import firmware_image_hash
from gridnet.meter.telemetry import SimulatedMeter
from gridnet.node.commands import CommandBoard
from gridnet.node.messages import OrderMsg
from gridnet.node.node import Node
from gridnet.security.roles import Role
from gridnet.units import interval_of
from tests.helpers import next_block, register_identity, rejection
from tests.ledger.forge import forge_block
from tests.ledger.test_meters import (
    COLLECTOR,
    DSO,
    MAKER,
    METER_KEY,
    OTHER,
    OWNER,
    World,
    cert_for,
    make_world,
)
from tests.ledger.vectors import record_rejection, record_valid, snapshot

IMAGES = {"2.0": b"Acme M1 firmware 2.0", "3.0": b"Acme M1 firmware 3.0"}


def with_releases(path: Path, **params: object) -> World:
    """``make_world``'s chain with an advisory authority (COLLECTOR), a government (OTHER)
    and Acme's releases 2.0 and 3.0 of the M1."""
    w = make_world(path, advisory_authorities=(COLLECTOR.address,), **params)
    w.mine(
        w.tx(COLLECTOR, register_identity(w.chain, COLLECTOR).payload),
        w.tx(OTHER, register_identity(w.chain, OTHER).payload),
    )
    w.mine(
        w.tx(COLLECTOR, RegisterAuthority(int(Role.ADVISORY), "CERT")),
        w.tx(OTHER, RegisterAuthority(int(Role.GOVERNMENT), "Ministry")),
        *(
            w.tx(MAKER, PublishFirmware("Acme", "M1", version, firmware_image_hash(image)))
            for version, image in IMAGES.items()
        ),
    )
    return w


def test_a_status_signed_before_an_update_rolls_no_chain_back(tmp_path: Path) -> None:
    """The meter's status number is its own over its life: registered on chain B after two
    updates (on chain A), it registers at its number (2), so the status it signed for 2.0
    (number 1, sent to A) is stale on B: a stranger's replay of it is refused, and the meter
    stays usable (not VulnerableMeter under the advisory against 2.0)."""
    a, b = with_releases(tmp_path / "A"), with_releases(tmp_path / "B", max_dispute_window=1)
    assert a.chain.chain_id != b.chain.chain_id
    key = PrivateKey.from_label("cross-chain-meter")
    meter = SimulatedMeter(key, "1.0.0", vendor="Acme", model="M1")
    a.mine(
        a.tx(
            OWNER, registration(key, cert_for(key), "north", OWNER.address, a.chain.chain_id, meter.status())
        )
    )
    old = meter.install("2.0", IMAGES["2.0"])
    a.mine(a.tx(OWNER, ReportMeterStatus(old)))
    current = meter.install("3.0", IMAGES["3.0"])
    a.mine(a.tx(OWNER, ReportMeterStatus(current)))
    on_a = a.chain.view().get(METERS, key.address)
    assert on_a is not None and (on_a.firmware, on_a.status_seq) == ("3.0", 2)

    # On B the owner registers the meter as it is now: 3.0, its status number 2.
    now = meter.status()
    assert now.status.seq == 2 and now.status.firmware == "3.0"
    pre = snapshot(b.chain)
    block = next_block(
        b.chain,
        [b.tx(OWNER, registration(key, cert_for(key), "north", OWNER.address, b.chain.chain_id, now))],
    )
    assert b.chain.add_block(block, now=block.header.timestamp).status is AddStatus.EXTENDED
    record_valid(
        "meter_registered_at_its_own_status_number",
        "a meter updated twice elsewhere registers with its current status (number 2, release 3.0)",
        pre,
        block,
        block.header.timestamp,
        b.chain,
    )
    b.mine(b.tx(COLLECTOR, PublishAdvisory("GN-1", "Acme", "M1", ("2.0",), 4, "3.0", True)))
    on_b = b.chain.view().get(METERS, key.address)
    assert on_b is not None and (on_b.firmware, on_b.status_seq) == ("3.0", 2)

    # A stranger copies the status of 2.0 (signed while on chain A) onto chain B: stale.
    assert isinstance(rejection(b.chain, b.pending(DSO, ReportMeterStatus(old))), StaleMeterStatus)
    assert isinstance(rejection(b.chain, b.pending(DSO, ReportMeterStatus(current))), StaleMeterStatus)
    pre = snapshot(b.chain)
    block = forge_block(b.chain, [b.pending(DSO, ReportMeterStatus(old))])
    with pytest.raises(BlockTransactionInvalid) as info:
        b.chain.add_block(block, now=block.header.timestamp)
    assert type(info.value.error) is StaleMeterStatus and info.value.index == 1
    record_rejection(
        "meter_status_before_its_registration_replayed",
        "a stranger sends the status a meter signed (release 2.0, number 1) before it registered "
        "at number 2: stale",
        pre,
        block,
        block.header.timestamp,
        info.value,
    )
    assert vulnerable_meter(b.chain.view(), b.chain.params, key.address) is None
    # The meter keeps earning: its reading is subsidised.
    interval = interval_of(b.chain.head.header.timestamp) - 1
    b.mine(b.tx(DSO, SubmitReadings((meter.read(interval, 500, 0),))))
    b.mine(b.tx(OTHER, PaySubsidy(key.address, (interval,), 100)))
    # And on A, where it was updated in turn, its older status is stale too.
    assert isinstance(rejection(a.chain, a.pending(DSO, ReportMeterStatus(old))), StaleMeterStatus)


def test_a_dso_command_for_one_chain_is_no_command_on_another(tmp_path: Path) -> None:
    """The same DSO key is an authority on two chains (a test chain and the production chain):
    the drill it signed for chain A is refused on chain B by the chain's rule, the command
    board and a device's check, and no override of it is recorded on B."""
    a, b = make_world(tmp_path / "A"), make_world(tmp_path / "B", max_dispute_window=1)
    assert a.chain.chain_id != b.chain.chain_id
    command = DsoCommand(DSO.public_key, "north", (), int(CommandKind.DISCONNECT), 0, 1_960_000, 3_000_000, 1)
    drill = sign_command(DSO, command, a.chain.chain_id)
    assert check_dso_command(a.chain.view(), drill, a.chain.chain_id) == DSO.address
    assert addresses(drill.command, METER_KEY.address, "north")
    with pytest.raises(CommandSignatureInvalid):
        check_dso_command(b.chain.view(), drill, b.chain.chain_id)  # (a device of B checks this)
    board = CommandBoard()
    with pytest.raises(CommandSignatureInvalid):
        board.post(drill, b.chain.view(), b.chain.chain_id)
    assert board.since("north", 0) == ([], 0)
    override = RecordOverride(drill, METER_KEY.address, "no outage here")
    assert isinstance(rejection(b.chain, b.pending(OWNER, override)), CommandSignatureInvalid)
    pre = snapshot(b.chain)
    block = forge_block(b.chain, [b.pending(OWNER, override)])
    with pytest.raises(BlockTransactionInvalid) as info:
        b.chain.add_block(block, now=block.header.timestamp)
    assert type(info.value.error) is CommandSignatureInvalid and info.value.index == 1
    record_rejection(
        "dso_command_override_signed_for_another_chain",
        "the owner records its override of a DSO command the same DSO key signed for another chain",
        pre,
        block,
        block.header.timestamp,
        info.value,
    )
    assert b.chain.view().get(OVERRIDES, METER_KEY.address + hash32(encode(drill))) is None
    # On chain A, where it was signed, the override is recorded.
    a.mine(a.tx(OWNER, override))
    assert a.chain.view().get(OVERRIDES, METER_KEY.address + hash32(encode(drill))) is not None


def test_an_order_for_one_chains_market_is_refused_by_anothers(tmp_path: Path) -> None:
    """An order signed for chain A's market, replayed into chain B's (a node's order book, by
    a user or a peer, or a hub's book), is refused: it cannot become a contract on B."""
    a, b = make_world(tmp_path / "A"), make_world(tmp_path / "B", max_dispute_window=1)
    now = b.chain.head.header.timestamp
    interval = interval_of(now) + 2
    offer = Order(
        Side.OFFER, OWNER.address, OWNER.public_key, METER_KEY.address, "north", interval, 500, 9, interval, 0
    )
    for_a = sign_order(OWNER, offer, a.chain.chain_id)
    node = Node("b", b.chain)
    with pytest.raises(OrderSignatureInvalid):
        node.post_order(for_a, now)
    node.add_peer("p")
    assert node.handle("p", OrderMsg(for_a), now) == []
    assert len(node.book) == 0 and node.stats.peer_faults == {"p": 1}
    for_b = sign_order(OWNER, offer, b.chain.chain_id)
    node.post_order(for_b, now)
    assert len(node.book) == 1
    # A hub clearing chain B's book leaves the foreign order out and clears the rest.
    kept, refused = admit_orders([for_a, for_b], now_interval=interval - 1, chain_id=b.chain.chain_id)
    assert [v.order for v in kept] == [offer] and [type(e) for e in refused] == [OrderSignatureInvalid]
