"""Datagrams over the in-memory network: through three relays (one of them a carrier that
hands bundles on as it moves); the receiver's one claim proves the delivery, and each
relay's hop claim pays it on chain."""

from __future__ import annotations

import os
from pathlib import Path

from gridnet.crypto.hashing import pool_id
from gridnet.crypto.keys import PrivateKey
from gridnet.identity import find_identity_proof
from gridnet.ledger.chain import Chain
from gridnet.ledger.transactions import min_fee, sign_transaction
from gridnet.ledger.txs.relay import POOLS, ChainRelayView, ClaimTransit, CreateTokenPool
from gridnet.net.memory import MemoryNetwork
from gridnet.node.node import Node, NodeConfig
from gridnet.node.relay_peer import RelayPeer
from gridnet.relay.datagram import originate
from gridnet.relay.hops import HopBook, hop_shares
from gridnet.relay.tokens import HashChain
from tests.helpers import GENESIS_TIME, register_identity, test_params

SENDER, RECEIVER, MINER = (PrivateKey.from_label(f"net-relay-{n}") for n in ("s", "r", "m"))
RELAYS = [PrivateKey.from_label(f"net-relay-hop-{i}") for i in range(3)]
CHAIN = HashChain(os.urandom(32), 200)
POOL = pool_id(SENDER.address, CHAIN.final)
PAYRATE = 600_000


def setup(tmp_path: Path) -> tuple[MemoryNetwork, dict[str, RelayPeer]]:
    chain = Chain.create(tmp_path / "n0", test_params([SENDER, RECEIVER, *RELAYS]))
    net = MemoryNetwork(start_ms=GENESIS_TIME, latency_ms=30, jitter_ms=0)
    node = net.add(Node("n0", chain, NodeConfig(miner=MINER.address, hashes_per_tick=200)))
    names = {"sender": SENDER, "r0": RELAYS[0], "r1": RELAYS[1], "r2": RELAYS[2], "receiver": RECEIVER}
    directory = {k.address: name for name, k in names.items()}
    peers = {
        name: net.add_relay(RelayPeer(name, k, lambda: ChainRelayView.of(node.chain), directory.get))
        for name, k in names.items()
    }
    for tx in (
        *(register_identity(chain, k) for k in (SENDER, RECEIVER, *RELAYS)),  # every hop has a stake
        sign_transaction(
            SENDER, chain.chain_id, CreateTokenPool(CHAIN.final, CHAIN.length, 200_000, 500), 1, 10_000
        ),
    ):
        assert net.submit("n0", tx)[0].kind.value == "accepted"
    net.run_for(20_000)
    assert node.chain.view().get(POOLS, POOL) is not None
    return net, peers


def send_stream(net: MemoryNetwork, peers: dict[str, RelayPeer], count: int) -> None:
    proof = find_identity_proof(SENDER.address, net.nodes["n0"].chain.params.identity_target_int)
    path = [(k.address, k.public_key) for k in RELAYS]
    book = HopBook(os.urandom(32))
    for depth in range(1, count + 1):
        dgram = originate(
            SENDER,
            CHAIN,
            POOL,
            depth,
            PAYRATE,
            proof,
            path,
            (RECEIVER.address, RECEIVER.public_key),
            f"state {depth}".encode(),
            os.urandom(16),
            book=book,
            chain_id=net.nodes["n0"].chain.chain_id,
        )
        net.send("sender", peers["sender"].send(RELAYS[0].address, dgram))
        net.run_for(1_000)


def submit(net: MemoryNetwork, key: PrivateKey, payload: ClaimTransit) -> int:
    """``key`` submits ``payload`` (its second transaction: the first registered it);
    returns the fee."""
    chain = net.nodes["n0"].chain
    fee = min_fee(chain.params.min_fee_per_byte, payload, 1)
    assert (
        net.submit("n0", sign_transaction(key, chain.chain_id, payload, 1, fee))[0].kind.value == "accepted"
    )
    return fee


def claim_and_check(net: MemoryNetwork, peers: dict[str, RelayPeer], count: int) -> None:
    chain = net.nodes["n0"].chain
    (claim,) = peers["receiver"].inbox.close()
    assert claim.claim.datagrams == count
    submit(net, RECEIVER, ClaimTransit(claim))
    net.run_for(20_000)
    before = [chain.account(k.address).balance for k in RELAYS]
    fees = [
        submit(net, k, ClaimTransit(None, tuple(peers[f"r{i}"].hop_claims()))) for i, k in enumerate(RELAYS)
    ]
    net.run_for(20_000)
    paid = [chain.account(k.address).balance - b + f for k, b, f in zip(RELAYS, before, fees, strict=True)]
    assert paid == [s for _, s in hop_shares(count * 1_000, [k.address for k in RELAYS], PAYRATE)]
    assert all(peers[f"r{i}"].hop_claims() == [] for i in range(len(RELAYS)))  # each paid once


def test_a_stream_through_three_relays_pays_each_relay_on_chain(tmp_path: Path) -> None:
    net, peers = setup(tmp_path)
    for a, b in (("sender", "r0"), ("r0", "r1"), ("r1", "r2"), ("r2", "receiver")):
        net.link(a, b)
    send_stream(net, peers, 12)
    bodies = [d.envelope.body for d in peers["receiver"].received]
    assert bodies == [f"state {d}".encode() for d in range(1, 13)]
    assert [peers[n].stats.forwarded for n in ("r0", "r1", "r2")] == [12, 12, 12]
    claim_and_check(net, peers, 12)


def test_a_carrier_hands_bundles_on_one_way_and_is_paid_like_any_relay(tmp_path: Path) -> None:
    net, peers = setup(tmp_path)
    # r1 is the bicycle: first it rides past r0 and picks the bundle up ...
    for a, b in (("sender", "r0"), ("r0", "r1"), ("r2", "receiver")):
        net.link(a, b)
    send_stream(net, peers, 8)
    assert peers["r1"].stats.held == 8 and not peers["receiver"].received
    # ... then it leaves r0's street and reaches r2, where it hands everything on.
    net.unlink("r0", "r1")
    net.link("r1", "r2")
    net.run_for(5_000)
    assert len(peers["receiver"].received) == 8
    claim_and_check(net, peers, 8)
