"""Datagrams between node processes over real TCP links: the sender's node, a relaying node
and the receiver's node in a line. Each node relays as the participant of its key; the
datagrams cross the middle node (which cannot read them), the receiver takes delivery
through its API, and its transit claim pays the middle node on chain. A replayed datagram
is dropped by its rule while the link stays up. Every process started here is stopped."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import pool_id
from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.encoding import decode, encode
from gridnet.identity import find_identity_proof
from gridnet.ledger.chain import Chain
from gridnet.ledger.state import StateView
from gridnet.ledger.transactions import Transaction, min_fee, sign_transaction
from gridnet.ledger.txs.relay import ChainRelayView, ClaimTransit, CreateTokenPool
from gridnet.node import relay_peer
from gridnet.node.client import NodeClient
from gridnet.node.devnet import LOCAL, DevNode, free_port
from gridnet.node.messages import DatagramMsg
from gridnet.node.relay_peer import RelayPeer
from gridnet.relay.claims import SignedClaim
from gridnet.relay.datagram import Datagram, originate
from gridnet.relay.hops import hop_shares
from gridnet.relay.tokens import HashChain
from tests.helpers import register_identity, test_params, wait_for

SENDER, MIDDLE, RECEIVER = (PrivateKey.from_label(f"tcp-dgram-{n}") for n in ("s", "m", "r"))
TOKENS = HashChain(os.urandom(32), 100)
POOL = pool_id(SENDER.address, TOKENS.final)
UNIT = 1_000
PAYRATE = 600_000
WAIT_S = 120.0
"""Ceiling for each condition the test waits for [s]: far above what a busy machine needs."""


def send(client: NodeClient, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    return client.call("POST", path, body)


def test_datagrams_cross_a_relaying_node_and_its_claim_pays_it(tmp_path: Path, nodes: list[DevNode]) -> None:
    params = test_params(
        [SENDER, MIDDLE, RECEIVER], block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000
    )
    setup: list[Transaction] = []
    for name, key in (("s", SENDER), ("m", MIDDLE), ("r", RECEIVER)):
        node = DevNode(name, tmp_path / name, free_port(), free_port())
        chain = Chain.create(node.data_dir, params)
        chain_id = chain.chain_id
        if key is SENDER:
            pool = CreateTokenPool(TOKENS.final, TOKENS.length, 100 * UNIT, 500)
            setup = [
                register_identity(chain, SENDER),
                sign_transaction(SENDER, chain.chain_id, pool, 1, 10_000),
            ]
        chain.close()
        write_key_file(node.data_dir / "node.key", key)
        nodes.append(node)
    sender, middle, receiver = nodes
    middle.start()
    peer = ("--peer", f"{LOCAL}:{middle.port}")
    sender.start("--mine", "--hashes-per-tick", "300", *peer)
    receiver.start(*peer)
    assert wait_for(lambda: all(n.head() is not None for n in nodes), WAIT_S)
    api = {n.name: n.client() for n in nodes}  # (each wrote its API token before answering)
    assert wait_for(lambda: api["m"].get("/head")["peers"] == 2, WAIT_S)
    for tx in setup:
        assert send(api["s"], "/transactions", {"tx": encode(tx).hex()})[0] == 202
    pool_path = f"/pools/{POOL.hex()}"
    assert wait_for(lambda: all(api[n].get(pool_path) is not None for n in api), WAIT_S)

    proof = find_identity_proof(SENDER.address, params.identity_target_int)
    first_hop = address_to_text(MIDDLE.address)
    for depth in range(1, 6):
        datagram = originate(
            SENDER,
            TOKENS,
            POOL,
            depth,
            PAYRATE,
            proof,
            [(MIDDLE.address, MIDDLE.public_key)],
            (RECEIVER.address, RECEIVER.public_key),
            f"state {depth}".encode(),
            os.urandom(16),
        )
        status, body = send(
            api["s"], "/datagrams", {"first_hop": first_hop, "datagram": encode(datagram).hex()}
        )
        assert (status, body) == (202, {"status": "sent"})
    assert wait_for(lambda: api["r"].get("/datagrams")["delivered"] == 5, WAIT_S)
    inbox = api["r"].get("/datagrams")
    assert [bytes.fromhex(d["body"]) for d in inbox["received"]] == [
        f"state {d}".encode() for d in range(1, 6)
    ]
    assert {d["originator"] for d in inbox["received"]} == {address_to_text(SENDER.address)}
    assert all(d["hops"] == [first_hop] for d in inbox["received"])
    assert api["m"].get("/datagrams")["forwarded"] == 5 and api["m"].get("/datagrams")["delivered"] == 0

    # A replayed datagram is dropped by the middle node's rule; the link stays up.
    send(api["s"], "/datagrams", {"first_hop": first_hop, "datagram": encode(datagram).hex()})
    assert wait_for(lambda: api["m"].get("/datagrams")["dropped"] == {"TokenReplayed": 1}, WAIT_S)
    assert api["m"].get("/head")["peers"] == 2

    # Bad input to the API is one JSON error.
    own = address_to_text(SENDER.address)
    status, body = send(api["s"], "/datagrams", {"first_hop": own, "datagram": encode(datagram).hex()})
    assert (status, body["code"]) == (422, "UnknownNextHop")
    status, body = send(api["s"], "/datagrams", {"first_hop": first_hop, "datagram": "00ff"})
    assert status == 400 and set(body) == {"code", "message"}

    (claim_hex,) = send(api["r"], "/datagrams/claims", {})[1]["claims"]
    assert api["r"].get("/datagrams/claims")["claims"] == [claim_hex]  # kept, if the answer got lost
    claim = decode(bytes.fromhex(claim_hex), SignedClaim, what="claim")
    assert claim.claim.datagrams == 5
    before = int(api["r"].get(f"/accounts/{first_hop}")["balance"])
    payload = ClaimTransit(claim)
    fee = min_fee(params.min_fee_per_byte, payload, 0)
    tx = sign_transaction(RECEIVER, chain_id, payload, 0, fee)
    assert send(api["r"], "/transactions", {"tx": encode(tx).hex()})[0] == 202
    (share,) = [s for _, s in hop_shares(5 * UNIT, [MIDDLE.address], PAYRATE)]
    assert wait_for(lambda: int(api["r"].get(f"/accounts/{first_hop}")["balance"]) == before + share, WAIT_S)


def a_datagram(body: bytes = b"x") -> Datagram:
    proof = find_identity_proof(SENDER.address, test_params([]).identity_target_int)
    hop, receiver = (MIDDLE.address, MIDDLE.public_key), (RECEIVER.address, RECEIVER.public_key)
    return originate(SENDER, TOKENS, POOL, 1, PAYRATE, proof, [hop], receiver, body, os.urandom(16))


def tcp_relay() -> RelayPeer:
    """A node process's relay: named by its address, naming every other by theirs."""
    return RelayPeer(
        address_to_text(SENDER.address), SENDER, lambda: ChainRelayView(StateView({})), address_to_text
    )


def test_a_datagram_for_an_unlinked_first_hop_is_held_until_the_link_is_up() -> None:
    relay, datagram = tcp_relay(), a_datagram()
    assert relay.send(MIDDLE.address, datagram) == [] and len(relay.held) == 1
    relay.add_peer(address_to_text(MIDDLE.address))
    assert relay.tick(0) == [(address_to_text(MIDDLE.address), DatagramMsg(datagram))]
    assert relay.held == [] and relay.held_bytes == 0


def test_held_datagrams_are_bounded_in_bytes_and_never_held_for_oneself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    relay, datagram = tcp_relay(), a_datagram()
    monkeypatch.setattr(relay_peer, "MAX_HELD_BYTES", 2 * len(encode(datagram)))
    for _ in range(3):
        relay.send(MIDDLE.address, datagram)
    assert len(relay.held) == 2 and relay.stats.dropped == {"CarrierFull": 1}
    assert relay.send(SENDER.address, datagram) == []  # a next hop that is this participant
    assert relay.stats.dropped["UnknownNextHop"] == 1 and len(relay.held) == 2
