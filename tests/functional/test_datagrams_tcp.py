"""Datagrams between node processes over real TCP links: the sender's node, a relaying node
and the receiver's node in a line, each a registered identity. Each node relays as the
participant of its key; the datagrams cross the middle node (which cannot read them), the
receiver takes delivery through its API without learning the path, its transit claim proves
the delivery on chain, and the middle node's hop claim pays it. A replayed datagram is
dropped by its rule while the link stays up, and so is a datagram whose onion names a key
without a registered identity as the hop after the relaying node (an artificial
intermediary). Every process started here is stopped."""

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
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import StateView
from gridnet.ledger.transactions import Transaction, min_fee, sign_transaction
from gridnet.ledger.txs.relay import ChainRelayView, ClaimTransit, CreateTokenPool
from gridnet.node import relay_peer
from gridnet.node.client import NodeClient
from gridnet.node.devnet import LOCAL, DevNode, free_port
from gridnet.node.messages import DatagramMsg
from gridnet.node.relay_peer import RelayPeer
from gridnet.relay.claims import HopClaim, SignedClaim
from gridnet.relay.datagram import Datagram, originate
from gridnet.relay.hops import HopBook, hop_shares
from gridnet.relay.tokens import HashChain
from tests.helpers import register_identity, test_params, wait_for

SENDER, MIDDLE, RECEIVER = (PrivateKey.from_label(f"tcp-dgram-{n}") for n in ("s", "m", "r"))
GHOST = PrivateKey.from_label("tcp-dgram-ghost")
"""A key that never registers an identity."""
TOKENS = HashChain(os.urandom(32), 100)
POOL = pool_id(SENDER.address, TOKENS.final)
UNIT = 1_000
PAYRATE = 600_000
WAIT_S = 120.0
"""Ceiling for each condition the test waits for [s]: far above what a busy machine needs."""


def send(client: NodeClient, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    return client.call("POST", path, body)


def start_line(
    tmp_path: Path, nodes: list[DevNode], keys: list[PrivateKey]
) -> tuple[ChainParams, bytes, list[NodeClient]]:
    """A node process per key — ``keys[0]`` the sender's, mining; ``keys[1]`` the relaying
    node every other links to — each key a registered identity, and the sender's pool on
    every node's chain. Returns the chain's parameters, its id and each node's API client."""
    params = test_params(keys, block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)
    setup: list[Transaction] = []
    chain_id = b""
    for i, key in enumerate(keys):
        node = DevNode(f"n{i}", tmp_path / f"n{i}", free_port(), free_port())
        chain = Chain.create(node.data_dir, params)
        chain_id = chain.chain_id
        if i == 0:  # every hop, the receiver included, is a registered identity
            pool = CreateTokenPool(TOKENS.final, TOKENS.length, 100 * UNIT, 500)
            setup = [
                *(register_identity(chain, k) for k in keys),
                sign_transaction(key, chain.chain_id, pool, 1, 10_000),
            ]
        chain.close()
        write_key_file(node.data_dir / "node.key", key)
        nodes.append(node)
    nodes[1].start()
    peer = ("--peer", f"{LOCAL}:{nodes[1].port}")
    nodes[0].start("--mine", "--hashes-per-tick", "300", *peer)
    for node in nodes[2:]:
        node.start(*peer)
    assert wait_for(lambda: all(n.head() is not None for n in nodes), WAIT_S)
    api = [n.client() for n in nodes]  # (each wrote its API token before answering)
    assert wait_for(lambda: api[1].get("/head")["peers"] == len(nodes) - 1, WAIT_S)
    for tx in setup:
        assert send(api[0], "/transactions", {"tx": encode(tx).hex()})[0] == 202
    assert wait_for(lambda: all(a.get(f"/pools/{POOL.hex()}") is not None for a in api), WAIT_S)
    return params, chain_id, api


def test_datagrams_cross_a_relaying_node_and_its_claim_pays_it(tmp_path: Path, nodes: list[DevNode]) -> None:
    params, chain_id, clients = start_line(tmp_path, nodes, [SENDER, MIDDLE, RECEIVER])
    api = dict(zip("smr", clients, strict=True))
    pool_path = f"/pools/{POOL.hex()}"

    proof = find_identity_proof(SENDER.address, params.identity_target_int)
    first_hop = address_to_text(MIDDLE.address)
    book = HopBook(os.urandom(32))
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
            book=book,
            chain_id=chain_id,
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
    assert all(set(d) == {"pool", "depth", "originator", "body"} for d in inbox["received"])  # no path
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
    assert (
        send(api["r"], "/transactions", {"tx": signed(RECEIVER, params, chain_id, ClaimTransit(claim))})[0]
        == 202
    )
    assert wait_for(lambda: api["m"].get(pool_path)["record"]["redeemed_depth"] == 5, WAIT_S)

    # The middle node claims what the sender credited it, now that the delivery is proven.
    (hop_hex,) = api["m"].get("/datagrams/hop-claims")["hop_claims"]
    hop_claim = decode(bytes.fromhex(hop_hex), HopClaim, what="hop claim")
    assert hop_claim.ticket.entry.relay == MIDDLE.address and hop_claim.token.token.depth == 5
    before = int(api["m"].get(f"/accounts/{first_hop}")["balance"])
    payload = ClaimTransit(None, (hop_claim,))
    assert send(api["m"], "/transactions", {"tx": signed(MIDDLE, params, chain_id, payload)})[0] == 202
    (share,) = [s for _, s in hop_shares(5 * UNIT, [MIDDLE.address], PAYRATE)]
    fee = min_fee(params.min_fee_per_byte, payload, 1)
    paid = before + share - fee
    assert wait_for(lambda: int(api["m"].get(f"/accounts/{first_hop}")["balance"]) == paid, WAIT_S)
    assert api["m"].get("/datagrams/hop-claims")["hop_claims"] == []  # paid once


def test_a_relaying_node_refuses_to_extend_a_datagram_to_an_unregistered_hop(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    """Artificial intermediaries, on real processes: the sender's onion names, as the hop
    after a relaying node, a key that never registered an identity. The relaying node
    refuses to extend the path and counts the drop by its rule; the same node forwards the
    next datagram, whose hop after it is a registered identity (the sender itself)."""
    params, chain_id, (sender, middle) = start_line(tmp_path, nodes, [SENDER, MIDDLE])
    proof = find_identity_proof(SENDER.address, params.identity_target_int)
    book = HopBook(os.urandom(32))

    def post(depth: int, path: list[PrivateKey], receiver: PrivateKey) -> None:
        datagram = originate(
            SENDER,
            TOKENS,
            POOL,
            depth,
            PAYRATE,
            proof,
            [(k.address, k.public_key) for k in path],
            (receiver.address, receiver.public_key),
            f"datagram {depth}".encode(),
            os.urandom(16),
            book=book,
            chain_id=chain_id,
        )
        body = {"first_hop": address_to_text(MIDDLE.address), "datagram": encode(datagram).hex()}
        assert send(sender, "/datagrams", body) == (202, {"status": "sent"})

    post(1, [MIDDLE, GHOST], RECEIVER)  # GHOST: never registered (no stake behind it)
    assert wait_for(lambda: middle.get("/datagrams")["dropped"] == {"UnregisteredNextHop": 1}, WAIT_S)
    assert middle.get("/datagrams")["forwarded"] == 0
    assert middle.get("/head")["peers"] == 1  # a datagram's fault is not the link's

    post(2, [MIDDLE], SENDER)  # the hop after the middle node is a registered identity
    assert wait_for(lambda: sender.get("/datagrams")["delivered"] == 1, WAIT_S)
    assert middle.get("/datagrams")["forwarded"] == 1
    assert middle.get("/datagrams")["dropped"] == {"UnregisteredNextHop": 1}


def signed(key: PrivateKey, params: ChainParams, chain_id: bytes, payload: ClaimTransit) -> str:
    """Hex of ``key``'s second transaction (its first registered its identity)."""
    fee = min_fee(params.min_fee_per_byte, payload, 1)
    return encode(sign_transaction(key, chain_id, payload, 1, fee)).hex()


def a_datagram(body: bytes = b"x") -> Datagram:
    proof = find_identity_proof(SENDER.address, test_params([]).identity_target_int)
    hop, receiver = (MIDDLE.address, MIDDLE.public_key), (RECEIVER.address, RECEIVER.public_key)
    return originate(
        SENDER, TOKENS, POOL, 1, PAYRATE, proof, [hop], receiver, body, os.urandom(16), chain_id=bytes(32)
    )


def tcp_relay() -> RelayPeer:
    """A node process's relay: named by its address, naming every other by theirs."""
    return RelayPeer(
        address_to_text(SENDER.address),
        SENDER,
        lambda: ChainRelayView(StateView({}), 0, bytes(32)),
        address_to_text,
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
