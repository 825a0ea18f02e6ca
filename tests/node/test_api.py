"""The HTTP API against a real node over a real chain: reads, proofs, submissions, errors."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvicorn
from fastapi.testclient import TestClient

from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import hash32, pool_id
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import decode, encode
from gridnet.errors import StoreCorrupt
from gridnet.grid.commands import CommandKind, DsoCommand, SignedCommand, sign_command
from gridnet.identity import find_identity_proof
from gridnet.ledger.blocks import Block
from gridnet.ledger.genesis import chain_id_of
from gridnet.ledger.mempool import EventKind, PoolEvent
from gridnet.ledger.merkle import MerkleStep, verify_merkle_proof
from gridnet.ledger.state import IDENTITIES
from gridnet.ledger.transactions import Transaction, tx_id
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.identity import REVOKED, Revocation
from gridnet.ledger.txs.meter import (
    READINGS,
    ReadingRecord,
    SubmitReadings,
    reading_key,
    registration,
)
from gridnet.ledger.txs.relay import ChainRelayView, CreateTokenPool
from gridnet.ledger.txs.transfer import Transfer
from gridnet.market.orders import Order, Side, SignedOrder, sign_order
from gridnet.meter.certificate import issue_certificate
from gridnet.meter.telemetry import SimulatedMeter
from gridnet.node.api import create_app
from gridnet.node.api.common import LOST_PAGE_BYTES
from gridnet.node.api.server import api_config
from gridnet.node.client import LostAnswer, LostTxAnswer, NodeClient, expect, lost_since
from gridnet.node.commands import MAX_PAGE, CommandBoard
from gridnet.node.messages import OrderMsg, TxsMsg
from gridnet.node.node import Node, Outgoing
from gridnet.node.relay_peer import RelayPeer
from gridnet.relay.datagram import POOL_EXPIRY_MARGIN, originate
from gridnet.relay.tokens import HashChain
from gridnet.security.roles import Role
from gridnet.sim.backends import lost_event
from gridnet.units import interval_of
from tests.helpers import (
    GENESIS_TIME,
    Actors,
    extend,
    new_chain,
    register_identity,
    sign,
    store_locked,
    test_keys,
    test_params,
    wait_for,
)

MAKER, OWNER, ALICE, BOB = test_keys(4)
CHAIN = chain_id_of(test_params([MAKER, OWNER, ALICE, BOB]))
"""The chain of the node ``api`` serves."""
METER_KEY = PrivateKey.from_label("api-meter")
READING_AT = 1_960_000
HASHES = HashChain(b"api-pool" * 4, 100)
POOL = pool_id(ALICE.address, HASHES.final)
NOW = GENESIS_TIME + 60_000
LOCAL = "127.0.0.1"


def text(key: PrivateKey) -> str:
    return address_to_text(key.address)


@dataclass
class Api:
    node: Node
    client: TestClient
    sent: list[list[Outgoing]]
    transfers: list[Transaction]
    """ALICE's three transfers to BOB, in block 2."""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    chain = new_chain(tmp_path / "node", test_params([MAKER, OWNER, ALICE, BOB]))
    actors = Actors(chain, [MAKER, OWNER, ALICE, BOB])
    extend(chain, [register_identity(chain, MAKER), register_identity(chain, OWNER)])
    actors.nonce[MAKER.address] = actors.nonce[OWNER.address] = 1
    transfers = [actors.tx(ALICE, Transfer(BOB.address, 1_000 + i)) for i in range(3)]
    extend(chain, [actors.tx(MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Acme")), *transfers])
    cert = issue_certificate(
        MAKER, METER_KEY.public_key, vendor="Acme", model="M1", firmware="1.0.0", serial="7"
    )
    extend(
        chain,
        [
            actors.tx(OWNER, registration(METER_KEY, cert, "north", OWNER.address, chain.chain_id)),
            actors.tx(ALICE, CreateTokenPool(HASHES.final, HASHES.length, 100_000, expiry_height=50)),
        ],
    )
    meter = SimulatedMeter(METER_KEY)
    batch = [meter.read(READING_AT + i, 500 + i, 10) for i in (0, 1, 3)]  # one interval missing
    extend(chain, [actors.tx(BOB, SubmitReadings(tuple(batch)))])
    node = Node("n", chain)
    node.add_peer("peer-1")
    sent: list[list[Outgoing]] = []
    app = create_app(node, clock=lambda: NOW, broadcast=sent.append)
    with TestClient(app) as client:
        yield Api(node, client, sent, transfers)
    chain.close()


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message"} and body["code"] == code, body
    assert body["message"] and "\n" not in body["message"]
    return body


# --- chain ---------------------------------------------------------------------------------


def test_a_block_the_store_cannot_read_back_is_the_nodes_500_not_the_clients_400(api: Api) -> None:
    chain = api.node.chain
    with chain.store.db:
        chain.store.db.execute("UPDATE blocks SET txs=? WHERE hash=?", (b"\x91\xa1x", chain.main[2].hash))
    with pytest.raises(StoreCorrupt):
        chain.block_at(2)
    body = assert_error(api.client.get("/blocks/2"), 500, "StoreCorrupt")
    assert "the store is damaged" in body["message"] and "gridnet chain verify" in body["message"]


def test_head(api: Api) -> None:
    chain = api.node.chain
    body = api.client.get("/head").json()
    assert body["height"] == 4 and body["hash"] == chain.head.hash.hex()
    assert body["total_work"] == str(chain.head.total_work)
    assert body["timestamp"] == chain.head.header.timestamp
    assert body["chain_id"] == chain.chain_id.hex()
    assert (body["mempool_size"], body["peers"], body["peer_names"]) == (0, 1, ["peer-1"])


def test_block_by_height_and_by_hash(api: Api) -> None:
    chain = api.node.chain
    by_height = api.client.get("/blocks/2").json()
    by_hash = api.client.get(f"/blocks/{chain.main[2].hash.hex()}").json()
    assert by_height == by_hash
    assert by_height["hash"] == chain.main[2].hash.hex() and by_height["main"]
    assert by_height["confirmations"] == 3 and by_height["miner"].startswith("gn")
    assert [t["type"] for t in by_height["transactions"]] == [
        "Coinbase",
        "RegisterAuthority",
        *["Transfer"] * 3,
    ]
    assert "hex" not in by_height["transactions"][0]
    full = api.client.get("/blocks/2", params={"full": "true"}).json()
    block = chain.block_at(2)
    assert block is not None
    assert [decode(bytes.fromhex(t["hex"]), Transaction) for t in full["transactions"]] == list(block.txs)
    assert full["size"] == len(encode(block))


def test_unknown_and_garbage_block_refs(api: Api) -> None:
    assert_error(api.client.get("/blocks/99"), 404, "NotFound")
    # Leading zeros add nothing: 63 of them are height 0 (was 400 "too large"), 2^63 is too large.
    genesis = api.client.get("/blocks/0").json()
    for ref in ("0" * 63, "00", "0" * 44 + "2"):
        answer = api.client.get(f"/blocks/{ref}")
        assert answer.status_code == 200, (ref, answer.text)
        assert answer.json()["height"] == (2 if ref.endswith("2") else 0)
    assert api.client.get(f"/blocks/{'0' * 63}").json() == genesis
    body = assert_error(api.client.get(f"/blocks/{'0' * 40}{2**63}"), 400, "BadRequest")
    assert "too large" in body["message"]
    assert "too large" not in assert_error(api.client.get(f"/blocks/{'0' * 62}9"), 404, "NotFound")["message"]
    assert_error(api.client.get(f"/blocks/{'ab' * 32}"), 404, "NotFound")
    assert_error(api.client.get("/blocks/latest"), 400, "BadRequest")
    assert_error(api.client.get(f"/blocks/{'zz' * 32}"), 400, "BadRequest")
    assert_error(api.client.get("/blocks/2", params={"full": "maybe"}), 400, "BadRequest")


def test_transaction_by_id_with_a_proof_a_light_client_checks(api: Api) -> None:
    block = api.node.chain.block_at(2)
    assert block is not None
    for pos, tx in enumerate(block.txs):
        body = api.client.get(f"/transactions/{tx_id(tx).hex()}").json()
        assert body["status"] == "confirmed" and body["position"] == pos
        assert body["block"] == {
            "height": 2,
            "hash": api.node.chain.main[2].hash.hex(),
            "tx_root": block.header.tx_root.hex(),
        }
        assert decode(bytes.fromhex(body["transaction"]["hex"]), Transaction) == tx
        proof = [MerkleStep(bytes.fromhex(s["sibling"]), s["sibling_is_left"]) for s in body["proof"]]
        assert len(proof) == (3 if pos < 4 else 1)  # five leaves: the fifth is promoted twice
        assert verify_merkle_proof(block.header.tx_root, tx_id(tx), proof)
    transfer = api.client.get(f"/transactions/{tx_id(api.transfers[0]).hex()}").json()["transaction"]
    assert transfer["sender"] == text(ALICE) and transfer["payload"] == {"to": text(BOB), "amount": 1_000}
    assert_error(api.client.get(f"/transactions/{'00' * 32}"), 404, "NotFound")
    assert_error(api.client.get("/transactions/abc"), 400, "BadRequest")


def test_the_tx_index_follows_a_reorg(api: Api, tmp_path: Path) -> None:
    chain = api.node.chain
    moved = tx_id(api.transfers[0])
    assert api.client.get(f"/transactions/{moved.hex()}").status_code == 200  # indexes heights 0..4
    rival = new_chain(tmp_path / "rival", chain.params)
    for _ in range(6):
        block = extend(rival, [], miner=BOB)
        chain.add_block(block, now=block.header.timestamp)
    assert chain.head.hash == rival.head.hash
    assert_error(api.client.get(f"/transactions/{moved.hex()}"), 404, "NotFound")
    top = rival.block_at(6)
    assert isinstance(top, Block)
    body = api.client.get(f"/transactions/{tx_id(top.txs[0]).hex()}").json()
    assert body["block"]["height"] == 6 and body["block"]["hash"] == rival.head.hash.hex()
    rival.close()


# --- state ---------------------------------------------------------------------------------


def test_account_and_identity(api: Api) -> None:
    body = api.client.get(f"/accounts/{text(ALICE)}").json()
    acct = api.node.chain.account(ALICE.address)
    assert (body["balance"], body["nonce"], body["pending"], body["next_nonce"]) == (acct.balance, 4, 0, 4)
    assert api.client.get(f"/accounts/{address_to_text(bytes(20))}").json()["balance"] == 0
    assert_error(api.client.get("/accounts/gnnotanaddress"), 400, "InvalidAddress")
    ident = api.client.get(f"/identities/{text(OWNER)}").json()
    assert ident["id"] == text(OWNER) and ident["record"]["registered_at"] == 1
    assert set(ident["record"]["proof"]) == {"rounds", "nonce"}
    assert_error(api.client.get(f"/identities/{text(ALICE)}"), 404, "NotFound")


def test_meter_with_its_latest_readings(api: Api) -> None:
    body = api.client.get(f"/meters/{text(METER_KEY)}").json()
    assert body["record"]["owner"] == text(OWNER) and body["record"]["area"] == "north"
    assert body["record"]["meter_key"] == METER_KEY.public_key.hex()
    assert [r["interval"] for r in body["readings"]] == [READING_AT + 3, READING_AT + 1, READING_AT]
    assert body["readings"][0]["record"]["exported_wh"] == 503
    two = api.client.get(f"/meters/{text(METER_KEY)}", params={"readings": 2}).json()
    assert len(two["readings"]) == 2
    assert_error(api.client.get(f"/meters/{text(ALICE)}"), 404, "NotFound")


def test_any_state_entry_by_table_and_key(api: Api) -> None:
    key = reading_key(METER_KEY.address, READING_AT + 1)
    body = api.client.get(f"/state/readings/{key.hex()}").json()
    assert body["table"] == "readings" and body["record"]["exported_wh"] == 501
    assert decode(bytes.fromhex(body["hex"]), ReadingRecord).exported_wh == 501
    assert api.node.chain.values[READINGS.key(key)].hex() == body["hex"]  # the very bytes committed
    assert_error(
        api.client.get(f"/state/readings/{reading_key(METER_KEY.address, 5).hex()}"), 404, "NotFound"
    )
    assert_error(api.client.get(f"/state/nonsense/{key.hex()}"), 404, "NotFound")
    assert_error(api.client.get("/state/readings/xyz"), 400, "BadRequest")
    assert_error(api.client.get(f"/state/readings/{'00' * 65}"), 400, "BadRequest")


def test_pool_contract_and_unknown_ids(api: Api) -> None:
    pool = api.client.get(f"/pools/{POOL.hex()}").json()
    assert pool["record"]["owner"] == text(ALICE) and pool["record"]["amount"] == 100_000
    assert_error(api.client.get(f"/pools/{'11' * 32}"), 404, "NotFound")
    assert_error(api.client.get(f"/contracts/{'11' * 32}"), 404, "NotFound")
    assert_error(api.client.get("/contracts/1234"), 400, "BadRequest")


# --- submissions ---------------------------------------------------------------------------


def test_submit_a_transfer_then_see_it_pending(api: Api) -> None:
    tx = sign(api.node.chain, BOB, Transfer(ALICE.address, 5_000), nonce=1)
    r = api.client.post("/transactions", json={"tx": encode(tx).hex()})
    assert r.status_code == 202, r.text
    assert r.json() == {"kind": "accepted", "txid": tx_id(tx).hex(), "rule": "", "message": "", "evicted": []}
    assert api.sent == [[("peer-1", TxsMsg((tx,)))]]
    body = api.client.get(f"/transactions/{tx_id(tx).hex()}").json()
    assert body["status"] == "pending" and "proof" not in body
    pool = api.client.get("/mempool").json()
    assert pool["size"] == 1 and pool["by_sender"] == [{"address": text(BOB), "count": 1}]
    assert pool["lowest_fee_rate"] == pool["highest_fee_rate"] > 0
    assert api.client.get(f"/accounts/{text(BOB)}").json()["next_nonce"] == 2
    assert_error(api.client.post("/transactions", json={"tx": encode(tx).hex()}), 422, "AlreadyKnown")


def test_transactions_the_pool_let_go_are_listed_with_their_bytes(api: Api) -> None:
    first = sign(api.node.chain, BOB, Transfer(ALICE.address, 5_000), nonce=1)
    dearer = sign(api.node.chain, BOB, Transfer(ALICE.address, 6_000), nonce=1, fee=3 * first.fee)
    assert api.client.get("/mempool/lost").json() == {
        "lost": [],
        "next_after": 0,
        "more": False,
        "first_kept": 1,
    }
    for tx in (first, dearer):
        assert api.client.post("/transactions", json={"tx": encode(tx).hex()}).status_code == 202
    body = api.client.get("/mempool/lost").json()
    assert body["next_after"] == 1 and body["more"] is False and body["first_kept"] == 1
    [entry] = body["lost"]
    assert entry["seq"] == 1 and entry["kind"] == "evicted" and entry["rule"] == "Replaced"
    assert entry["txid"] == tx_id(first).hex() and entry["sender"] == text(BOB)
    event = lost_event(msgspec.convert(entry, LostTxAnswer))  # what a scenario's driver reads
    assert event.tx == first and event.sender == BOB.address and event.rule == "Replaced"
    assert api.client.get("/mempool/lost?after=1").json() == {
        "lost": [],
        "next_after": 1,
        "more": False,
        "first_kept": 1,
    }
    assert_error(api.client.get("/mempool/lost?after=-1"), 400, "BadRequest")


def test_a_replacement_the_store_cannot_write_leaves_the_pool_as_it_was(api: Api) -> None:
    """A replacement sent while the store cannot be written is answered 503 and not taken,
    and the transaction it replaced is still pending, not lost: withdrawn alone, it left a
    missing nonce before BOB's later ones (his next was refused, 422 ``NonceGap``, and a
    replacement of his last met the missing one: ``KeyError``, a 500)."""
    chain = api.node.chain

    def post(tx: Transaction) -> Any:
        return api.client.post("/transactions", json={"tx": encode(tx).hex()})

    pending = [sign(chain, BOB, Transfer(ALICE.address, 5_000), nonce) for nonce in (1, 2, 3)]
    for tx in pending:
        assert post(tx).status_code == 202
    dearer = sign(chain, BOB, Transfer(ALICE.address, 6_000), 2, fee=3 * pending[1].fee)
    with store_locked(chain):
        assert_error(post(dearer), 503, "StoreUnavailable")
    pool = api.client.get("/mempool").json()
    assert pool["size"] == 3 and pool["by_sender"] == [{"address": text(BOB), "count": 3}]
    assert api.client.get(f"/transactions/{tx_id(pending[1]).hex()}").json()["status"] == "pending"
    assert api.client.get(f"/transactions/{tx_id(dearer).hex()}").status_code == 404
    assert api.client.get("/mempool/lost").json()["lost"] == []
    assert api.client.get(f"/accounts/{text(BOB)}").json()["next_nonce"] == 4
    nxt = sign(chain, BOB, Transfer(ALICE.address, 5_000), 4)
    assert post(nxt).status_code == 202
    last = sign(chain, BOB, Transfer(ALICE.address, 7_000), 4, fee=3 * nxt.fee)
    assert post(last).json()["evicted"] == [tx_id(nxt).hex()]
    assert post(dearer).json()["evicted"] == [tx_id(pending[1]).hex()]  # sent again: taken now


def lose_large_transactions(api: Api, readings: list[int]) -> list[Transaction]:
    """BOB's transactions of that many (copied) readings, evicted: entered in the node's log of
    lost transactions as its pool enters what it lets go (a hostile peer may have large ones
    evicted at will); a reading takes about 110 bytes."""
    reading = SimulatedMeter(METER_KEY).read(READING_AT + 10, 600, 10)
    txs = [sign(api.node.chain, BOB, SubmitReadings((reading,) * n), nonce=9) for n in readings]
    for tx in txs:
        api.node.lost.add(PoolEvent(EventKind.EVICTED, tx_id(tx), BOB.address, "MempoolFull", "full", tx))
    return txs


def test_pages_of_lost_transactions_are_bounded_in_bytes_and_follow_on(api: Api) -> None:
    """An answer carries at most ``LOST_PAGE_BYTES`` of transactions (the log keeps 16 MiB:
    33 MB of JSON each, built in memory, was one unauthenticated request away), but always
    one, however large; following ``next_after`` until ``more`` is false reads each once."""
    readings = [2_000] * 12 + [14_000] + [2_000] * 4  # ~220 kB each, and one of ~1.5 MB
    txs = lose_large_transactions(api, readings)
    assert sum(len(encode(tx)) for tx in txs) > 4 * LOST_PAGE_BYTES
    assert len(encode(txs[12])) > LOST_PAGE_BYTES
    pages: list[list[dict[str, Any]]] = []
    after, more = 0, True
    while more:
        body = api.client.get(f"/mempool/lost?after={after}").json()
        assert body["lost"] and len(pages) < len(txs)
        pages.append(body["lost"])
        after, more = body["next_after"], body["more"]
    for page in pages:
        assert len(page) == 1 or sum(len(e["hex"]) // 2 for e in page) <= LOST_PAGE_BYTES
    assert [len(page) for page in pages if len(page) == 1] == [1]  # the large one, alone
    assert [e["seq"] for page in pages for e in page] == list(range(1, len(txs) + 1))
    assert [e["hex"] for page in pages for e in page] == [encode(tx).hex() for tx in txs]
    assert after == len(txs) and api.client.get(f"/mempool/lost?after={after}").json()["lost"] == []
    limited = api.client.get("/mempool/lost?after=0&limit=2").json()  # (the count bound still holds)
    assert [e["seq"] for e in limited["lost"]] == [1, 2] and limited["more"] is True


def test_the_client_reads_every_page_of_lost_transactions_over_http(api: Api) -> None:
    """``lost_since`` (``gridnet tx --wait``, the simulator's HTTP backend) against the API
    served on 127.0.0.1: every entry once, across pages bounded in bytes."""
    txs = lose_large_transactions(api, [4_000] * 12)  # ~440 kB each: 2 a page
    app = create_app(api.node, clock=lambda: NOW, broadcast=api.sent.append)
    with served(app) as url:
        client = NodeClient(url, timeout_s=60)
        first = expect(client.get("/mempool/lost"), LostAnswer, "GET /mempool/lost")
        assert len(first.lost) < len(txs) and first.more
        entries, after = lost_since(client, 0)
        assert [e.seq for e in entries] == list(range(1, len(txs) + 1)) and after == len(txs)
        assert [e.hex for e in entries] == [encode(tx).hex() for tx in txs]
        assert lost_since(client, after) == ([], after)
        client.close()


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` served as a node serves its API (``api_config``) on 127.0.0.1: its HOST:PORT."""
    sock = socket.socket()
    sock.bind((LOCAL, 0))
    sock.listen()
    server = uvicorn.Server(api_config(app, bound=LOCAL))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started, 60)
        yield f"{LOCAL}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


def test_integer_query_parameters_out_of_range_are_400_naming_them(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """Every integer a query takes is a whole number below 2^63: ``/mempool/lost?after=2^63``
    was a 500 and a traceback in the node's log (``islice`` refuses a start past
    ``sys.maxsize``), for anyone, with no token."""
    interval = interval_of(NOW) + 2
    for path, name in (
        ("/mempool/lost?after=", "after"),
        ("/mempool/lost?limit=", "limit"),
        ("/mempool?limit=", "limit"),
        ("/orders/north/{interval}?offset=", "offset"),
        ("/orders/north/{interval}?limit=", "limit"),
        ("/commands/north?after=", "after"),
        (f"/meters/{address_to_text(METER_KEY.address)}?readings=", "readings"),
    ):
        for value in (2**63, 9_999_999_999_999_999_999, 10**40, -1):
            with caplog.at_level("DEBUG"):
                response = api.client.get(path.format(interval=interval) + str(value))
            body = assert_error(response, 400, "BadRequest")
            assert body["message"].startswith(f"query.{name}: "), (path, value, body)
    assert [r.getMessage() for r in caplog.records if r.levelname not in ("DEBUG", "INFO")] == []
    for path in ("/mempool/lost?after=", "/commands/north?after=", f"/orders/north/{interval}?offset="):
        assert api.client.get(path + str(2**63 - 1)).status_code == 200, path
    assert api.client.get(f"/mempool/lost?after={2**63 - 1}").json()["lost"] == []


def test_refused_transactions_are_422_with_the_rule(api: Api) -> None:
    good = sign(api.node.chain, BOB, Transfer(ALICE.address, 5_000), nonce=1)
    forged = msgspec.structs.replace(good, signature=bytes(64))
    assert_error(api.client.post("/transactions", json={"tx": encode(forged).hex()}), 422, "BadSignature")
    gap = sign(api.node.chain, BOB, Transfer(ALICE.address, 5_000), nonce=7)
    assert_error(api.client.post("/transactions", json={"tx": encode(gap).hex()}), 422, "NonceGap")
    assert api.sent == [] and api.client.get("/mempool").json()["size"] == 0


def test_malformed_submissions_are_400(api: Api) -> None:
    assert_error(api.client.post("/transactions", json={"tx": "not hex"}), 400, "BadRequest")
    body = assert_error(api.client.post("/transactions", json={"tx": "c1c1"}), 400, "Malformed")
    assert "transaction" in body["message"]
    assert_error(api.client.post("/transactions", json={}), 400, "BadRequest")
    assert_error(
        api.client.post("/transactions", content=b"{oops", headers={"content-type": "application/json"}),
        400,
        "BadRequest",
    )
    assert_error(api.client.post("/orders", json={"order": "00"}), 400, "WrongType")


def test_errors_are_json_everywhere(api: Api) -> None:
    assert_error(api.client.get("/nowhere"), 404, "NotFound")
    # A path is matched and quoted whole, a newline too ("/head%0A" was "/head"; a 404 quoted
    # "/credits/ab" for "/credits/a%0Ab": Starlette's url.path drops newlines).
    for path, quoted in (("/head%0A", "/head\n"), ("/nowhere%0Ax", "/nowhere\nx"), ("/%0A", "/\n")):
        body = assert_error(api.client.get(path), 404, "NotFound")
        assert body["message"] == f"no such endpoint: {quoted!r}", body
    by = OWNER.public_key.hex()
    body = assert_error(api.client.get(f"/credits/a%0Ab?registrant={by}"), 404, "NotFound")
    assert repr("a\nb") in body["message"], body
    assert_error(api.client.delete("/head"), 405, "MethodNotAllowed")
    assert api.client.get("/docs").status_code == 200
    assert "/transactions/{txid}" in api.client.get("/openapi.json").json()["paths"]
    api.node.peers = None  # type: ignore[assignment]  # break the node: an unexpected error
    with TestClient(api.client.app, raise_server_exceptions=False) as client:
        body = assert_error(client.get("/head"), 500, "InternalError")
    assert "Traceback" not in body["message"]


def test_the_docs_assets_are_served_whole_and_their_errors_are_json(api: Api) -> None:
    """Starlette's static files answered a malformed ``Range`` 400 and an unsatisfiable one 416,
    in plain text (the 416 empty): the assets now ignore ``Range`` (RFC 9110 allows it) and
    answer the whole file, and what is still an error is the API's JSON."""
    css = "/docs/assets/swagger-ui.css"
    whole = api.client.get(css)
    assert whole.status_code == 200 and whole.content and "accept-ranges" not in whole.headers
    for value in (
        "bytes=abc",
        "bytes=10-5",
        "bytes=999999999-",
        "items=0-1",
        "bytes=",
        "bytes=0-10",
        "bytes=-5",
    ):
        answer = api.client.get(css, headers={"Range": value, "If-Range": whole.headers["etag"]})
        assert answer.status_code == 200 and answer.content == whole.content, (value, answer.status_code)
    assert_error(api.client.get("/docs/assets/nope.js"), 404, "NotFound")
    assert_error(api.client.post(css), 405, "MethodNotAllowed")


# --- orders --------------------------------------------------------------------------------


def order(interval: int, nonce: int = 0) -> SignedOrder:
    o = Order(
        Side.OFFER,
        OWNER.address,
        OWNER.public_key,
        METER_KEY.address,
        "north",
        interval,
        500,
        9,
        interval,
        nonce,
    )
    return sign_order(OWNER, o, CHAIN)


def test_post_and_read_dso_commands(api: Api) -> None:
    """A command is kept only when the chain vouches for its issuer (a DSO authority whose key
    signed it for this chain); devices read what is new since their last read."""
    chain = api.node.chain

    def command(
        key: PrivateKey, nonce: int, area: str = "north", chain_id: bytes = chain.chain_id
    ) -> SignedCommand:
        c = DsoCommand(key.public_key, area, (), int(CommandKind.CURTAIL_EXPORT), 1500, 10, 12, nonce)
        return sign_command(key, c, chain_id)

    def post(signed: SignedCommand) -> Any:
        return api.client.post("/commands", json={"command": encode(signed).hex()})

    assert_error(post(command(MAKER, 1)), 422, "NotAuthorized")  # a manufacturer, not a DSO
    extend(chain, [sign(chain, OWNER, RegisterAuthority(int(Role.DSO), "Grid Co"), nonce=2)])
    forged = msgspec.structs.replace(command(OWNER, 1), signature=bytes(64))
    assert_error(post(forged), 422, "CommandSignatureInvalid")
    # The same DSO key's command signed for another chain (its test chain's drill) is not kept.
    drill = command(OWNER, 1, chain_id=hash32(b"the DSO's test chain"))
    assert_error(post(drill), 422, "CommandSignatureInvalid")
    first, second, elsewhere = command(OWNER, 1), command(OWNER, 2), command(OWNER, 3, area="south")
    posted = post(first).json()
    s1 = posted["seq"]
    assert posted == {"seq": s1, "duplicate": False} and post(first).json() == {"seq": s1, "duplicate": True}
    assert post(second).json()["seq"] == s1 + 1 and post(elsewhere).json()["seq"] == s1 + 2
    everything = api.client.get("/commands/north").json()
    assert [c["seq"] for c in everything["commands"]] == [s1, s1 + 1] and everything["next_after"] == s1 + 1
    assert decode(bytes.fromhex(everything["commands"][1]["hex"]), SignedCommand) == second
    assert everything["commands"][0]["command"]["limit_w"] == 1500
    newer = api.client.get(f"/commands/north?after={s1 + 1}").json()
    assert newer == {"area": "north", "commands": [], "next_after": s1 + 1}
    assert [c["seq"] for c in api.client.get("/commands/south").json()["commands"]] == [s1 + 2]
    # An area devices could not read back (GET /commands/north%20street is 400) is not taken.
    assert_error(post(command(OWNER, 4, area="north street")), 400, "BadRequest")
    # A command naming 1,024 meters (the most one may) fits the route.
    many = tuple(PrivateKey.from_label(f"meter-{i}").address for i in range(1024))
    big = sign_command(OWNER, DsoCommand(OWNER.public_key, "north", many, 0, 1500, 10, 12, 9), chain.chain_id)
    assert post(big).status_code == 202
    # A node that restarts numbers its commands above any a device read before.
    assert CommandBoard().since("north", 0) == ([], 0)
    restarted = CommandBoard()
    restarted.post(second, api.node.chain.view(), chain.chain_id)
    assert restarted.since("north", s1 + 2)[0][0][0] > s1 + 2
    # More than a page: the oldest first, a page at a time, nothing skipped or repeated.
    board, view = CommandBoard(), api.node.chain.view()
    seqs = [board.post(command(OWNER, 10 + i), view, chain.chain_id)[0] for i in range(MAX_PAGE + 3)]
    page, after = board.since("north", 0)
    assert [s for s, _ in page] == seqs[:MAX_PAGE] and after == seqs[MAX_PAGE - 1]
    rest, last = board.since("north", after)
    assert [s for s, _ in rest] == seqs[MAX_PAGE:] and last == seqs[-1]
    assert [c.command.nonce for _, c in rest] == [10 + MAX_PAGE + i for i in range(3)]
    assert board.since("north", last) == ([], last)
    assert_error(api.client.get(f"/commands/{'x' * 40}"), 400, "BadRequest")
    assert_error(api.client.post("/commands", json={"command": "zz"}), 400, "BadRequest")


def test_post_and_read_orders(api: Api) -> None:
    interval = interval_of(NOW) + 2
    signed = order(interval)
    r = api.client.post("/orders", json={"order": encode(signed).hex()})
    assert r.status_code == 202, r.text
    assert r.json()["topic"] == f"market/north/{interval}" and not r.json()["duplicate"]
    assert api.sent == [[("peer-1", OrderMsg(signed))]]
    book = api.client.get(f"/orders/north/{interval}").json()
    assert book["topic"] == f"market/north/{interval}" and len(book["orders"]) == 1
    listed = book["orders"][0]
    assert listed["id"] == r.json()["id"] and bytes.fromhex(listed["hex"]) == encode(signed)
    assert listed["order"]["side"] == "offer" and listed["order"]["owner"] == text(OWNER)
    assert api.client.post("/orders", json={"order": encode(signed).hex()}).json()["duplicate"]
    assert api.client.get(f"/orders/north/{interval + 1}").json()["orders"] == []
    late = order(interval_of(NOW) - 1)
    assert_error(api.client.post("/orders", json={"order": encode(late).hex()}), 422, "OrderExpired")
    forged = msgspec.structs.replace(order(interval, nonce=1), signature=bytes(64))
    assert_error(
        api.client.post("/orders", json={"order": encode(forged).hex()}), 422, "OrderSignatureInvalid"
    )
    foreign = sign_order(OWNER, order(interval, nonce=2).order, hash32(b"another chain"))  # replayed here
    assert_error(
        api.client.post("/orders", json={"order": encode(foreign).hex()}), 422, "OrderSignatureInvalid"
    )
    assert_error(api.client.get(f"/orders/{'x' * 40}/{interval}"), 400, "BadRequest")
    assert_error(api.client.get(f"/orders/n%C3%B6rth/{interval}"), 400, "BadRequest")
    assert_error(api.client.get("/orders/north/soon"), 400, "BadRequest")
    # An offset past the end is an empty page; one of 2^63 or more is a 400 naming it.
    for offset in (5, 2**63 - 1):
        page = api.client.get(f"/orders/north/{interval}?offset={offset}")
        assert page.status_code == 200, page.text
        assert page.json()["orders"] == [] and page.json()["next_offset"] is None
    body = assert_error(api.client.get(f"/orders/north/{interval}?offset={10**30}"), 400, "BadRequest")
    assert "offset" in body["message"]


def test_an_order_breaking_placeorders_owner_rules_is_refused_by_name(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node takes an order only from a registered identity, not revoked, for a meter
    registered to it in the order's area (the chain's PlaceOrder rules, named as there)."""
    interval = interval_of(NOW) + 2

    def post(key: PrivateKey, meter: bytes = METER_KEY.address, area: str = "north", nonce: int = 0) -> Any:
        o = Order(Side.BID, key.address, key.public_key, meter, area, interval, 500, 9, interval, nonce)
        return api.client.post("/orders", json={"order": encode(sign_order(key, o, CHAIN)).hex()})

    free = PrivateKey.from_label("api-free-key")
    assert "must register its identity" in assert_error(post(free), 422, "UnknownIdentity")["message"]
    assert_error(post(ALICE), 422, "UnknownIdentity")  # (coin is no identity)
    assert_error(post(MAKER), 422, "MeterNotOwned")  # OWNER's meter
    assert_error(post(OWNER, meter=free.address), 422, "MeterNotOwned")  # no meter
    assert_error(post(OWNER, area="south"), 422, "WrongArea")
    view = api.node.chain.view()
    view.put(IDENTITIES, OWNER.address, None)  # (as a proven fraud does: revoke_identity)
    view.put(REVOKED, OWNER.address, Revocation(revoked_at=api.node.chain.height))
    with monkeypatch.context() as m:
        m.setattr(api.node.chain, "view", lambda: view)
        assert_error(post(OWNER), 422, "IdentityRevoked")
    assert api.sent == [] and len(api.node.book) == 0
    assert post(OWNER).status_code == 202


def test_a_datagram_relays_would_refuse_for_its_pools_expiry_is_not_sent(api: Api) -> None:
    """ALICE's pool expires at height 50, within ``POOL_EXPIRY_MARGIN`` blocks of the head:
    every relay would refuse its datagrams (``PoolExpiring``), so the node does not send one
    and says so (422): its sender learns it must pay from a new pool."""
    chain = api.node.chain
    assert chain.height + POOL_EXPIRY_MARGIN >= 50
    relay = RelayPeer(
        address_to_text(ALICE.address), ALICE, lambda: ChainRelayView.of(chain), address_to_text
    )
    app = create_app(api.node, clock=lambda: NOW, broadcast=api.sent.append, relay=relay)
    identity = find_identity_proof(ALICE.address, chain.params.identity_target_int)
    path = [(BOB.address, BOB.public_key)]
    dgram = originate(
        ALICE,
        HASHES,
        POOL,
        1,
        750_000,
        identity,
        path,
        (OWNER.address, OWNER.public_key),
        b"x",
        bytes(16),
        chain_id=chain.chain_id,
    )
    body = {"first_hop": address_to_text(BOB.address), "datagram": encode(dgram).hex()}
    with TestClient(app) as client:
        refused = assert_error(client.post("/datagrams", json=body), 422, "PoolExpiring")
    assert "new pool" in refused["message"]
    assert relay.stats.dropped == {"PoolExpiring": 1} and relay.held == [] and api.sent == []
