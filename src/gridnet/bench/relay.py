"""Relay benchmark: forwarding one datagram at one hop against its cost floor, and the
chain bytes a delivered datagram costs in the neighbourhood day.

The floor is what forwarding cannot avoid: one SealedBox open (the onion layer, with the
relay's hop ticket in it) and one Ed25519 verification (the token), each measured in the
same process; a relay signs nothing (its hop entry is the sender's, under the token's
signature). ``ratio`` = floor time / forwarding time (1.0 = nothing but the floor);
``ratio_with_sign`` adds one Ed25519 signature to the floor (what forwarding cost when
each relay signed an entry of its own), for comparison with earlier runs: relays no longer
sign, so the signature is timed as the sender's token signature, which costs the same.
``bytes_saving_factor`` = the chain bytes paying one connection (the receiver's claim and
its relays' hop claims) / the chain bytes per datagram delivered in the default scenario.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridnet.crypto.boxes import open_sealed, seal
from gridnet.crypto.hashing import pool_id
from gridnet.crypto.keys import Domain, PrivateKey, raw_verify
from gridnet.identity import IdentityProof
from gridnet.relay.datagram import Datagram, Relay, originate
from gridnet.relay.hops import HopBook
from gridnet.relay.tokens import HashChain
from gridnet.units import Address, Hash32


class _View:
    """A chain as a relay sees it: one pool, far from its expiry, every address registered,
    no flags."""

    def __init__(self, owner: Address, anchor: bytes, proof: IdentityProof) -> None:
        self.owner, self.redeemed_depth, self.anchor, self._proof = owner, 0, anchor, proof
        self.length, self.unit_value = 10**6, 1
        self.height, self.expiry_height = 0, 10**6
        self.chain_id = bytes(32)

    def pool(self, pool: Hash32) -> _View:
        return self

    def identity_proof(self, address: Address) -> IdentityProof:
        return self._proof

    def flagged_by(self, address: Address) -> frozenset[Address]:
        return frozenset()

    def hop_paid(self, pool: Hash32, relay: Address) -> int:
        return 0


def _rate(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def chain_bytes() -> dict[str, Any]:
    """Run the default neighbourhood day and read its relay figures."""
    from gridnet.sim.neighbourhood import simulate
    from gridnet.sim.scenario import load_scenario

    with tempfile.TemporaryDirectory(prefix="gridnet-bench-relay-") as tmp:
        relay = simulate(load_scenario(None), Path(tmp) / "day")["relay"]
    return {
        "datagrams_delivered": relay["datagrams_delivered"],
        "claims_on_chain": relay["claims_on_chain"],
        "chain_bytes_per_datagram": relay["chain_bytes_per_datagram"],
        "hop_claims": relay["hop_claims"],
        "one_claim_per_datagram_bytes": relay["one_claim_per_datagram_bytes"],
        "bytes_saving_factor": relay["bytes_saving_factor"],
    }


def run(n: int = 3000, *, with_day: bool = True) -> dict[str, Any]:
    sender, relay_key, receiver = (PrivateKey.from_label(f"bench-relay-{x}") for x in "srv")
    chain = HashChain(os.urandom(32), n + 1)
    pool = pool_id(sender.address, chain.final)
    proof = IdentityProof(rounds=1, nonce=0)
    path = [(relay_key.address, relay_key.public_key)]
    book = HopBook(os.urandom(32))
    datagrams: list[Datagram] = [
        originate(
            sender,
            chain,
            pool,
            d,
            750_000,
            proof,
            path,
            (receiver.address, receiver.public_key),
            b"x" * 200,
            os.urandom(16),
            chain_id=bytes(32),
            book=book,
        )
        for d in range(1, n + 1)
    ]
    relay = Relay(relay_key, _View(sender.address, chain.final, proof))
    it = iter(datagrams)
    start = time.perf_counter()
    for _ in range(n):
        relay.handle(next(it))
    forward_per_s = n / (time.perf_counter() - start)

    layer = seal(relay_key.public_key, b"y" * 300)
    message = b"z" * 200
    signature = sender.sign(Domain.TOKEN, message)
    signed_message = Domain.TOKEN.value + message
    open_per_s = _rate(lambda: open_sealed(relay_key, layer), n)
    verify_per_s = _rate(lambda: raw_verify(sender.public_key, signed_message, signature), n)
    sign_per_s = _rate(lambda: relay_key.sign(Domain.TOKEN, message), n)
    floor_s = 1 / open_per_s + 1 / verify_per_s
    figures: dict[str, Any] = {
        "forward_per_s": round(forward_per_s, 1),
        "floor_per_s": round(1 / floor_s, 1),
        "ratio": round(forward_per_s * floor_s, 3),
        "ratio_with_sign": round(forward_per_s * (floor_s + 1 / sign_per_s), 3),
        "sealed_box_open_per_s": round(open_per_s, 1),
        "ed25519_verify_per_s": round(verify_per_s, 1),
        "ed25519_sign_per_s": round(sign_per_s, 1),
        "datagrams": n,
    }
    if with_day:
        figures["neighbourhood_day"] = chain_bytes()
    return figures
