"""Names as the ledger allows them (1 to 64 characters, '/' and dots included) through a real
node's API and the ``--node`` readers: a controller, bank, consortium or hotspot named "a/b"
was out of reach (the client sent a%2Fb, decoded before routing: 404), and a name of dots
could be taken for a step in the path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.helios import RegisterController
from gridnet.ledger.txs.vehicle import RegisterHotspot
from gridnet.node.client import NodeClient, path_segment
from gridnet.node.devnet import DevNode, free_port
from gridnet.security.roles import Role
from tests.functional.test_cli import gridnet, ok, one_line_error
from tests.helpers import register_identity, wait_for
from tests.ledger.test_aggregator import consortium_act
from tests.ledger.test_credit import bank_act
from tests.ledger.test_helios import COLLECTOR, MAKER, MEMBERS, OWNER, START, two_meters

NAMES = ["a/b", ".", "..", "x/../y", "50% off?", "x", "x\n", "a\nb", "\n"]
"""("x\n" beside "x": Starlette's routes matched "/credits/x%0A" as "/credits/x", and "a\nb"
as no route at all.)"""
CEILING = 120
REGISTRY = COLLECTOR  # (a trusted vehicle registry, as in tests/ledger/test_vehicle.py)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A node process on a chain holding a controller, a credit bank, a consortium of
    aggregators and a hotspot under each of ``NAMES``."""
    root = tmp_path_factory.mktemp("names")
    w = two_meters(root)
    members = tuple(k.public_key for k in MEMBERS)
    w.mine(register_identity(w.chain, REGISTRY))
    w.nonces[REGISTRY.address] = 1
    w.mine(w.tx(REGISTRY, RegisterAuthority(int(Role.VEHICLE_REGISTRY), "Vehicle Registry")))
    for i, name in enumerate(NAMES):
        station = PrivateKey.from_label(f"names-station-{i}")
        w.mine(
            w.tx(OWNER, w.signed_by(RegisterController(name, members, 2, ()), MEMBERS[:2])),
            w.tx(COLLECTOR, bank_act(w, name, capital=1_000)),
            w.tx(COLLECTOR, consortium_act(w, name)),
            w.tx(REGISTRY, RegisterHotspot(name, station.public_key, members, MAKER.address, 1, 0, 0, 10)),
            interval=START + i,
        )
    w.chain.close()
    data_dir = root / "c"
    write_key_file(data_dir / "node.key", PrivateKey.from_label(f"names-node-{os.getpid()}"))
    dev = DevNode("names", data_dir, free_port(), free_port())
    dev.start()
    try:
        assert wait_for(lambda: dev.head() is not None, CEILING), (data_dir / "console.log").read_text()
        yield dev
    finally:
        from gridnet.node.devnet import stop_all

        stop_all([dev])


@pytest.mark.parametrize("name", NAMES)
def test_every_named_object_is_reached_by_its_name(node: DevNode, name: str, tmp_path: Path) -> None:
    client = NodeClient(f"127.0.0.1:{node.api_port}")
    segment = path_segment(name)
    assert "/" not in segment and "." not in segment
    for path, field, registrant in (  # (each name under its registrant's key, as the node registers it)
        ("/credits/", "controller", OWNER),
        ("/credit-banks/", "bank", COLLECTOR),
        ("/aggregators/", "aggregators", COLLECTOR),
        ("/ev-hotspots/", "hotspot", REGISTRY),
    ):
        answer = client.get(f"{path}{segment}?registrant={registrant.public_key.hex()}")
        assert answer is not None and answer[field] == name, (path, name, answer)
    url = client.url
    for args, field, registrant in (
        (("chain", "credits", "--controller", name), "controller", OWNER),
        (("chain", "credit-bank", "--name", name), "bank", COLLECTOR),
        (("chain", "aggregators", "--name", name), "aggregators", COLLECTOR),
        (("chain", "ev", "--hotspot", name), "hotspot", REGISTRY),
    ):
        by = ("--registrant", registrant.public_key.hex())
        printed = json.loads(ok(gridnet(*args, *by, "--node", url, "--json", cwd=tmp_path)))
        assert printed[field] == name, (args, printed)
        if not name.isprintable():  # (the text form: one line, the name as its repr)
            line = ok(gridnet(*args, *by, "--node", url, cwd=tmp_path)).strip()
            assert "\n" not in line and line.startswith(f"{name!r}: "), (args, line)
    client.close()


def test_a_name_not_registered_is_a_404_naming_it(node: DevNode, tmp_path: Path) -> None:
    client = NodeClient(f"127.0.0.1:{node.api_port}")
    by = OWNER.public_key.hex()
    status, answer = client.call("GET", f"/credits/{path_segment('no/such')}?registrant={by}")
    assert status == 404 and "'no/such'" in answer["message"], answer
    line = one_line_error(
        gridnet("chain", "ev", "--hotspot", "no/such", "--registrant", by, "--node", client.url, cwd=tmp_path)
    )
    assert "no/such" in line, line
    two_lines = "no\nsuch"
    status, answer = client.call("GET", f"/credits/{path_segment(two_lines)}?registrant={by}")
    assert status == 404 and repr(two_lines) in answer["message"], answer
    client.close()


def test_a_transaction_naming_a_group_by_another_registrant_is_refused_by_name_and_key(
    node: DevNode, tmp_path: Path
) -> None:
    """The node refuses it by the group's id ('UnknownController: no Helios controller
    e6fc8cca...'): the command says which name and registrant it computed that id from."""
    write_key_file(tmp_path / "owner.key", OWNER)
    ours, theirs = OWNER.public_key.hex(), COLLECTOR.public_key.hex()  # (COLLECTOR's are banks)
    to = address_to_text(MAKER.address)
    for args, named in (
        (
            ("transfer-credits", "--controller", "a/b", "--registrant", theirs, "--to", to, "--credits", "1"),
            f"UnknownController: no Helios controller named 'a/b' is registered by {theirs}",
        ),
        (
            ("request-loan", "--bank", "x\n", "--registrant", ours, "--amount", "1"),
            f"UnknownCreditBank: no credit bank named 'x\\n' is registered by {ours}",
        ),
    ):
        sent = ("tx", *args, "--key", "owner.key", "--data-dir", node.data_dir)
        line = one_line_error(gridnet(*sent, cwd=tmp_path))
        assert line.startswith(f"error: {named} (id ") and "check --registrant" in line, line
        assert "gridnet chain mine" not in line  # (refused by the node, not a pending pool)
